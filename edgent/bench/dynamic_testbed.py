"""The real half of ``edgent bench dynamic``: the same decisions executed on the testbed instead of computed.

:class:`TestbedExecutor` is the :class:`~edgent.bench.dynamic.RequestExecutor` of the real system: a shaped link
(the namespace testbed as root, the emulated link otherwise), a real ``edgent serve`` process, and the device
client slowed as the device role says (:class:`~edgent.demo.device.DeviceThrottle`). For one method it replays
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
from edgent.errors import EdgentError

#: tbf cannot shape to 0 bit/s: outages of the trace are replayed at this rate (and said so)
MIN_REPLAY_BPS = 8_000.0


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
        from edgent.cli.runtime_cmds import load_runtime_model
        from edgent.demo.device import DeviceThrottle
        from edgent.demo.run import DemoOptions, load_inputs
        from edgent.runtime import DeviceClient
        from edgent.testbed import open_testbed, start_edge_server

        import torch

        model = self.cands.model
        stack = self._stack
        try:
            tb = stack.enter_context(open_testbed(1e6, self.rtt_ms, emulate=self.emulate))
            throttle = stack.enter_context(DeviceThrottle())
            torch.set_num_threads(1)  # the device role: one thread
            chain = load_runtime_model(model, random_weights=False, seed=self.seed)
            proc, port = start_edge_server(tb, model, 8473, self.raw_dir / "edge.log" if self.raw_dir else None,
                                           ["--threads", "0", "--torch-threads", "2"])
            stack.callback(tb.stop_process, proc)
            table = self.cands.tables[0]
            device_ms = {e.exit: float(sum(e.device_unit_ms) + e.device_part_ms) for e in table.exits}
            self.client = stack.enter_context(DeviceClient(
                tb.edge_host, port, chain, link=tb.link, slowdown=throttle, device_exit_ms=device_ms,
                exit_accuracy={e.exit: e.accuracy for e in table.exits}, client_name="edgent-bench-dynamic"))
            if not self.client.connect(force=True):
                raise EdgentError(f"the device cannot reach the edge at {tb.edge_host}:{port}: "
                                  f"{getattr(self.client, 'last_connect_error', '?')}")
            self.images, _, source = load_inputs(DemoOptions(seed=self.seed), 200)
            self.tb = tb
            self.describe = {"testbed": tb.describe(), "kind": tb.kind, "device": throttle.describe(),
                             "inputs": source, "min_replay_bps": MIN_REPLAY_BPS,
                             "edge": "edgent serve --threads 0 --torch-threads 2 (in the edge namespace)"}
            # warm-up, not recorded: both sides' first forward passes
            first, last = table.exits[0], table.exits[-1]
            self.client.infer(self.images[0], int(first.exit), int(first.num_units))
            self.client.infer(self.images[0], int(last.exit), 0, "uint8", fallback=False)
        except BaseException:
            stack.close()
            raise
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
                codec = "uint8" if cfg.partition == 0 else cfg.codec
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
    """:func:`edgent.testbed.replay_steps` of ``trace`` from ``t_begin`` to ``t_end``, outages at
    ``MIN_REPLAY_BPS``."""
    from edgent.testbed import replay_steps as steps

    return steps(trace.time_s, trace.rate_bps, t_begin, t_end, MIN_REPLAY_BPS)


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
