"""``edgent bench paper``: the paper's three static experiments (issue 4) measured on the real co-inference system.

:mod:`edgent.bench.static` *predicts* them; this runs each chosen plan for real: the testbed link
(:func:`edgent.testbed.open_testbed`: netns + veth + ``tc tbf`` as root, else the EMULATED token-bucket link) set
to each bandwidth, the slowed device (:class:`edgent.demo.device.DeviceThrottle`: 1 torch thread, a real 10 %
CPU quota where possible, the emulated slowdown), a real ``edgent serve`` edge process (2 torch threads), and
:class:`~edgent.runtime.session.DeviceRuntime` with a fixed plan per configuration.

- (a) bandwidth 50 kbit/s - 2 Mbit/s at a 1000 ms requirement: Edgent's plan per point;
- (b) requirement 100 - 1000 ms at 500 kbit/s: Edgent's plan per point;
- (c) requirements 100 - 500 ms at 400 kbit/s: Edgent and every baseline (device only, edge only, Neurosurgeon,
  right-sizing only) and an oracle that knows the *measured* latency of every exit's candidate configurations
  (each exit all on the device, all on the edge, and its predicted best split) and picks the most accurate one
  that meets the requirement.

Each is run for what is sent at partition point 0 (``as_sent``: the 3072 uint8 pixels edgent really sends;
``float32_input``: the 12288-byte normalised input, closer to the paper's sizes). Per point: the plan, the
predicted latency (total and per stage), and for ``--requests`` requests the measured latency per stage and in
total, the share meeting the requirement, and the share within +-10 % (or 5 ms) of the prediction. One
configuration on one link is measured once per experiment and shared by the points that chose it ((b) and (c),
where the link does not change between points).

Requests are isolated: before each one the link stays idle until the shaper's bucket is full again (and at least
:data:`MIN_GAP_S`), and each configuration gets one warm-up request that is not recorded.

The predictions use the planner's wire model (the fix of issue 7, part 3): the shaper's burst
(:attr:`edgent.plan.Link.burst_bytes`, from ``tc tbf``'s settings or the emulated bucket), the protocol's
framing and the TCP/IP/Ethernet headers of every packet (:class:`edgent.plan.WireFraming`); every request also
carries the prediction of the paper's fluid formula (payload bytes / rate) for comparison. The round-trip time
the planner is given is the one the device measures (the smallest of a few HEALTH round trips at each link
setting), as the runtime's own estimator would; the runtime's own cost per request (encoding, decoding, framing,
the server's bookkeeping), the framing bytes and the MSS are measured at start-up on a few edge-only requests
that are not recorded (:func:`calibrate_wire`). Each measurement also records how much CPU other processes used
meanwhile (:class:`CpuWitness`): the host is shared.

Every request carries two predictions: the planner's offline one (the fitted latency models), and the same
with its device and edge compute terms calibrated online (:class:`edgent.plan.calibration.ComputeCalibration`:
the median measured/predicted compute ratio of the same configuration, else of the side, over the last
requests before it, as the runtime can know it); the headline share within +-10 % is of the calibrated one, the offline share is reported next to it.
The plans themselves are the offline planner's.

Output: ``benchmarks/results/paper.json`` (``paper-quick.json`` with ``--quick``) and PNG plots next to it; the
device's per-request records (``records.jsonl``) and the edge's log go to a folder under ``runs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import socket
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from edgent.bench.static import (BANDWIDTHS_KBIT, DEADLINE_A_MS, DEADLINES_B_MS, DEADLINES_C_MS, RATE_B_KBIT,
                                 RATE_C_KBIT, accuracy_bars, compute_ratio, with_input_bytes)
from edgent.errors import ConfigError, EdgentError
from edgent.plan.calibration import ComputeCalibration
from edgent.plan.link import ETHERNET_MSS, Link, shaper_burst_bytes
from edgent.plan.overhead import OverheadModel, WireFraming
from edgent.plan.planner import POLICIES, LatencyBreakdown, Planner
from edgent.plan.table import LatencyTable

MODEL = "alexnet-cifar10"
#: what is sent at partition point 0 in each variant (bytes per image) and the codec that sends it
VARIANTS: dict[str, tuple[int, str]] = {"as_sent": (3072, "uint8"), "float32_input": (12288, "float32")}
#: ``--quick``: (a) bandwidths, (b) and (c) requirements
QUICK_BANDWIDTHS_KBIT: tuple[float, ...] = (75.0, 1000.0)
QUICK_DEADLINES_B_MS: tuple[float, ...] = (100.0, 1000.0)
QUICK_DEADLINES_C_MS: tuple[float, ...] = (100.0, 300.0)
#: a prediction is right when the measurement is within max(10 %, 5 ms) of it (issue 7)
WITHIN_REL, WITHIN_ABS_MS = 0.10, 5.0
#: a point meets its requirement when at least this share of its requests do
MET_SHARE = 0.9
#: the shortest idle time before a request (s)
MIN_GAP_S = 0.05
STAGES: tuple[str, ...] = ("device", "link", "rtt", "edge", "overheads")
#: the planner's costs without the wire model: the paper's formula (+ the default (de)serialization cost)
PAPER_OVERHEAD = OverheadModel()
STAGE_NOTES = {
    "device": "device compute: preprocessing and units [0, p) under the device throttle (measured: device_ms)",
    "link": "upload + download (measured: network time minus the base round trip)",
    "rtt": "base round trip (measured: smallest HEALTH round trip at this link setting; the planner is given it)",
    "edge": "edge compute of units [p, N) (measured: the server's compute_ms)",
    "overheads": "everything else: encoding, decoding, framing, the server's bookkeeping (measured: total minus "
                 "the other stages; predicted: serialization + queueing)",
}


def within(measured_ms: Any, predicted_ms: Any) -> Any:
    """Whether a measurement is within +-10 % (or 5 ms, whichever is larger) of the prediction."""
    m, p = np.asarray(measured_ms, dtype=float), np.asarray(predicted_ms, dtype=float)
    return np.abs(m - p) <= np.maximum(WITHIN_REL * p, WITHIN_ABS_MS)


def _system_busy_ticks() -> int:
    """CPU time (clock ticks) every CPU spent busy since boot (``/proc/stat``; 0 where there is none)."""
    try:
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return 0
    return sum(v) - v[3] - v[4]  # all but idle and iowait


def _process_ticks(pid: int) -> int:
    """CPU time (clock ticks, user + system) of process ``pid`` so far (0 when it cannot be read)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return 0


