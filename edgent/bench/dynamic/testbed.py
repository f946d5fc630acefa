"""The real half of ``edgent bench dynamic``: the same decisions executed on the testbed instead of computed.

:class:`TestbedExecutor` is the :class:`~edgent.adapt.simulate.RequestExecutor` of the real system: a shaped link
(the namespace testbed as root, the emulated link otherwise), a real ``edgent serve`` process, and the device
client slowed as the device role says (all brought up by :class:`~edgent.testbed.bed.CoInferenceBed`). For one method it replays
a stretch of the held-out trace on the link (``tc tbf`` rate changes as the trace says), sends each request at
its time with the configuration the method chose, and returns the measured end-to-end latencies. Decisions are
the simulation's (they depend only on the throughput samples), so real and simulated latencies of the same
requests can be compared one by one.

Requests run with their deadline, as the runtime really does: when the edge does not answer in time the device
falls back on itself (counted in ``fallbacks``), where the simulation would report the late answer.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgent.adapt.config_map import Candidates
from edgent.adapt.traces import BandwidthTrace
from edgent.testbed import MIN_REPLAY_BPS
from edgent.testbed import replay_steps as steps

class TestbedExecutor:
    """Runs requests on the testbed; use as a context manager (it starts and stops the testbed and the edge)."""

    __test__ = False  # not a pytest class

    def __init__(self, cands: Candidates, deadline_ms: float, rtt_ms: float, *, emulate: bool | None = None,
                 raw_dir: str | Path | None = None, seed: int = 0, progress: Any = None) -> None:
        self.cands = cands
        self.deadline_ms = float(deadline_ms)
        self.rtt_ms = float(rtt_ms)
        self.emulate = emulate
        self.raw_dir = Path(raw_dir) if raw_dir else None
        self.seed = seed
        self.say = progress or (lambda s: None)
        self.records: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()
        self.describe: dict[str, Any] = {}

    def __enter__(self) -> "TestbedExecutor":
        from edgent.data.cifar10 import request_images
        from edgent.testbed.bed import BedOptions, CoInferenceBed

        table = self.cands.tables[0]
        opts = BedOptions(model=self.cands.model, rate_bps=1e6, rtt_ms=self.rtt_ms, emulate=self.emulate,
                          port=8473, seed=self.seed, log_dir=self.raw_dir, client_name="edgent-bench-dynamic")
        with contextlib.ExitStack() as stack:  # on a failure below, the bed is torn down on the way out
            self.bed = stack.enter_context(CoInferenceBed(opts, table, [e.accuracy for e in table.exits]))
            self.client, self.tb = self.bed.client, self.bed.testbed
            self.images, _, source = request_images(200, seed=self.seed)
            self.describe = {**self.bed.describe(), "inputs": source, "min_replay_bps": MIN_REPLAY_BPS}
            self.bed.warm_up(self.images[0])
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, trace: BandwidthTrace, times_s: np.ndarray, choice: np.ndarray, method: str = "") -> np.ndarray:
        """Replay ``trace`` from shortly before ``times_s[0]`` and send request ``i`` at ``times_s[i]`` with
        configuration ``choice[i]``; return the measured latencies (ms)."""
        lead_s = 2.0  # the link settles on the trace's rate before the first request
        t_begin = max(0.0, float(times_s[0]) - lead_s)
        steps = replay_steps(trace, t_begin, float(times_s[-1]) + 5.0)  # + the last request's transfers
        out = np.empty(times_s.size)
        replayer = self.tb.replay(steps)
        t0 = time.monotonic()
        try:
            for i, (t_req, k) in enumerate(zip(times_s, choice)):
                wait = (float(t_req) - t_begin) - (time.monotonic() - t0)
                if wait > 0:
                    time.sleep(wait)
                lag_ms = max(0.0, -wait) * 1e3
                cfg = self.cands.configs[int(k)]
                codec = cfg.codec  # exactly the codec the candidate was priced with
                res = self.client.infer(self.images[i % len(self.images)], cfg.exit, cfg.partition, codec,
                                        deadline_ms=self.deadline_ms)
                out[i] = res.total_ms
                self.records.append({
                    "method": method, "trace": trace.name, "time_s": float(t_req), "candidate": int(k),
                    "exit": cfg.exit, "partition": cfg.partition, "codec": codec, "latency_ms": res.total_ms,
                    "where": res.where, "fallback_reason": res.fallback_reason, "exit_used": res.exit,
                    "device_ms": res.device_ms, "network_ms": res.network_ms, "start_lag_ms": lag_ms,
                    "true_bps": float(trace.rate_at(float(t_req)))})
        finally:
            replayer.stop()
        return out


def replay_steps(trace: BandwidthTrace, t_begin: float, t_end: float) -> list:
    """:func:`edgent.testbed.replay_steps` of ``trace`` from ``t_begin`` to ``t_end`` (outages at its floor)."""
    return steps(trace.time_s, trace.rate_bps, t_begin, t_end)


def compare(sim: dict[str, np.ndarray], real: dict[str, np.ndarray], deadline_ms: float,
            records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per method, on the same requests: deadline share and latency, real against simulated."""
    out: dict[str, Any] = {}
    for m, lat in real.items():
        s = sim[m]
        recs = [r for r in records if r["method"] == m]
        out[m] = {
            "requests": int(lat.size),
            "met_share_real": float(np.mean(lat <= deadline_ms)),
            "met_share_simulated": float(np.mean(s <= deadline_ms)),
            "met_share_difference_points": float(100 * (np.mean(lat <= deadline_ms) - np.mean(s <= deadline_ms))),
            "median_latency_ms_real": float(np.median(lat)),
            "median_latency_ms_simulated": float(np.median(s)),
            "median_real_over_simulated": float(np.median(lat / np.maximum(s, 1e-9))),
            "same_outcome_share": float(np.mean((lat <= deadline_ms) == (s <= deadline_ms))),
            "fallbacks": sum(r["where"] == "fallback" for r in recs),
            "max_start_lag_ms": max((r["start_lag_ms"] for r in recs), default=0.0),
        }
    return out
