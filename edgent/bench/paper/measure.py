"""Measuring fixed plans on the co-inference bed: the experiments' points, each request's stage times, the
predictions they are compared with, and how busy the rest of the machine was meanwhile.

- :class:`Measurer` shapes the link, measures its base round trip and runs one configuration for a number of
  isolated requests through the device agent (:class:`~edgent.runtime.agent.EdgentAgent`, the code of ``edgent
  run`` and the demo), which prices each request offline and calibrated online and records it;
- :class:`PaperRun` runs the three experiments for one input variant: it plans each point with the offline
  planner and measures each chosen configuration once per experiment and link;
- :func:`calibrate_wire` (the testbed's, ``edgent.testbed.bed``) measures the framing bytes, the MSS and the runtime's own cost per request that the
  planner's wire model is given;
- :class:`CpuWitness` records how much CPU other processes used during a measurement (the host is shared).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from edgent.bench.paper.summary import MET_SHARE, STAGES, latency_stats, top1, within
from edgent.testbed.bed import calibrate_wire  # noqa: F401  (re-exported: the command calibrates with it)
from edgent.plan.calibration import ComputeCalibration
from edgent.plan.link import Link, shaper_burst_bytes
from edgent.plan.overhead import OverheadModel
from edgent.plan.planner import POLICIES, LatencyBreakdown, Planner
from edgent.plan.table import LatencyTable

MODEL = "alexnet-cifar10"
#: what is sent at partition point 0 in each variant (bytes per image) and the codec that sends it
VARIANTS: dict[str, tuple[int, str]] = {"as_sent": (3072, "uint8"), "float32_input": (12288, "float32")}
#: the shortest idle time before a request (s)
MIN_GAP_S = 0.05
#: the planner's costs without the wire model: the paper's formula (+ the default (de)serialization cost)
PAPER_OVERHEAD = OverheadModel()


# -- the machine's other work ------------------------------------------------------------------------------------

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


# -- stages ------------------------------------------------------------------------------------------------------

def placement(units: int, partition: int) -> str:
    """Where a configuration runs: "edge only" (point 0), "device only" (point ``units``) or "split"."""
    return "edge only" if partition == 0 else "device only" if partition == units else "split"


def record_stages(rec: dict[str, Any], rtt_base_ms: float) -> dict[str, float]:
    """Measured time (ms) of each stage of :data:`STAGES` for one agent record."""
    m = rec["measured_ms"]
    total, device = float(rec["total_ms"]), float(m["device"])
    if rec["where"] != "edge" or m["network"] is None:
        return {"total": total, "device": device, "link": 0.0, "rtt": 0.0, "edge": 0.0,
                "overheads": total - device}
    compute = float(m.get("edge_compute") or 0.0)
    net = float(m["network"])
    return {"total": total, "device": device, "link": net - rtt_base_ms, "rtt": rtt_base_ms,
            "edge": compute, "overheads": total - device - net - compute}


def predicted_stages(bd: LatencyBreakdown) -> dict[str, float]:
    """Predicted time (ms) of each stage of :data:`STAGES`."""
    return {"total": bd.total_ms, "device": bd.device_ms, "link": bd.upload_ms + bd.download_ms,
            "rtt": bd.rtt_ms, "edge": bd.edge_ms, "overheads": bd.serialization_ms + bd.queue_ms}


# -- measuring ----------------------------------------------------------------------------------------------------

class Measurer:
    """Runs fixed plans on the testbed through the device agent and keeps each request's stage times."""

    def __init__(self, tb: Any, client: Any, images: np.ndarray, labels: np.ndarray | None, records: IO[str],
                 requests: int, console: Any, witness: CpuWitness) -> None:
        self.tb, self.client, self.images, self.labels = tb, client, images, labels
        self.records, self.requests, self.console = records, requests, console
        self.witness = witness
        #: the agents' online calibration, one for the whole run (every variant's agent learns into it)
        self.calibration = ComputeCalibration()
        self.agent: Any = None
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

    def use(self, table: LatencyTable, overhead: OverheadModel) -> None:
        """Serve the next measurements with a device agent over ``table``'s configurations, priced with the wire
        model ``overhead`` (closes the previous agent). Its requirement is far beyond any request (the points'
        requirements are applied afterwards): the edge's answer is waited for as the client allows."""
        from edgent.adapt.config_map import Candidates
        from edgent.runtime.agent import AgentOptions, EdgentAgent

        self.close()
        throttle = getattr(self.client, "slowdown", None)
        timing = f"EMULATED: {throttle.describe()}" if hasattr(throttle, "describe") else "wall clock"
        opts = AgentOptions(deadline_ms=self.client.timeout_s * 1e3, policy="static", probe_idle_s=None,
                            device_timing=timing)
        self.agent = EdgentAgent(self.client, Candidates([table], overhead), opts, records=self.records)
        self.agent.calibration = self.calibration

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None

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
        """One warm-up request (not recorded), then ``requests`` isolated requests of the plan, each served by
        the device agent (:meth:`use`) with this configuration, priced on the measured link.

        ``predicted`` is the offline prediction per stage (:func:`predicted_stages`). Each recorded request also
        carries the agent's prediction calibrated online (:class:`~edgent.plan.calibration.ComputeCalibration`)
        from the requests before it; the agent then learns from its measured compute."""
        from edgent.adapt.config_map import Configuration

        if self.agent is None:
            raise RuntimeError("Measurer.use(table, overhead) must come before run()")
        config = Configuration(exit, partition, codec)
        cols: dict[str, list[Any]] = {k: [] for k in ("total_ms", *(f"{s}_ms" for s in STAGES), "upload_bytes",
                                                       "download_bytes", "where", "correct", "predicted_ms",
                                                       "predicted_offline_ms", "predicted_device_ms",
                                                       "predicted_edge_ms", "device_raw_ms", "device_host_speed")}
        slowdown = getattr(getattr(self.client, "slowdown", None), "slowdown", None)  # DeviceThrottle's Slowdown
        start = self.witness.snapshot()
        for i in range(self.requests + 1):
            time.sleep(self.gap_s(crosses))
            img = self.images[self.k % len(self.images)]
            label = None if self.labels is None else int(self.labels[self.k % len(self.images)])
            self.k += 1
            if slowdown is not None:
                slowdown.last = None
            rec = self.agent.handle(img, label, config=config, link=self.link(True))
            steady = getattr(slowdown, "last", None)  # the device's call on the steady clock, if it computed
            if i == 0:
                continue  # the warm-up: first call of this configuration, not recorded here
            st = record_stages(rec, self.rtt_base_ms)
            fd, fe = rec["calibration_used"]["device"], rec["calibration_used"]["edge"]
            cols["predicted_ms"].append(rec["predicted_ms"]["calibrated"])
            cols["predicted_offline_ms"].append(rec["predicted_ms"]["offline"])
            cols["predicted_device_ms"].append(round(predicted["device"] * fd, 3))
            cols["predicted_edge_ms"].append(round(predicted["edge"] * fe, 3))
            for s in ("total", *STAGES):
                cols[f"{s}_ms"].append(round(st[s], 3))
            cols["upload_bytes"].append(int(rec["bytes"]["upload"] or 0))
            cols["download_bytes"].append(int(rec["bytes"]["download"] or 0))
            # what the device would have taken on the plain CPU clock: the same work, the host's passing speed
            cols["device_raw_ms"].append(None if steady is None else round(slowdown.factor * steady.work_cpu_ms, 3))
            cols["device_host_speed"].append(None if steady is None else round(steady.host_speed, 4))
            cols["where"].append(rec["where"])
            cols["correct"].append(rec["correct"])
        return {"exit": exit, "partition": partition, "codec": codec, "rate_bps": self.rate_bps,
                "rtt_base_ms": round(self.rtt_base_ms, 3), "burst_bytes": self.burst_bytes,
                "gap_s": round(self.gap_s(crosses), 4), "other_load_cpus": self.witness.other_cpus(start),
                "requests": cols}