class CpuWitness:
    """How busy the machine was with *other* work during a measurement: the CPU time of every process but the
    device (this process) and the edge, in CPUs (1.0 = one core kept busy), from ``/proc``."""

    def __init__(self, pids: Sequence[int]) -> None:
        self.pids = list(pids)
        self.tick_s = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

    def snapshot(self) -> tuple[float, int, int]:
        return time.monotonic(), _system_busy_ticks(), sum(_process_ticks(p) for p in self.pids)

    def other_cpus(self, start: tuple[float, int, int]) -> float | None:
        t0, busy0, own0 = start
        t1, busy1, own1 = self.snapshot()
        if busy1 == 0 or t1 <= t0:
            return None
        return round(max(0.0, (busy1 - busy0) - (own1 - own0)) * self.tick_s / (t1 - t0), 3)


def placement(units: int, partition: int) -> str:
    """Where a configuration runs: "edge only" (point 0), "device only" (point ``units``) or "split"."""
    return "edge only" if partition == 0 else "device only" if partition == units else "split"


@dataclass
class PaperOptions:
    """The command's options (see ``edgent bench paper --help``)."""

    requests: int = 20
    quick: bool = False
    rtt_ms: float = 20.0
    variants: tuple[str, ...] = ("as_sent", "float32_input")
    oracle: bool = True
    fluid: bool = False
    emulate: bool = False
    synthetic_inputs: bool = False
    random_weights: bool = False
    accuracies: list[float] | None = None
    seed: int = 0
    port: int = 8471
    out_dir: str | None = None
    raw_dir: str | None = None


# -- measuring ----------------------------------------------------------------------------------------------------

class Measurer:
    """Runs fixed plans on the testbed through :class:`DeviceRuntime` and keeps each request's stage times."""

    def __init__(self, tb: Any, client: Any, images: np.ndarray, labels: np.ndarray | None, records: IO[str],
                 requests: int, console: Any, witness: CpuWitness) -> None:
        self.tb, self.client, self.images, self.labels = tb, client, images, labels
        self.records, self.requests, self.console = records, requests, console
        self.witness = witness
        self.calibration = ComputeCalibration()
        self.k = 0  # next input image
        self.rtt_base_ms = math.nan
        self.rate_bps = math.nan
        self.burst_bytes = 0.0

    def set_rate(self, rate_bps: float) -> None:
        """Shape the link to ``rate_bps`` each way, wait for a full bucket, and measure the base round trip
        (smallest of 5 HEALTH round trips: the configured delay plus the stack's own)."""
        self.tb.set_rate(rate_bps)
        self.rate_bps = float(rate_bps)
        self.burst_bytes = float(shaper_burst_bytes(rate_bps))
        rtts = []
        for _ in range(5):
            time.sleep(self.gap_s(True))
            t0 = time.perf_counter()
            self.client.health()
            rtts.append((time.perf_counter() - t0) * 1e3)
        self.rtt_base_ms = float(min(rtts))

    def link(self, wire_model: bool) -> Link:
        """The link the planner is given: the shaped rate, the measured base round trip and (wire model) the
        shaper's burst."""
        return Link(self.rate_bps, self.rate_bps, self.rtt_base_ms, self.burst_bytes if wire_model else 0.0)

    def gap_s(self, crosses: bool) -> float:
        """Idle time before a request: long enough for the shaper's bucket to fill up again."""
        if not crosses:
            return MIN_GAP_S
        return max(MIN_GAP_S, 1.25 * 8.0 * self.burst_bytes / self.rate_bps + 0.01)

    def run(self, exit: int, partition: int, codec: str, crosses: bool,
            predicted: dict[str, float]) -> dict[str, Any]:
        """One warm-up request (not recorded), then ``requests`` isolated requests of the plan.

        ``predicted`` is the offline prediction per stage (:func:`predicted_stages`). Each recorded request also
        gets the prediction calibrated online (:class:`~edgent.plan.calibration.ComputeCalibration`) from the
        requests before it, which then learns from its measured compute."""
        from edgent.runtime.session import DeviceRuntime, fixed_plan

        rt = DeviceRuntime(self.client, fixed_plan(exit, partition, codec), deadline_ms=None, records=self.records)
        cols: dict[str, list[Any]] = {k: [] for k in ("total_ms", *(f"{s}_ms" for s in STAGES), "upload_bytes",
                                                       "download_bytes", "where", "correct", "predicted_ms",
                                                       "predicted_device_ms", "predicted_edge_ms",
                                                       "device_raw_ms", "device_host_speed")}
        slowdown = getattr(getattr(self.client, "slowdown", None), "slowdown", None)  # DeviceThrottle's Slowdown
        cal = self.calibration
        start = self.witness.snapshot()
        for i in range(self.requests + 1):
            time.sleep(self.gap_s(crosses))
            img = self.images[self.k % len(self.images)]
            label = None if self.labels is None else int(self.labels[self.k % len(self.images)])
            self.k += 1
            key = (exit, partition, codec)
            p_dev, p_edge = predicted["device"] * cal.factor("device", key), predicted["edge"] * cal.factor("edge", key)
            p_cal = (predicted["total"] - predicted["device"] - predicted["edge"] + p_dev + p_edge, p_dev, p_edge)
            if slowdown is not None:
                slowdown.last = None
            r = rt.infer(img, label=label)
            steady = getattr(slowdown, "last", None)  # the device's call on the steady clock, if it computed
            if i == 0:
                continue  # the warm-up: first call of this configuration, not learnt from
            st = request_stages(r, self.rtt_base_ms)
            cal.observe("device", predicted["device"], st["device"], key)
            if r.where == "edge":
                cal.observe("edge", predicted["edge"], st["edge"], key)
            for k, v in zip(("predicted_ms", "predicted_device_ms", "predicted_edge_ms"), p_cal):
                cols[k].append(round(v, 3))
            for s in ("total", *STAGES):
                cols[f"{s}_ms"].append(round(st[s], 3))
            cols["upload_bytes"].append(int(r.upload_bytes))
            cols["download_bytes"].append(int(r.download_bytes))
            # what the device would have taken on the plain CPU clock: the same work, the host's passing speed
            cols["device_raw_ms"].append(None if steady is None else round(slowdown.factor * steady.work_cpu_ms, 3))
            cols["device_host_speed"].append(None if steady is None else round(steady.host_speed, 4))
            cols["where"].append(r.where)
            cols["correct"].append(None if label is None else bool(r.classes[0] == label))
        return {"exit": exit, "partition": partition, "codec": codec, "rate_bps": self.rate_bps,
                "rtt_base_ms": round(self.rtt_base_ms, 3), "burst_bytes": self.burst_bytes,
                "gap_s": round(self.gap_s(crosses), 4), "other_load_cpus": self.witness.other_cpus(start),
                "requests": cols}


