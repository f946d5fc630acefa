"""One run of ``edgent bench dynamic``: maps on the training traces, every method on the held-out ones."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgent.adapt.config_map import Candidates, MapReward, StateGrid, build_config_map
from edgent.adapt.detectors import make_detector
from edgent.adapt.simulate import METHODS, TraceDecisions, evaluate, split_by_file
from edgent.adapt.traces import load_trace_dir
from edgent.bench.dynamic.measure import detector_quality, step_cost_us
from edgent.bench.dynamic.options import DynamicOptions
from edgent.bench.dynamic.plot import plot_trace
from edgent.errors import ConfigError
from edgent.model.card import resolve_accuracies
from edgent.plan.sources import latency_tables, with_codecs


def run_benchmark(opts: DynamicOptions) -> dict[str, Any]:
    """Build the maps on the training traces, evaluate every method on the held-out ones (and optionally on
    the real testbed), write the map, tables and plot next to the results; returns the result document."""
    traces_dir = Path(opts.traces)
    traces = load_trace_dir(traces_dir)
    if opts.scale != 1.0:
        traces = [t.scaled(opts.scale) for t in traces]
    if opts.max_files:
        traces = sorted(traces, key=lambda t: t.name)[: opts.max_files]
    train, test = split_by_file(traces, opts.train_every)
    if not train or not test:
        raise ConfigError(f"{traces_dir} has too few trace files to split into training and held-out sets")
    resolved = resolve_accuracies(opts.model, opts.accuracies)
    accs, acc_source = list(resolved.values), resolved.source
    codecs = list(opts.codecs)
    tables, spec = latency_tables(opts.model, codecs, opts.table_source, accs, opts.device_slowdown)
    if opts.codec_variants != "none":  # once, on the first table: the candidates then hold every codec once
        variants = opts.codec_variants if opts.codec_variants == "card" else opts.codec_variants.split(",")
        tables = [with_codecs(tables[0], variants), *tables[1:]]
    cands = Candidates(tables)
    deadline, period_s = float(opts.deadline_ms), float(opts.period_ms) / 1e3
    grid = StateGrid(mean_step=opts.bin_width, last_edges=tuple(opts.last_edges))
    reward = MapReward(met_target=opts.met_target, w_min=opts.w_min)
    t0 = time.perf_counter()
    maps = {det: build_config_map(train, cands, deadline, lambda det=det: make_detector(det), grid, reward,
                                  period_s, opts.rtt_ms, opts.warmup_s, {"detector": det}, opts.smooth_bins)
            for det in ("bocpd", "page-hinkley")}
    build_s = time.perf_counter() - t0
    summary, decisions, raw = evaluate(test, cands, maps, deadline, period_s, opts.rtt_ms, opts.warmup_s,
                                       hysteresis=opts.hysteresis)
    name = opts.result_name
    out_dir = Path(opts.common.out_dir)
    map_path = maps["bocpd"].save(out_dir / f"{name}.map.json")
    table_paths = [t.save(out_dir / f"{name}.table-{t.codec}.json") for t in tables]
    # the plot: the held-out trace where the dynamic configurator switched most
    best = max(range(len(decisions)),
               key=lambda i: int(np.count_nonzero(np.diff(decisions[i].choice["edgent-dynamic"]))))
    lat = {m: raw[m].latency_ms[best] for m in METHODS}
    plot = plot_trace(decisions[best], lat, cands, deadline, out_dir / f"{name}.png",
                      f"{opts.model} on {decisions[best].trace.name} (scale x{opts.scale:g}), deadline {deadline:g} ms")
    testbed = None
    if opts.testbed_seconds > 0:
        testbed = run_on_testbed(opts, cands, decisions[best], {m: raw[m].latency_ms[best] for m in METHODS},
                                 deadline, out_dir / f"{name}-testbed")
    o, dyn = summary["oracle"], summary["edgent-dynamic"]
    done = {
        "dynamic_met_where_oracle_meets": dyn["met_share_where_oracle_meets"],
        "target_met_where_oracle_meets": 0.99,
        "accuracy_gap_to_oracle_points": 100 * (o["mean_accuracy"] - dyn["mean_accuracy"]),
        "baselines_meeting_as_many_deadlines_with_higher_accuracy": [
            m for m, s in summary.items() if m not in ("oracle", "edgent-dynamic")
            and s["deadline_met_share"] >= dyn["deadline_met_share"] and s["mean_accuracy"] > dyn["mean_accuracy"]],
    }
    result = {
        "mode": "simulation",
        "model": opts.model,
        "traces": {"dir": str(traces_dir), "scale": opts.scale, "scaled": opts.scale != 1.0,
                   "train": [t.name for t in train], "test": [t.name for t in test],
                   "test_hours": sum(t.end_s for t in test) / 3600},
        "deadline_ms": deadline, "period_ms": opts.period_ms, "rtt_ms": opts.rtt_ms, "warmup_s": opts.warmup_s,
        "codecs": codecs, "codec_variants": opts.codec_variants, "candidate_codecs": list(cands.codecs),
        "accuracy": {"per_exit": accs, "source": acc_source},
        "latency_table": {"source": spec.source, **spec.detail,
                          "exit_device_only_ms": list(tables[0].fallback_device_ms().values()),
                          "exit_edge_only_compute_ms": [float(sum(e.edge_unit_ms)) for e in tables[0].exits],
                          "input_bytes": tables[0].exits[0].transfer_bytes[0],
                          "saved": [str(p) for p in table_paths]},
        "map": {"path": str(map_path), "filled_cells": {d: m.filled_cells for d, m in maps.items()},
                "distinct_configs": {d: len(m.configs) for d, m in maps.items()}, "build_s": build_s,
                "bin_width_log": opts.bin_width, "last_edges": ",".join(f"{v:g}" for v in opts.last_edges), "met_target": opts.met_target,
                "w_min": opts.w_min, "smooth_bins": opts.smooth_bins,
                "deadline_weight": {d: m.info.get("deadline_weight") for d, m in maps.items()},
                "train_met_share_of_servable": {d: m.info.get("train_met_share_of_servable")
                                                for d, m in maps.items()},
                "hysteresis": opts.hysteresis},
        "decision_sources": {m: _merge([d.sources.get(m, {}) for d in decisions])
                             for m in ("edgent-dynamic", "edgent-dynamic-ph")},
        "detections_per_min_on_test": {
            m: 60.0 * sum(d.detections.get(m, 0) for d in decisions) / sum(t.end_s for t in test)
            for m in ("edgent-dynamic", "edgent-dynamic-ph")},
        "methods": summary,
        "done_means": done,
        "detectors_on_synthetic": detector_quality(),
        "step_cost": step_cost_us(maps["bocpd"], cands, test),
        "plot": str(plot),
    }
    if testbed is not None:
        result["testbed"] = testbed
    return result


def run_on_testbed(opts: DynamicOptions, cands: Candidates, dec: TraceDecisions,
                   sim_latency: dict[str, np.ndarray], deadline_ms: float, raw_dir: Path) -> dict[str, Any]:
    """Execute the first ``--testbed-seconds`` of one held-out trace's decisions on the real testbed, method by
    method (the oracle stays simulated: it needs the future), and compare with the simulation request by
    request (:mod:`edgent.bench.dynamic.testbed`)."""
    import sys

    from edgent.bench.dynamic.testbed import TestbedExecutor, compare
    from edgent.jsonio import write_json_file


    t = dec.times_s
    n = int(np.searchsorted(t, t[0] + opts.testbed_seconds, side="right"))
    times = t[:n]
    raw_dir.mkdir(parents=True, exist_ok=True)
    real: dict[str, np.ndarray] = {}
    t_wall = time.perf_counter()
    with TestbedExecutor(cands, deadline_ms, opts.rtt_ms, emulate=True if opts.emulate else None,
                         raw_dir=raw_dir) as ex:
        for m in METHODS:
            if m == "oracle":
                continue
            print(f"testbed: {m} on {dec.trace.name}, {n} requests over {times[-1] - times[0]:.0f} s of trace",
                  file=sys.stderr, flush=True)
            real[m] = ex.run(dec.trace, times, dec.choice[m][:n], method=m)
        records = ex.records
        described = ex.describe
    write_json_file(raw_dir / "records.json", records)
    sim = {m: v[:n] for m, v in sim_latency.items()}
    return {"trace": dec.trace.name, "scale": dec.trace.scale, "from_s": float(times[0]), "to_s": float(times[-1]),
            "requests_per_method": n, "wall_s": round(time.perf_counter() - t_wall, 1), **described,
            "oracle": {"met_share_simulated": float(np.mean(sim["oracle"] <= deadline_ms))},
            "methods": compare(sim, real, deadline_ms, records), "records": str(raw_dir / "records.json")}


def _merge(ds: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out
