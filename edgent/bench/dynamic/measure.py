"""What ``edgent bench dynamic`` measures beyond the simulation: the change point detectors on synthetic traces
with known change points, and the cost of one detection-and-lookup step."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from edgent.adapt.bocpd import Bocpd, BocpdConfig
from edgent.adapt.config_map import Candidates, ConfigurationMap
from edgent.adapt.detectors import make_detector
from edgent.adapt.dynamic import DynamicConfigurator
from edgent.adapt.traces import BandwidthTrace, synthetic_trace


def detector_quality(n_traces: int = 30, seed: int = 0, tolerance: int = 10) -> dict[str, Any]:
    """BOCPD vs Page-Hinkley on synthetic traces with known change points: recall (a detection within
    ``tolerance`` samples after a true change), mean detection delay (samples), false alarms per 1000 samples."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    stats = {n: {"hits": 0, "delays": [], "false": 0, "samples": 0, "changes": 0} for n in ("bocpd", "page-hinkley")}
    for i in range(n_traces):
        n_seg = int(rng.integers(3, 8))
        log_means = np.cumsum(rng.choice([-1, 1], n_seg) * rng.uniform(0.4, 1.2, n_seg))
        syn = synthetic_trace(np.exp(log_means) * 1e6, [int(v) for v in rng.integers(30, 120, n_seg)],
                              [float(v) for v in rng.uniform(0.05, 0.3, n_seg)], seed=seed + i)
        truth = np.asarray(syn.change_point_samples)
        for name in stats:
            det = make_detector(name)
            found = []
            for j, r in enumerate(syn.trace.rate_bps):
                if det.update(float(r)):
                    found.append(j)  # index of the sample that revealed it
            s = stats[name]
            s["samples"] += len(syn.trace)
            s["changes"] += truth.size
            used = set()
            for c in truth:
                hits = [f for f in found if c <= f <= c + tolerance and f not in used]
                if hits:
                    s["hits"] += 1
                    s["delays"].append(hits[0] - c)
                    used.add(hits[0])
            s["false"] += len(found) - len(used)
    for name, s in stats.items():
        out[name] = {"recall": s["hits"] / s["changes"],
                     "mean_delay_samples": float(np.mean(s["delays"])) if s["delays"] else None,
                     "false_alarms_per_1000_samples": 1000.0 * s["false"] / s["samples"],
                     "changes": s["changes"], "samples": s["samples"]}
    out["setup"] = {"traces": n_traces, "tolerance_samples": tolerance, "segments": "3-7 of 30-120 samples",
                    "log_mean_steps": "+-0.4..1.2", "log_std": "0.05..0.3"}
    return out


def step_cost_us(config_map: ConfigurationMap, cands: Candidates, traces: Sequence[BandwidthTrace],
                 max_steps: int = 20000) -> dict[str, Any]:
    """Time (microseconds) of one detection-and-lookup step: feed one throughput sample to BOCPD, read the state,
    find its cell (with hysteresis) and look up the map, over the samples of ``traces`` (held-out ones), in order.
    Steps the map answered and steps that fell back to the static planner are reported apart."""
    rates = np.concatenate([t.rate_bps for t in traces])[:max_steps]
    cfgr = DynamicConfigurator(config_map, cands, Bocpd(BocpdConfig()))
    ts = np.empty(rates.size)
    hit = np.zeros(rates.size, dtype=bool)
    for i, r in enumerate(rates):
        t = time.perf_counter_ns()
        cfgr.observe(float(r))
        d = cfgr.decide()
        ts[i] = (time.perf_counter_ns() - t) / 1e3
        hit[i] = d.source == "map"
    out: dict[str, Any] = {"steps": int(rates.size), "max_run": BocpdConfig().max_run,
                           "map_hit_share": float(hit.mean())}
    for name, sel in (("map", hit), ("fallback", ~hit)):
        if sel.any():
            v = ts[sel]
            out[name] = {"median_us": float(np.median(v)), "mean_us": float(v.mean()),
                         "p99_us": float(np.percentile(v, 99)), "steps": int(sel.sum())}
    # the detection update alone
    det = Bocpd(BocpdConfig())
    t = time.perf_counter_ns()
    for r in rates:
        det.update(float(r))
    out["bocpd_update_mean_us"] = (time.perf_counter_ns() - t) / 1e3 / max(rates.size, 1)
    return out