def request_stages(r: Any, rtt_base_ms: float) -> dict[str, float]:
    """Measured time (ms) of each stage of :data:`STAGES` for one :class:`InferenceResult`."""
    if r.where != "edge" or r.network_ms is None:
        return {"total": r.total_ms, "device": r.device_ms, "link": 0.0, "rtt": 0.0, "edge": 0.0,
                "overheads": r.total_ms - r.device_ms}
    compute = float((r.server_timings_ms or {}).get("compute_ms", 0.0))
    net = float(r.network_ms)
    return {"total": r.total_ms, "device": r.device_ms, "link": net - rtt_base_ms, "rtt": rtt_base_ms,
            "edge": compute, "overheads": r.total_ms - r.device_ms - net - compute}


def predicted_stages(bd: LatencyBreakdown) -> dict[str, float]:
    """Predicted time (ms) of each stage of :data:`STAGES`."""
    return {"total": bd.total_ms, "device": bd.device_ms, "link": bd.upload_ms + bd.download_ms,
            "rtt": bd.rtt_ms, "edge": bd.edge_ms, "overheads": bd.serialization_ms + bd.queue_ms}


def _stats(v: Sequence[float]) -> dict[str, float]:
    a = np.asarray(v, dtype=float)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p5": float(np.percentile(a, 5)),
            "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max())}


# -- the experiments ----------------------------------------------------------------------------------------------

class PaperRun:
    """The three experiments for one variant (what is sent at point 0), sharing one :class:`Measurer`."""

    def __init__(self, name: str, table: LatencyTable, overhead: OverheadModel, measurer: Measurer,
                 opts: PaperOptions, console: Any) -> None:
        self.name, self.table, self.m, self.opts, self.console = name, table, measurer, opts, console
        self.overhead = overhead
        self.planner = Planner(table, overhead if not opts.fluid else PAPER_OVERHEAD)
        self.wire = Planner(table, overhead)
        self.fluid = Planner(table, PAPER_OVERHEAD)
        self.measurements: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple, str] = {}
        self.pixel_codec = VARIANTS[name][1]

    def codec_for(self, partition: int) -> str:
        return self.pixel_codec if partition == 0 else self.table.codec

    def measure(self, experiment: str, exit: int, partition: int) -> str:
        """The key of this configuration's measurement in this experiment (measured on first use)."""
        n = self.table.exits[exit - 1].num_units
        codec = self.codec_for(partition) if partition < n else "-"
        key = (experiment, self.m.rate_bps, exit, partition, codec)
        if key not in self._cache:
            name = f"{experiment}-{len(self._cache)}"
            t0 = time.perf_counter()
            bd = self.wire.predict(self.m.link(True), exit, partition)
            meas = self.m.run(exit, partition, codec if partition < n else self.table.codec, partition < n,
                              predicted_stages(bd))
            meas["experiment"] = experiment
            meas["placement"] = placement(n, partition)
            meas["wall_s"] = round(time.perf_counter() - t0, 2)
            meas["predicted_ms"] = bd.total_ms
            meas["predicted_stages_ms"] = predicted_stages(bd)
            meas["predicted_fluid_ms"] = self.fluid.predict(self.m.link(False), exit, partition).total_ms
            self.measurements[name] = meas
            self._cache[key] = name
        return self._cache[key]

    def point(self, experiment: str, exit: int, partition: int, deadline_ms: float, policy: str,
              feasible: bool | None) -> dict[str, Any]:
        """Measure (or reuse) a configuration and describe it as one point of ``experiment``."""
        key = self.measure(experiment, exit, partition)
        meas = self.measurements[key]
        n = self.table.exits[exit - 1].num_units
        pred, fluid_ms = meas["predicted_ms"], meas["predicted_fluid_ms"]
        req = meas["requests"]
        total = np.asarray(req["total_ms"])
        return {
            "policy": policy, "deadline_ms": deadline_ms, "bandwidth_kbit": self.m.rate_bps / 1e3,
            "exit": exit, "partition": partition, "units": n, "codec": meas["codec"],
            "placement": placement(n, partition), "accuracy": self.table.exits[exit - 1].accuracy,
            "predicted_feasible": feasible, "predicted_ms": pred, "predicted_stages_ms": meas["predicted_stages_ms"],
            "predicted_fluid_ms": fluid_ms,
            "measurement": key, "requests": int(total.size),
            "measured_ms": _stats(total),
            "measured_stages_median_ms": {s: float(np.median(req[f"{s}_ms"])) for s in STAGES},
            "met_share": float(np.mean(total <= deadline_ms)),
            "met": bool(np.mean(total <= deadline_ms) >= MET_SHARE),
            "within_share": float(np.mean(within(total, req["predicted_ms"]))),
            "within_share_offline": float(np.mean(within(total, pred))),
            "within_share_fluid": float(np.mean(within(total, fluid_ms))),
            "fallbacks": int(sum(w == "fallback" for w in req["where"])),
            "measured_top1": _top1(req["correct"]),
        }

    def _say(self, exp: str, row: dict[str, Any]) -> None:
        x = (f"{row['bandwidth_kbit']:g} kbit/s" if exp == "a" else f"{row['deadline_ms']:g} ms"
             + (f" {row['policy']}" if exp == "c" else ""))
        self.console.print(f"  ({exp}) {x}: exit {row['exit']} partition {row['partition']}/{row['units']} "
                           f"predicted {row['predicted_ms']:.1f} ms, measured median "
                           f"{row['measured_ms']['median']:.1f} ms (p95 {row['measured_ms']['p95']:.1f}), "
                           f"within {100 * row['within_share']:.0f} %, "
                           f"{'met' if row['met'] else 'MISSED'}", highlight=False)

    def bandwidth_sweep(self, rates_kbit: Sequence[float], deadline_ms: float) -> dict[str, Any]:
        rows = []
        for r in rates_kbit:
            self.m.set_rate(r * 1e3)
            p = self.planner.plan(self.m.link(not self.opts.fluid), deadline_ms)
            rows.append(self.point("a", p.exit, p.partition, deadline_ms, "edgent", p.feasible))
            self._say("a", rows[-1])
        return {"deadline_ms": deadline_ms, "rows": rows}

    def deadline_sweep(self, rate_kbit: float, deadlines_ms: Sequence[float]) -> dict[str, Any]:
        self.m.set_rate(rate_kbit * 1e3)
        rows = []
        for d in deadlines_ms:
            p = self.planner.plan(self.m.link(not self.opts.fluid), d)
            rows.append(self.point("b", p.exit, p.partition, d, "edgent", p.feasible))
            self._say("b", rows[-1])
        return {"bandwidth_kbit": rate_kbit, "rows": rows}

    def policies(self, rate_kbit: float, deadlines_ms: Sequence[float], oracle: bool) -> dict[str, Any]:
        self.m.set_rate(rate_kbit * 1e3)
        link = self.m.link(not self.opts.fluid)
        rows = []
        candidates: list[tuple[int, int]] = []
        if oracle:  # every exit: all on the edge, all on the device, its predicted best split
            totals = self.planner.totals(link)
            for e in self.table.exits:
                mine = np.flatnonzero(self.planner.pair_exit == e.exit)
                best = int(self.planner.pair_point[mine[np.argmin(totals[mine])]])
                candidates += [(e.exit, p) for p in dict.fromkeys((0, e.num_units, best))]
            for ex, p in candidates:
                self.measure("c", ex, p)
        for d in deadlines_ms:
            for policy in POLICIES:
                p = self.planner.plan(link, d, policy)
                rows.append(self.point("c", p.exit, p.partition, d, policy, p.feasible))
                self._say("c", rows[-1])
            if oracle:
                pts = [self.point("c", ex, p, d, "oracle", None) for ex, p in candidates]
                ok = [r for r in pts if r["met"]]
                if ok:
                    best = max(ok, key=lambda r: (r["accuracy"], -r["measured_ms"]["median"]))
                else:
                    best = min(pts, key=lambda r: r["measured_ms"]["median"])
                rows.append(best)
                self._say("c", best)
        return {"bandwidth_kbit": rate_kbit, "rows": rows,
                "oracle_candidates": [{"exit": e, "partition": p} for e, p in candidates]}