# -- the experiments ----------------------------------------------------------------------------------------------

class PaperRun:
    """The three experiments for one variant (what is sent at point 0), sharing one :class:`Measurer`.

    The points are planned with the wire model ``overhead``, or with the paper's fluid formula when
    ``plan_fluid``; every measurement carries both predictions."""

    def __init__(self, name: str, table: LatencyTable, overhead: OverheadModel, measurer: Measurer,
                 plan_fluid: bool, console: Any) -> None:
        self.name, self.table, self.m, self.plan_fluid, self.console = name, table, measurer, plan_fluid, console
        self.overhead = overhead
        self.planner = Planner(table, overhead if not plan_fluid else PAPER_OVERHEAD)
        self.wire = Planner(table, overhead)
        self.fluid = Planner(table, PAPER_OVERHEAD)
        self.measurements: dict[str, dict[str, Any]] = {}
        self._cache: dict[tuple, str] = {}
        self.pixel_codec = VARIANTS[name][1]
        measurer.use(table, overhead)

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
            "measured_ms": latency_stats(total),
            "measured_stages_median_ms": {s: float(np.median(req[f"{s}_ms"])) for s in STAGES},
            "met_share": float(np.mean(total <= deadline_ms)),
            "met": bool(np.mean(total <= deadline_ms) >= MET_SHARE),
            "within_share": float(np.mean(within(total, req["predicted_ms"]))),
            "within_share_offline": float(np.mean(within(total, pred))),
            "within_share_fluid": float(np.mean(within(total, fluid_ms))),
            "fallbacks": int(sum(w == "fallback" for w in req["where"])),
            "measured_top1": top1(req["correct"]),
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
            p = self.planner.plan(self.m.link(not self.plan_fluid), deadline_ms)
            rows.append(self.point("a", p.exit, p.partition, deadline_ms, "edgent", p.feasible))
            self._say("a", rows[-1])
        return {"deadline_ms": deadline_ms, "rows": rows}

    def deadline_sweep(self, rate_kbit: float, deadlines_ms: Sequence[float]) -> dict[str, Any]:
        self.m.set_rate(rate_kbit * 1e3)
        rows = []
        for d in deadlines_ms:
            p = self.planner.plan(self.m.link(not self.plan_fluid), d)
            rows.append(self.point("b", p.exit, p.partition, d, "edgent", p.feasible))
            self._say("b", rows[-1])
        return {"bandwidth_kbit": rate_kbit, "rows": rows}

    def policies(self, rate_kbit: float, deadlines_ms: Sequence[float], oracle: bool) -> dict[str, Any]:
        self.m.set_rate(rate_kbit * 1e3)
        link = self.m.link(not self.plan_fluid)
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
