"""Edgent and its baselines on bandwidth traces, request by request, in simulation.

Requests are issued at a fixed period along a trace, the same times for every method. Every method sees the same
throughput samples as a throughput monitor would report them (a sample once its interval has passed); none sees
the future except the oracle. Decisions depend only on those samples, so each method's decisions for a trace are
made first (:func:`decide_trace`) and executed afterwards by a :class:`RequestExecutor`: the
:class:`SimulatedExecutor` computes each latency from the latency tables and the bandwidth the trace gives *during*
the request's transfers (:meth:`~edgent.adapt.config_map.Candidates.latency_on_trace`); a testbed executor (the
runtime over a shaped link replaying the trace) implements the same one method.

Methods: ``edgent-dynamic`` (BOCPD + map + hysteresis + static fallback), ``edgent-dynamic-ph`` (the same with a
Page-Hinkley detector and its own map), ``edgent-static`` (the static planner on an EWMA of the samples),
``neurosurgeon`` (partitioning only, on the same EWMA), ``device-only``, ``edge-only``, ``oracle`` (per request,
the most accurate configuration that meets the deadline on the true future bandwidth).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from edgent.adapt.config_map import Candidates, ConfigurationMap, replay_detector, request_times
from edgent.adapt.detectors import make_detector
from edgent.adapt.dynamic import DynamicConfigurator, EwmaEstimator
from edgent.adapt.traces import BandwidthTrace
from edgent.errors import ConfigError

METHODS = ("edgent-dynamic", "edgent-dynamic-ph", "edgent-static", "neurosurgeon", "device-only", "edge-only",
           "oracle")


@dataclass
class TraceDecisions:
    """What each method chose for each request of one trace, and how long the choice took."""

    trace: BandwidthTrace
    times_s: np.ndarray
    choice: dict[str, np.ndarray] = field(default_factory=dict)  # method -> candidate index per request
    decision_us: dict[str, np.ndarray] = field(default_factory=dict)
    change_points_s: list[float] = field(default_factory=list)
    state_mean_bps: np.ndarray | None = None
    sources: dict[str, dict[str, int]] = field(default_factory=dict)
    detections: dict[str, int] = field(default_factory=dict)  # change points each dynamic method's detector saw


def decide_trace(trace: BandwidthTrace, times_s: np.ndarray, cands: Candidates, deadline_ms: float,
                 maps: dict[str, ConfigurationMap], rtt_ms: float, ewma_alpha: float = 0.3,
                 hysteresis: float = 0.5, true_latency_ms: np.ndarray | None = None) -> TraceDecisions:
    """Every method's decisions along one trace (the oracle's needs ``true_latency_ms``, shape (K, C))."""
    out = TraceDecisions(trace, times_s)
    ends = trace.edges_s[1:]
    upto = np.searchsorted(ends, times_s, side="right")
    rates = trace.rate_bps
    k_n = times_s.size

    def run(name: str, feed: Callable[[float], Any], decide: Callable[[], int]) -> None:
        idx = np.empty(k_n, dtype=np.int64)
        us = np.empty(k_n)
        fed = 0
        for k, n in enumerate(upto):
            t = time.perf_counter_ns()
            while fed < n:
                feed(float(rates[fed]))
                fed += 1
            idx[k] = decide()
            us[k] = (time.perf_counter_ns() - t) / 1e3
        out.choice[name], out.decision_us[name] = idx, us

    for name, det in (("edgent-dynamic", "bocpd"), ("edgent-dynamic-ph", "page-hinkley")):
        cfgr = DynamicConfigurator(maps[det], cands, make_detector(det), hysteresis=hysteresis)
        srcs: dict[str, int] = {}
        means: list[float] = []

        def decide(cfgr: DynamicConfigurator = cfgr, srcs: dict[str, int] = srcs, means: list[float] = means) -> int:
            d = cfgr.decide(None, rtt_ms)
            srcs[d.source] = srcs.get(d.source, 0) + 1
            means.append(d.state.mean_rate_bps if d.state is not None else math.nan)
            return cands.index(d.config)

        run(name, cfgr.observe, decide)
        out.sources[name] = srcs
        out.detections[name] = cfgr.changes
        if name == "edgent-dynamic":
            out.state_mean_bps = np.asarray(means)
    # change points BOCPD detects along the trace (for the plot)
    _, _, _, _, cps = replay_detector(trace, make_detector("bocpd"), np.array([trace.end_s]))
    out.change_points_s = [float(trace.time_s[min(c, len(trace) - 1)]) for c in cps]

    for name, policy in (("edgent-static", "edgent"), ("neurosurgeon", "neurosurgeon")):
        est = EwmaEstimator(ewma_alpha)
        run(name, est.update, lambda est=est, policy=policy: cands.plan_static(est.rate_bps, deadline_ms, rtt_ms,
                                                                               policy=policy))
    dev = cands.plan_static(1e6, deadline_ms, rtt_ms, policy="device")
    edge = cands.plan_static(1e6, deadline_ms, rtt_ms, policy="edge")
    out.choice["device-only"] = np.full(k_n, dev)
    out.choice["edge-only"] = np.full(k_n, edge)
    out.decision_us["device-only"] = out.decision_us["edge-only"] = np.zeros(k_n)
    if true_latency_ms is not None:
        t0 = time.perf_counter_ns()
        out.choice["oracle"] = np.array([cands.best(row, deadline_ms) for row in true_latency_ms])
        out.decision_us["oracle"] = np.full(k_n, (time.perf_counter_ns() - t0) / 1e3 / max(k_n, 1))
    return out


class RequestExecutor(Protocol):
    """Runs one method's requests along a trace and returns their latencies (ms). The simulation computes them;
    a testbed executor replays the trace on a shaped link and measures them."""

    def run(self, trace: BandwidthTrace, times_s: np.ndarray, choice: np.ndarray) -> np.ndarray: ...


class SimulatedExecutor:
    """Latencies from the latency table and the trace (:meth:`Candidates.latency_on_trace`), memoised per trace."""

    def __init__(self, cands: Candidates, rtt_ms: float) -> None:
        self.cands = cands
        self.rtt_ms = rtt_ms
        self._cache: dict[int, np.ndarray] = {}

    def matrix(self, trace: BandwidthTrace, times_s: np.ndarray) -> np.ndarray:
        key = id(trace)
        if key not in self._cache:
            self._cache = {key: self.cands.latency_on_trace(trace, times_s, self.rtt_ms)}
        return self._cache[key]

    def run(self, trace: BandwidthTrace, times_s: np.ndarray, choice: np.ndarray) -> np.ndarray:
        return self.matrix(trace, times_s)[np.arange(times_s.size), choice]


@dataclass
class MethodResult:
    latency_ms: list[np.ndarray] = field(default_factory=list)
    accuracy: list[np.ndarray] = field(default_factory=list)
    decision_us: list[np.ndarray] = field(default_factory=list)
    switches: int = 0


def summarize(res: dict[str, MethodResult], deadline_ms: float, duration_s: float) -> dict[str, Any]:
    """Per method: deadline share (all requests, and where the oracle meets it), accuracy, throughput, decision
    time, configuration switches per minute."""
    oracle_met = np.concatenate(res["oracle"].latency_ms) <= deadline_ms if "oracle" in res else None
    out: dict[str, Any] = {}
    for name, r in res.items():
        lat = np.concatenate(r.latency_ms)
        acc = np.concatenate(r.accuracy)
        us = np.concatenate(r.decision_us)
        met = lat <= deadline_ms
        d = {
            "requests": int(lat.size),
            "deadline_met_share": float(met.mean()),
            "mean_accuracy": float(acc.mean()),
            "mean_accuracy_of_met": float(acc[met].mean()) if met.any() else None,
            "mean_latency_ms": float(lat.mean()),
            "p95_latency_ms": float(np.percentile(lat, 95)),
            "throughput_rps": float(1000.0 / lat.mean()),
            "decision_us_mean": float(us.mean()),
            "decision_us_p99": float(np.percentile(us, 99)),
            "switches_per_min": float(r.switches / (duration_s / 60.0)),
        }
        if oracle_met is not None:
            d["met_share_where_oracle_meets"] = float(met[oracle_met].mean()) if oracle_met.any() else None
        out[name] = d
    return out


def evaluate(test: Sequence[BandwidthTrace], cands: Candidates, maps: dict[str, ConfigurationMap],
             deadline_ms: float, period_s: float, rtt_ms: float, warmup_s: float,
             executor: RequestExecutor | None = None, hysteresis: float = 0.5,
             ) -> tuple[dict[str, Any], list[TraceDecisions], dict[str, MethodResult]]:
    """Decide and execute every method on every held-out trace; return the summary, the decisions and the raw
    per-request results."""
    sim = SimulatedExecutor(cands, rtt_ms)
    execu = executor or sim
    res = {m: MethodResult() for m in METHODS}
    decisions = []
    total_s = 0.0
    for tr in test:
        times = request_times(tr, period_s, min(warmup_s, tr.end_s / 2))
        if times.size == 0:
            continue
        true_lat = sim.matrix(tr, times)
        dec = decide_trace(tr, times, cands, deadline_ms, maps, rtt_ms, hysteresis=hysteresis,
                           true_latency_ms=true_lat)
        decisions.append(dec)
        total_s += times.size * period_s
        for m in METHODS:
            ch = dec.choice[m]
            r = res[m]
            r.latency_ms.append(execu.run(tr, times, ch) if m != "oracle" else sim.run(tr, times, ch))
            r.accuracy.append(cands.accuracy[ch])
            r.decision_us.append(dec.decision_us[m])
            r.switches += int(np.count_nonzero(np.diff(ch)))
    return summarize(res, deadline_ms, total_s), decisions, res


def split_by_file(traces: Sequence[BandwidthTrace], every: int = 2) -> tuple[list[BandwidthTrace],
                                                                               list[BandwidthTrace]]:
    """Interleaved split by sorted file name: file ``i`` trains the map when ``i % every == 0``, else it is
    held out. The two sets never share a file."""
    if every < 2:
        raise ConfigError(f"--train-every must be >= 2 (1 would leave nothing held out), got {every}")
    ordered = sorted(traces, key=lambda t: t.name)
    return ([t for i, t in enumerate(ordered) if i % every == 0], [t for i, t in enumerate(ordered) if i % every])