def _top1(correct: Sequence[bool | None]) -> float | None:
    c = [x for x in correct if x is not None]
    return float(np.mean(c)) if c else None


# -- the summary --------------------------------------------------------------------------------------------------

def device_spread(variants: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """How much identical device calls spread, on the steady clock the device ran on and on the plain CPU clock
    (the same calls' raw CPU time x the slowdown): the share of device calls within +-10 % (or 5 ms) of their
    configuration's median, and the host's speed during them (:mod:`edgent.profile.hostspeed`)."""
    ok_steady: list[bool] = []
    ok_raw: list[bool] = []
    speed: list[float] = []
    for v in variants.values():
        for meas in v["measurements"].values():
            req = meas["requests"]
            rows = [(d, raw, sp) for d, raw, sp in zip(req["device_ms"], req.get("device_raw_ms") or [],
                                                      req.get("device_host_speed") or []) if raw is not None]
            if not rows:
                continue
            d, raw, sp = (np.asarray(c, dtype=float) for c in zip(*rows))
            ok_steady += list(within(d, np.median(d)))
            ok_raw += list(within(raw, np.median(raw)))
            speed += list(sp)
    if not speed:
        return None
    return {"calls": len(speed), "within_own_median_steady_clock": float(np.mean(ok_steady)),
            "within_own_median_plain_cpu_clock": float(np.mean(ok_raw)),
            "host_speed": {k: float(np.percentile(speed, q)) for k, q in (("p5", 5), ("median", 50), ("p95", 95))}}


def summarize(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Predicted against measured over every measured request (each measurement once, also the oracle's
    candidates it did not pick), stage by stage; and whether Edgent met every requirement of (c) that the oracle
    met."""
    pred_tot: list[float] = []
    pred_off: list[float] = []
    own_median: list[float] = []
    pred_fluid: list[float] = []
    meas_tot: list[float] = []
    place: list[str] = []
    exps: list[str] = []
    meas_st: dict[str, list[float]] = {s: [] for s in STAGES}
    pred_st: dict[str, list[float]] = {s: [] for s in STAGES}
    for v in variants.values():
        for meas in v["measurements"].values():
            req = meas["requests"]
            n = len(req["total_ms"])
            meas_tot += req["total_ms"]
            pred_off += [meas["predicted_ms"]] * n
            own_median += [float(np.median(req["total_ms"]))] * n
            pred_tot += req.get("predicted_ms") or [meas["predicted_ms"]] * n
            pred_fluid += [meas["predicted_fluid_ms"]] * n
            place += [meas["placement"]] * n
            exps += [meas["experiment"]] * n
            for s in STAGES:
                meas_st[s] += req[f"{s}_ms"]
                pred_st[s] += req.get(f"predicted_{s}_ms") or [meas["predicted_stages_ms"][s]] * n
    m, p, pf = np.asarray(meas_tot), np.asarray(pred_tot), np.asarray(pred_fluid)
    ok = within(m, p)
    out: dict[str, Any] = {
        "requests": int(m.size),
        "within_share": float(ok.mean()) if m.size else None,
        "within_share_offline": float(within(m, np.asarray(pred_off)).mean()) if m.size else None,
        "within_share_fluid": float(within(m, pf).mean()) if m.size else None,
        "median_measured_over_predicted": float(np.median(m / np.maximum(p, 1e-9))) if m.size else None,
        "within_share_by_placement": {}, "within_share_by_experiment": {}, "stages": {},
    }
    # the noise floor: each configuration's own median, known only afterwards, is the best one figure per
    # configuration could do; what it misses is the spread of repeated identical requests, not the model
    ok_med = within(m, np.asarray(own_median)) if m.size else np.zeros(0, bool)
    out["within_share_of_own_median"] = float(ok_med.mean()) if m.size else None
    place_a, exps_a = np.asarray(place), np.asarray(exps)
    for k in sorted(set(place)):
        sel = place_a == k
        out["within_share_by_placement"][k] = {"requests": int(sel.sum()), "within_share": float(ok[sel].mean()),
                                               "within_share_offline": float(within(m[sel],
                                                                                    np.asarray(pred_off)[sel]).mean()),
                                               "within_share_of_own_median": float(ok_med[sel].mean()),
                                               "within_share_fluid": float(within(m[sel], pf[sel]).mean())}
    for k in sorted(set(exps)):
        sel = exps_a == k
        out["within_share_by_experiment"][k] = {"requests": int(sel.sum()), "within_share": float(ok[sel].mean())}
    blame = {s: 0 for s in STAGES}
    errs = {s: np.asarray(meas_st[s]) - np.asarray(pred_st[s]) for s in STAGES}
    for i in np.flatnonzero(~ok):
        blame[max(STAGES, key=lambda s: abs(errs[s][i]))] += 1
    for s in STAGES:
        e, ms, ps = errs[s], np.asarray(meas_st[s]), np.asarray(pred_st[s])
        used = (ps > 0) | (ms > 0.05)  # the stage ran (or was predicted to)
        out["stages"][s] = {
            "what": STAGE_NOTES[s], "requests": int(used.sum()),
            "median_error_ms": float(np.median(e[used])) if used.any() else 0.0,
            "median_abs_error_ms": float(np.median(np.abs(e[used]))) if used.any() else 0.0,
            "p95_abs_error_ms": float(np.percentile(np.abs(e[used]), 95)) if used.any() else 0.0,
            "within_share": float(within(ms[used], ps[used]).mean()) if used.any() else None,
            "median_measured_over_predicted": (float(np.median(ms[used & (ps > 0)] / ps[used & (ps > 0)]))
                                               if (used & (ps > 0)).any() else None),
            "largest_error_of_requests_outside": blame[s],
        }
    out["requests_outside"] = int((~ok).sum())
    out["device_spread"] = device_spread(variants)
    # which predictions are to blame: the share within if a stage's prediction were replaced by its measurement
    md, me = np.asarray(meas_st["device"]), np.asarray(meas_st["edge"])
    pd, pe = np.asarray(pred_st["device"]), np.asarray(pred_st["edge"])
    out["within_share_if_measured"] = {
        "device": float(within(m, p - pd + md).mean()) if m.size else None,
        "edge": float(within(m, p - pe + me).mean()) if m.size else None,
        "device_and_edge": float(within(m, p - pd + md - pe + me).mean()) if m.size else None,
        "device_and_edge_fluid_link": float(within(m, pf - pd + md - pe + me).mean()) if m.size else None,
    }
    # (c): Edgent against the oracle
    checks = {}
    for name, v in variants.items():
        rows = v["c_policies"]["rows"]
        if not any(r["policy"] == "oracle" for r in rows):
            continue
        by = {(r["policy"], r["deadline_ms"]): r for r in rows}
        ds = sorted({r["deadline_ms"] for r in rows})
        checks[name] = {f"{d:g}": {"oracle_met": by[("oracle", d)]["met"], "edgent_met": by[("edgent", d)]["met"],
                                   "oracle_accuracy": by[("oracle", d)]["accuracy"],
                                   "edgent_accuracy": by[("edgent", d)]["accuracy"]} for d in ds}
    out["edgent_vs_oracle"] = checks
    loads = [m["other_load_cpus"] for v in variants.values() for m in v["measurements"].values()
             if m.get("other_load_cpus") is not None]
    out["other_load_cpus"] = ({"median": float(np.median(loads)), "max": float(np.max(loads))} if loads else None)
    out["edgent_meets_every_requirement_the_oracle_meets"] = (
        all(c["edgent_met"] for v in checks.values() for c in v.values() if c["oracle_met"]) if checks else None)
    return out


# -- plots --------------------------------------------------------------------------------------------------------

STAGE_COLORS = {"device": "tab:red", "link": "tab:green", "rtt": "tab:olive", "edge": "tab:purple",
                "overheads": "tab:gray"}


def _sweep_axes(axes: Any, rows: list[dict[str, Any]], xkey: str, xlabel: str, title: str, max_exit: int,
                deadline_ms: float | None) -> None:
    import matplotlib.ticker as mticker

    ax_choice, ax_lat = axes
    xs = [r[xkey] for r in rows]
    idx = np.arange(len(rows))
    ax_choice.plot(idx, [r["exit"] for r in rows], "o-", color="tab:blue")
    ax_choice.set_ylabel("exit point", color="tab:blue")
    ax_choice.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax_choice.set_ylim(0.5, max_exit + 0.5)
    ax_p = ax_choice.twinx()
    ax_p.plot(idx, [r["partition"] for r in rows], "s--", color="tab:orange")
    ax_p.set_ylabel("partition point (units on device)", color="tab:orange")
    ax_p.set_ylim(-0.5, max(r["units"] for r in rows) + 0.5)
    ax_choice.set_xticks(idx, [f"{x:g}" for x in xs], fontsize=7)
    ax_choice.set_title(title, fontsize=9)
    bottom = np.zeros(len(rows))
    width = 0.38
    for s in STAGES:
        vals = np.array([r["predicted_stages_ms"][s] for r in rows])
        ax_lat.bar(idx - width / 2, vals, width, bottom=bottom, color=STAGE_COLORS[s], label=f"predicted {s}")
        bottom += vals
    bottom = np.zeros(len(rows))
    for s in STAGES:
        vals = np.array([r["measured_stages_median_ms"][s] for r in rows])
        ax_lat.bar(idx + width / 2, vals, width, bottom=bottom, color=STAGE_COLORS[s], alpha=0.45,
                   edgecolor="black", linewidth=0.3)
        bottom += vals
    med = np.array([r["measured_ms"]["median"] for r in rows])
    lo = med - np.array([r["measured_ms"]["p5"] for r in rows])
    hi = np.array([r["measured_ms"]["p95"] for r in rows]) - med
    ax_lat.errorbar(idx + width / 2, med, yerr=[lo, hi], fmt="k.", ms=5, capsize=2,
                    label="measured median, p5-p95 (right bars: measured stages)")
    if deadline_ms is not None:
        ax_lat.axhline(deadline_ms, color="black", ls=":", lw=1, label="requirement")
    else:
        ax_lat.plot(idx, xs, "k:", lw=1, label="requirement")
    top = max(max(r["measured_ms"]["p95"] for r in rows), max(r["predicted_ms"] for r in rows))
    for i, r in enumerate(rows):
        if not r["met"]:
            ax_lat.text(i, top * 1.02, "miss", ha="center", va="bottom", fontsize=7, color="red")
    ax_lat.set_xticks(idx, [f"{x:g}" for x in xs], rotation=60, fontsize=7)
    ax_lat.set_xlabel(xlabel)
    ax_lat.set_ylabel("latency (ms): left predicted, right measured")
    ax_lat.legend(fontsize=6, loc="upper center", ncol=2)


def plot_paper(result: dict[str, Any], out_dir: str | Path, prefix: str = "paper") -> list[Path]:
    """Write the plots of a run: (a), (b) predicted vs measured per point with the requirement, (c) accuracy per
    method and requirement with the misses marked, and predicted vs measured per request."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = result["variants"]
    paths = []
    n_exits = len(result["accuracy_per_exit"])
    link = "namespace testbed (tc tbf)" if result["testbed"]["kind"] == "netns" else "EMULATED link"
    for key, fname, xkey, xlabel, title in (
        ("a_bandwidth_sweep", f"{prefix}_bandwidth.png", "bandwidth_kbit", "bandwidth (kbit/s)", "(a) requirement"),
        ("b_deadline_sweep", f"{prefix}_deadline.png", "deadline_ms", "latency requirement (ms)", "(b) bandwidth"),
    ):
        fig, axes = plt.subplots(2, len(variants), figsize=(max(9.0, 6.5 * len(variants)), 7.5), squeeze=False)
        for col, (vname, v) in enumerate(variants.items()):
            exp = v[key]
            what = (f"{exp['deadline_ms']:g} ms" if key.startswith("a") else f"{exp['bandwidth_kbit']:g} kbit/s")
            _sweep_axes(axes[:, col], exp["rows"], xkey, xlabel,
                        f"{title} {what}; input {v['input_bytes']} B ({vname})", n_exits,
                        exp["deadline_ms"] if key.startswith("a") else None)
        fig.suptitle(f"{result['model']}: Edgent's plan, predicted vs measured ({link}, "
                     f"{result['options']['requests']} requests per point)", fontsize=10)
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, len(variants), figsize=(7 * len(variants), 4.2), squeeze=False)
    for col, (vname, v) in enumerate(variants.items()):
        ax = axes[0, col]
        rows = v["c_policies"]["rows"]
        floor = max(0.0, min(r["accuracy"] for r in rows) - 0.1)
        accuracy_bars(ax, rows, floor)
        ax.set_ylabel("accuracy of the exit used (model card)")
        ax.set_ylim(floor, min(1.0, max(r["accuracy"] for r in rows) + 0.06))
        ax.set_title(f"(c) {v['c_policies']['bandwidth_kbit']:g} kbit/s, input {v['input_bytes']} B ({vname}); "
                     f"hatched/x = measured miss", fontsize=9)
        ax.legend(fontsize=7, ncol=6, loc="upper left")
    fig.tight_layout()
    path = out / f"{prefix}_accuracy.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.5), squeeze=False)
    for ax, which, title in ((axes[0, 0], "predicted_fluid_ms", "the paper's formula (payload bytes / rate)"),
                             (axes[0, 1], "predicted_ms", "wire model (shaper burst, framing, packet headers)")):
        shown: set[str] = set()
        lo, hi = math.inf, 0.0
        good = total = 0
        for vname, v in variants.items():
            for k, m in enumerate(v["measurements"].values()):
                meas = np.asarray(m["requests"]["total_ms"])
                pred = np.full(meas.size, m[which])
                jitter = pred * np.exp(np.random.default_rng(k).normal(0, 0.01, meas.size))  # to see overlaps
                label = f"{m['placement']} ({vname})"
                color = {"device only": "tab:red", "edge only": "tab:purple", "split": "tab:green"}[m["placement"]]
                ax.scatter(jitter, meas, s=9, marker="o" if vname == "as_sent" else "^", color=color, alpha=0.5,
                           label=None if label in shown else label)
                shown.add(label)
                lo, hi = min(lo, meas.min(), pred.min()), max(hi, meas.max(), pred.max())
                good += int(within(meas, pred).sum())
                total += meas.size
        xs = np.geomspace(max(lo * 0.8, 1.0), hi * 1.2, 100)
        ax.plot(xs, xs, "k-", lw=0.8)
        ax.fill_between(xs, xs - np.maximum(0.1 * xs, 5), xs + np.maximum(0.1 * xs, 5), color="gray", alpha=0.2,
                        label="+-10 % or 5 ms")
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
            axis.set_major_formatter(ScalarFormatter())
            axis.set_major_locator(FixedLocator([10, 20, 50, 100, 200, 500, 1000, 2000, 5000]))
        ax.set_xlabel("predicted latency (ms)")
        ax.set_ylabel("measured latency (ms)")
        ax.set_title(f"{title}: {100 * good / max(total, 1):.0f} % of {total} requests within", fontsize=9)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{result['model']}: predicted vs measured per request ({link})", fontsize=10)
    fig.tight_layout()
    path = out / f"{prefix}_scatter.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    paths.append(path)
    return paths


# -- the run ------------------------------------------------------------------------------------------------------

def _sigterm_as_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def calibrate_wire(client: Any, image: np.ndarray, codec: str, input_bytes: int, result_bytes: int, netns: bool,
                   requests: int = 5) -> tuple[WireFraming, float]:
    """edgent's framing and per-request runtime overhead, measured on a few edge-only requests (not recorded):
    what a request and its answer carried beyond their payloads; on the namespace testbed, the packets' headers at
    the connection's MSS; and the median time of everything but the device, the link and the edge's compute
    (encoding, decoding, framing, the server's bookkeeping: the planner's per-message cost, two messages each)."""
    overheads = []
    for _ in range(requests):
        time.sleep(MIN_GAP_S)
        r = client.infer(image, client.chain.exit_points[-1].exit, 0, codec, fallback=False)
        compute = float((r.server_timings_ms or {}).get("compute_ms", 0.0))
        overheads.append(r.total_ms - r.device_ms - float(r.network_ms) - compute)
    mss = ETHERNET_MSS
    if netns and client.sock is not None:
        try:
            mss = int(client.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG))
        except OSError:
            pass
    framing = WireFraming.edgent(r.upload_bytes - input_bytes, r.download_bytes - result_bytes, ethernet=netns,
                                 segment_bytes=mss)
    return framing, float(np.median(overheads))


def run_paper(opts: PaperOptions, console: Any = None) -> dict[str, Any]:
    """Run the experiments, write the JSON and the plots, print the summary; returns the result."""
    import torch
    from rich.console import Console

    from edgent.bench.record import RESULTS_DIR, write_result
    from edgent.model.zoo import load_for_inference
    from edgent.profile.device import DeviceThrottle
    from edgent.demo.run import CARD_DIR, DemoOptions, load_inputs, resolve_accuracies
    from edgent.plan.sources import table_for_model
    from edgent.runtime.client import DeviceClient
    from edgent.testbed import open_testbed, start_edge_server

    console = console or Console()
    if opts.requests < 1:
        raise ConfigError(f"--requests must be at least 1, got {opts.requests}")
    if not opts.rtt_ms >= 0:
        raise ConfigError(f"--rtt must be >= 0 ms, got {opts.rtt_ms}")
    for v in opts.variants:
        if v not in VARIANTS:
            raise ConfigError(f"unknown input variant {v!r}; known: {', '.join(VARIANTS)}")
    t_start = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    raw = Path(opts.raw_dir) if opts.raw_dir else Path("runs") / f"bench-paper-{stamp}"
    raw.mkdir(parents=True, exist_ok=True)
    rates = QUICK_BANDWIDTHS_KBIT if opts.quick else BANDWIDTHS_KBIT
    deadlines_b = QUICK_DEADLINES_B_MS if opts.quick else DEADLINES_B_MS
    deadlines_c = QUICK_DEADLINES_C_MS if opts.quick else DEADLINES_C_MS

    accs, acc_source = resolve_accuracies(DemoOptions(accuracies=opts.accuracies))
    base = table_for_model(MODEL, accuracies=accs)
    tables = {v: with_input_bytes(base, VARIANTS[v][0], raw_input=VARIANTS[v][1] == "uint8") for v in opts.variants}
    torch.set_num_threads(1)  # the device role: one thread
    torch.manual_seed(opts.seed)
    weights_file = CARD_DIR / f"{MODEL}.safetensors"
    random_weights = opts.random_weights or not weights_file.is_file()
    notes = []
    if random_weights and not opts.random_weights:
        notes.append(f"no trained weights at {weights_file}: both sides use the same seeded random weights")
    chain = load_for_inference(MODEL, random_weights=random_weights, seed=opts.seed)
    images, labels, input_source = load_inputs(DemoOptions(seed=opts.seed, synthetic_inputs=opts.synthetic_inputs),
                                               10000 if not opts.quick else 500)
    result: dict[str, Any] = {
        "model": MODEL, "quick": opts.quick, "options": asdict(opts), "accuracy_per_exit": accs,
        "accuracy_source": acc_source, "inputs": input_source, "notes": notes,
        "criteria": {"within": f"|measured - predicted| <= max({WITHIN_REL:g} x predicted, {WITHIN_ABS_MS:g} ms)",
                     "met": f"a point meets its requirement when >= {MET_SHARE:.0%} of its requests do",
                     "requests": "isolated: the link idle until the shaper's bucket is full (at least "
                                 f"{MIN_GAP_S * 1e3:g} ms) before each; one unrecorded warm-up per configuration",
                     "sharing": "one configuration on one link is measured once per experiment; points of (b) "
                                "and (c) that chose it share it"},
        "stages": STAGE_NOTES, "compute_predicted": compute_ratio(base),
        "latency_models": "edgent.latency.default_predictor('device'|'edge') (edgent/latency/fitted/)",
        "raw_dir": str(raw), "variants": {},
    }
    old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with contextlib.ExitStack() as stack:
            tb = stack.enter_context(open_testbed(2e6, opts.rtt_ms, emulate=True if opts.emulate else None))
            throttle = stack.enter_context(DeviceThrottle())
            result["testbed"] = {"kind": tb.kind, "describe": tb.describe(), "rtt_delay_ms": opts.rtt_ms}
            result["device"] = throttle.describe()
            console.print(("testbed: " if tb.kind == "netns" else "") + tb.describe(), highlight=False)
            console.print(throttle.describe(), highlight=False)
            console.print(f"inputs: {input_source}", highlight=False)
            extra = ["--threads", "0", "--torch-threads", "2"]
            if random_weights:
                extra += ["--random-weights", "--seed", str(opts.seed)]
            edge_proc, port = start_edge_server(tb, MODEL, opts.port, raw / "edge.log", extra)
            device_ms = {e.exit: float(sum(e.device_unit_ms) + e.device_part_ms) for e in base.exits}
            client = DeviceClient(tb.edge_host, port, chain, link=tb.link, slowdown=throttle,
                                  exit_accuracy={i + 1: a for i, a in enumerate(accs)}, device_exit_ms=device_ms,
                                  client_name="edgent-bench-paper")
            with client, open(raw / "records.jsonl", "w") as records:
                if not client.connect(force=True):
                    raise EdgentError(f"the device cannot reach the edge at {tb.edge_host}:{port}: "
                                      f"{getattr(client, 'last_connect_error', '?')}")
                # warm-up, not recorded: the first forward passes on both sides; the framing of each variant
                client.infer(images[0], 1, base.exits[0].num_units)
                calib = {v: calibrate_wire(client, images[0], VARIANTS[v][1], VARIANTS[v][0],
                                           base.exits[-1].result_bytes, tb.kind == "netns") for v in opts.variants}
                overheads = {v: OverheadModel(fixed_ms_per_message=ms / 2).with_framing(fr)
                             for v, (fr, ms) in calib.items()}
                result["wire_framing"] = {v: fr.to_json() for v, (fr, _) in calib.items()}
                result["runtime_overhead_ms_per_request"] = {v: round(ms, 4) for v, (_, ms) in calib.items()}
                witness = CpuWitness([os.getpid(), edge_proc.pid])
                measurer = Measurer(tb, client, images, labels, records, opts.requests, console, witness)
                for v in opts.variants:
                    console.rule(f"{v}: {VARIANTS[v][0]} bytes sent at partition point 0 ({VARIANTS[v][1]})")
                    run = PaperRun(v, tables[v], overheads[v], measurer, opts, console)
                    out = {"input_bytes": VARIANTS[v][0], "input_codec": VARIANTS[v][1]}
                    out["a_bandwidth_sweep"] = run.bandwidth_sweep(rates, DEADLINE_A_MS)
                    out["b_deadline_sweep"] = run.deadline_sweep(RATE_B_KBIT, deadlines_b)
                    out["c_policies"] = run.policies(RATE_C_KBIT, deadlines_c, opts.oracle)
                    out["measurements"] = run.measurements
                    result["variants"][v] = out
                result["calibration"] = measurer.calibration.to_json()
    finally:
        signal.signal(signal.SIGTERM, old_term)
    result["summary"] = summarize(result["variants"])
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    name = "paper-quick" if opts.quick else "paper"
    out_dir = Path(opts.out_dir) if opts.out_dir else RESULTS_DIR
    path = write_result(name, result, out_dir)
    plots = plot_paper(result, out_dir, prefix=name)
    print_summary(console, result)
    console.print(f"wrote {path} and {', '.join(str(p) for p in plots)}; device records and edge log in {raw}",
                  highlight=False)
    return result


def print_summary(console: Any, result: dict[str, Any]) -> None:
    """The per-point tables and the predicted-vs-measured summary, with rich."""
    from rich import box
    from rich.table import Table

    for vname, v in result["variants"].items():
        tab = Table(box=box.SIMPLE_HEAD, title=f"{vname} (input {v['input_bytes']} B): per point", pad_edge=False)
        for c in ("exp", "point", "policy", "exit/part", "pred ms", "meas med", "p95", "met %", "within %", "ok"):
            tab.add_column(c, justify="left" if c in ("exp", "policy") else "right", no_wrap=True)
        for exp, xkey in (("a_bandwidth_sweep", "bandwidth_kbit"), ("b_deadline_sweep", "deadline_ms"),
                          ("c_policies", "deadline_ms")):
            for r in v[exp]["rows"]:
                unit = " kbit/s" if xkey == "bandwidth_kbit" else " ms"
                tab.add_row(exp[0], f"{r[xkey]:g}{unit}", r["policy"], f"{r['exit']}/{r['partition']}",
                            f"{r['predicted_ms']:.1f}", f"{r['measured_ms']['median']:.1f}",
                            f"{r['measured_ms']['p95']:.1f}", f"{100 * r['met_share']:.0f}",
                            f"{100 * r['within_share']:.0f}", "met" if r["met"] else "[red]MISS[/red]")
        console.print(tab)
    s = result["summary"]
    tab = Table(box=box.SIMPLE_HEAD, title="predicted vs measured, by stage (every request once)", pad_edge=False)
    for c in ("stage", "requests", "median err ms", "median |err| ms", "p95 |err| ms", "meas/pred", "within %",
              "worst of misses"):
        tab.add_column(c, justify="left" if c == "stage" else "right")
    for st, d in s["stages"].items():
        ratio = d["median_measured_over_predicted"]
        tab.add_row(st, str(d["requests"]), f"{d['median_error_ms']:+.2f}", f"{d['median_abs_error_ms']:.2f}",
                    f"{d['p95_abs_error_ms']:.2f}", "-" if ratio is None else f"{ratio:.3f}",
                    "-" if d["within_share"] is None else f"{100 * d['within_share']:.0f}",
                    str(d["largest_error_of_requests_outside"]))
    console.print(tab)
    by_place = ", ".join(f"{k} {100 * d['within_share']:.0f} % of {d['requests']}"
                         for k, d in s["within_share_by_placement"].items())
    console.print(f"[bold]{s['requests']} requests: {100 * s['within_share']:.1f} % within +-10 % (or 5 ms) of the "
                  f"prediction calibrated online[/bold] ({100 * s['within_share_offline']:.1f} % of the offline "
                  f"prediction, {100 * s['within_share_fluid']:.1f} % of the paper's fluid formula); by placement: "
                  f"{by_place}", highlight=False)
    console.print(f"the noise floor: {100 * s['within_share_of_own_median']:.1f} % are within +-10 % (or 5 ms) of "
                  "their own configuration's median (known only afterwards: the best one figure per configuration "
                  "could do); by placement: " + ", ".join(
                      f"{k} {100 * d['within_share_of_own_median']:.0f} %"
                      for k, d in s["within_share_by_placement"].items()), highlight=False)
    ds = s.get("device_spread")
    if ds:
        console.print(f"identical device calls ({ds['calls']}): {100 * ds['within_own_median_steady_clock']:.0f} % "
                      f"within +-10 % (or 5 ms) of their configuration's median on the steady clock the device ran "
                      f"on, {100 * ds['within_own_median_plain_cpu_clock']:.0f} % on the plain CPU clock (the same "
                      f"calls); host speed p5 {ds['host_speed']['p5']:.2f}, median {ds['host_speed']['median']:.2f}, "
                      f"p95 {ds['host_speed']['p95']:.2f} of the reference", highlight=False)
    cf = s["within_share_if_measured"]
    console.print(f"with the measured compute in place of its prediction: device {100 * cf['device']:.1f} %, edge "
                  f"{100 * cf['edge']:.1f} %, both {100 * cf['device_and_edge']:.1f} % within (both, with the "
                  f"paper's fluid link formula: {100 * cf['device_and_edge_fluid_link']:.1f} %)", highlight=False)
    ok = s["edgent_meets_every_requirement_the_oracle_meets"]
    if ok is not None:
        console.print(f"[bold]Edgent meets every requirement of (c) the oracle meets: {'yes' if ok else 'NO'}"
                      "[/bold]", highlight=False)
    load = s.get("other_load_cpus")
    if load:
        console.print(f"other work on the machine during the measurements: median {load['median']:.2f}, max "
                      f"{load['max']:.2f} CPUs (CPU time of every process but the device and the edge)",
                      highlight=False)
    console.print(f"testbed: {result['testbed']['describe']}; wall time {result['wall_s']:.0f} s",
                  highlight=False)


# -- command ------------------------------------------------------------------------------------------------------

def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("paper", help="the paper's static experiments measured on the testbed (JSON + PNG)",
                             description="Run the three static experiments of the paper on the real co-inference "
                                         "system (testbed link, slowed device, edge server) and compare the "
                                         "measured latency of every plan with its prediction.")
    p.add_argument("--requests", type=int, default=None,
                   help="measured requests per configuration (default 20; --quick: 4)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: as_sent only, 2 points per experiment, 4 requests (writes paper-quick.json)")
    p.add_argument("--rtt", type=float, default=20.0, help="round-trip delay added on the link, ms (default 20)")
    p.add_argument("--inputs", default=None,
                   help="comma-separated variants of what is sent at point 0: as_sent (3072 B uint8 pixels), "
                        "float32_input (12288 B); default both (--quick: as_sent)")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle's candidate measurements in (c)")
    p.add_argument("--fluid", action="store_true",
                   help="plan with the paper's fluid link formula instead of the wire model (both are reported)")
    p.add_argument("--emulate", action="store_true", help="use the emulated link even as root")
    p.add_argument("--synthetic-inputs", action="store_true", help="random images instead of CIFAR-10")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights on both sides")
    p.add_argument("--accuracies", default="", help="per-exit top-1 a1,..,a5 instead of the model card")
    p.add_argument("--seed", type=int, default=0, help="seed of the input order (and of random weights)")
    p.add_argument("--port", type=int, default=8471, help="edge port in the namespace (default 8471)")
    p.add_argument("--out-dir", default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--raw-dir", default=None,
                   help="folder for the device's records.jsonl and the edge's log (default runs/bench-paper-<time>)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console

    from edgent.model.card import parse_accuracies

    variants = (tuple(v.strip() for v in args.inputs.split(",") if v.strip()) if args.inputs
                else ("as_sent",) if args.quick else tuple(VARIANTS))
    requests = args.requests if args.requests is not None else 4 if args.quick else 20
    opts = PaperOptions(requests=requests,
                        quick=args.quick, rtt_ms=args.rtt, variants=variants, oracle=not args.no_oracle,
                        fluid=args.fluid, emulate=args.emulate,
                        synthetic_inputs=args.synthetic_inputs, random_weights=args.random_weights,
                        accuracies=parse_accuracies(args.accuracies), seed=args.seed, port=args.port,
                        out_dir=args.out_dir, raw_dir=args.raw_dir)
    run_paper(opts, Console(width=None if sys.stdout.isatty() else 160))
    return 0


__all__ = ["PaperOptions", "plot_paper", "run_paper", "summarize", "within"]
