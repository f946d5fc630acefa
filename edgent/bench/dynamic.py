"""``edgent bench dynamic``: Edgent's dynamic configurator against the baselines, request by request, on held-out
bandwidth traces (in simulation: latency tables + the traces).

Method (see ``docs/dynamic.md``):

- The trace files of ``--traces`` are split by file (interleaved by sorted name, so every transport mode is on
  both sides): the configuration maps are built on the training files only; every figure is measured on the others.
- Requests are issued at a fixed period along each held-out trace, the same times for every method. A request's
  latency comes from the latency table and the bandwidth the trace gives *during* its transfers (the rate integrated
  over time: :meth:`~edgent.adapt.config_map.Candidates.latency_on_trace`).
- Every method sees the same throughput samples, as a throughput monitor would report them (a sample once its
  interval has passed); none sees the future except the oracle.
- Methods: ``edgent-dynamic`` (BOCPD + map + hysteresis + static fallback), ``edgent-dynamic-ph`` (the same with a
  Page-Hinkley detector and its own map: the simple-detector comparison), ``edgent-static`` (the static planner on an
  EWMA of the samples), ``neurosurgeon`` (partitioning only, on the same EWMA), ``device-only``, ``edge-only``,
  ``oracle`` (per request, the most accurate configuration that meets the deadline on the true future bandwidth).

**Testbed hook.** Decisions depend only on the throughput samples, so each method's decisions for a trace are made
first (:func:`decide_trace`) and executed afterwards by a :class:`RequestExecutor`; :class:`SimulatedExecutor`
computes latencies from the table and the trace. A testbed executor (the runtime's shaped link replaying the trace)
implements the same one method and is passed to :func:`evaluate` instead.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

import numpy as np

from edgent.adapt.bocpd import Bocpd, BocpdConfig
from edgent.adapt.config_map import Candidates, ConfigurationMap, MapReward, StateGrid, build_config_map
from edgent.adapt.detectors import make_detector
from edgent.adapt.dynamic import DynamicConfigurator
from edgent.adapt.simulate import METHODS, TraceDecisions, evaluate, split_by_file
from edgent.adapt.traces import BandwidthTrace, load_trace_dir, synthetic_trace
from edgent.errors import ConfigError, EdgentError
from edgent.plan.sources import latency_tables



# -- detector comparison and step cost ---------------------------------------------------------------------------

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


# -- the plot ------------------------------------------------------------------------------------------------------

def plot_trace(dec: TraceDecisions, res_lat: dict[str, np.ndarray], cands: Candidates, deadline_ms: float,
               path: Path, title: str) -> Path:
    """Bandwidth with BOCPD's state and change points; chosen configuration; latency against the deadline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr, t = dec.trace, dec.times_s
    fig, ax = plt.subplots(4, 1, figsize=(11, 10), sharex=True, gridspec_kw={"height_ratios": [3, 2, 1.3, 3]})
    ax[0].step(tr.time_s, tr.rate_bps / 1e6, where="post", lw=0.8, color="0.4", label="trace bandwidth")
    if dec.state_mean_bps is not None:
        ax[0].plot(t, dec.state_mean_bps / 1e6, lw=1.2, color="C0", label="BOCPD state mean")
    for i, c in enumerate(dec.change_points_s):
        ax[0].axvline(c, color="C3", lw=0.6, alpha=0.6, label="detected change point" if i == 0 else None)
    ax[0].set_ylabel("Mbit/s")
    ax[0].legend(loc="upper right", fontsize=8)
    n_units = np.array([e.num_units for e in cands.tables[0].exits])
    for m, style, c in (("edgent-dynamic", "-", "C0"), ("oracle", ":", "C2"), ("edgent-static", "--", "C1")):
        ch = dec.choice[m]
        ax[1].step(t, cands.exit[ch], where="post", ls=style, lw=1, color=c, label=m)
        ax[2].step(t, cands.partition[ch] / n_units[cands.exit[ch] - 1], where="post", ls=style, lw=1, color=c)
    ax[1].set_ylabel("exit")
    ax[1].set_yticks(range(1, len(n_units) + 1))
    ax[1].legend(loc="lower right", fontsize=8)
    ax[2].set_ylabel("units on\ndevice (share)")
    ax[2].set_yticks([0, 0.5, 1])
    ax[2].set_yticklabels(["0 (edge)", "0.5", "1 (device)"], fontsize=7)
    for m, c in (("edgent-static", "C1"), ("oracle", "C2"), ("edgent-dynamic", "C0")):
        ax[3].plot(t, res_lat[m], lw=0.8, color=c, label=m)
    ax[3].axhline(deadline_ms, color="C3", ls="--", lw=1, label="deadline")
    ax[3].set_yscale("log")
    ax[3].set_ylabel("latency (ms)")
    ax[3].set_xlabel("time (s)")
    ax[3].legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- the command ---------------------------------------------------------------------------------------------------

def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    traces_dir = Path(args.traces)
    traces = load_trace_dir(traces_dir)
    if args.scale != 1.0:
        traces = [t.scaled(args.scale) for t in traces]
    if args.max_files:
        traces = sorted(traces, key=lambda t: t.name)[: args.max_files]
    train, test = split_by_file(traces, args.train_every)
    if not train or not test:
        raise ConfigError(f"{traces_dir} has too few trace files to split into training and held-out sets")
    accs, acc_source = _accuracies(args)
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    tables, spec = latency_tables(args.model, codecs, args.table_source, accs, args.device_slowdown)
    cands = Candidates(tables)
    deadline, period_s = float(args.deadline_ms), float(args.period_ms) / 1e3
    grid = StateGrid(mean_step=args.bin_width,
                     last_edges=tuple(float(v) for v in args.last_edges.split(",") if v.strip()))
    reward = MapReward(met_target=args.met_target, w_min=args.w_min)
    t0 = time.perf_counter()
    maps = {det: build_config_map(train, cands, deadline, lambda det=det: make_detector(det), grid, reward,
                                  period_s, args.rtt_ms, args.warmup_s, {"detector": det}, args.smooth_bins)
            for det in ("bocpd", "page-hinkley")}
    build_s = time.perf_counter() - t0
    summary, decisions, raw = evaluate(test, cands, maps, deadline, period_s, args.rtt_ms, args.warmup_s,
                                       hysteresis=args.hysteresis)
    name = args.name or f"dynamic-{traces_dir.name}"
    out_dir = Path(args.out_dir)
    map_path = maps["bocpd"].save(out_dir / f"{name}.map.json")
    table_paths = [t.save(out_dir / f"{name}.table-{t.codec}.json") for t in tables]
    # the plot: the held-out trace where the dynamic configurator switched most
    best = max(range(len(decisions)),
               key=lambda i: int(np.count_nonzero(np.diff(decisions[i].choice["edgent-dynamic"]))))
    lat = {m: raw[m].latency_ms[best] for m in METHODS}
    plot = plot_trace(decisions[best], lat, cands, deadline, out_dir / f"{name}.png",
                      f"{args.model} on {decisions[best].trace.name} (scale x{args.scale:g}), deadline {deadline:g} ms")
    testbed = None
    if args.testbed_seconds > 0:
        testbed = run_on_testbed(args, cands, decisions[best], {m: raw[m].latency_ms[best] for m in METHODS},
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
        "model": args.model,
        "traces": {"dir": str(traces_dir), "scale": args.scale, "scaled": args.scale != 1.0,
                   "train": [t.name for t in train], "test": [t.name for t in test],
                   "test_hours": sum(t.end_s for t in test) / 3600},
        "deadline_ms": deadline, "period_ms": args.period_ms, "rtt_ms": args.rtt_ms, "warmup_s": args.warmup_s,
        "codecs": codecs, "accuracy": {"per_exit": accs, "source": acc_source},
        "latency_table": {"source": spec.source, **spec.detail,
                          "exit_device_only_ms": [float(sum(e.device_unit_ms)) for e in tables[0].exits],
                          "exit_edge_only_compute_ms": [float(sum(e.edge_unit_ms)) for e in tables[0].exits],
                          "input_bytes": tables[0].exits[0].transfer_bytes[0],
                          "saved": [str(p) for p in table_paths]},
        "map": {"path": str(map_path), "filled_cells": {d: m.filled_cells for d, m in maps.items()},
                "distinct_configs": {d: len(m.configs) for d, m in maps.items()}, "build_s": build_s,
                "bin_width_log": args.bin_width, "last_edges": args.last_edges, "met_target": args.met_target,
                "w_min": args.w_min, "smooth_bins": args.smooth_bins,
                "deadline_weight": {d: m.info.get("deadline_weight") for d, m in maps.items()},
                "train_met_share_of_servable": {d: m.info.get("train_met_share_of_servable")
                                                for d, m in maps.items()},
                "hysteresis": args.hysteresis},
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


def run_on_testbed(args: argparse.Namespace, cands: Candidates, dec: TraceDecisions,
                   sim_latency: dict[str, np.ndarray], deadline_ms: float, raw_dir: Path) -> dict[str, Any]:
    """Execute the first ``--testbed-seconds`` of one held-out trace's decisions on the real testbed, method by
    method (the oracle stays simulated: it needs the future), and compare with the simulation request by
    request (:mod:`edgent.bench.dynamic_testbed`)."""
    import sys

    from edgent.bench.dynamic_testbed import TestbedExecutor, compare
    from edgent.jsonio import write_json_file

    t = dec.times_s
    n = int(np.searchsorted(t, t[0] + args.testbed_seconds, side="right"))
    times = t[:n]
    raw_dir.mkdir(parents=True, exist_ok=True)
    real: dict[str, np.ndarray] = {}
    t_wall = time.perf_counter()
    with TestbedExecutor(cands, deadline_ms, args.rtt_ms, emulate=True if args.emulate else None,
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


def _accuracies(args: argparse.Namespace) -> tuple[list[float], str]:
    from edgent.model.card import parse_accuracies, resolve_accuracies

    accs = resolve_accuracies(args.model, parse_accuracies(args.accuracies))
    return list(accs.values), accs.source


def _cmd(args: argparse.Namespace) -> int:
    from edgent.bench.record import write_result

    result = run_benchmark(args)
    name = args.name or f"dynamic-{Path(args.traces).name}"
    path = write_result(name, result, args.out_dir)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_table(result)
    import sys

    print(f"wrote {path} and {result['plot']}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"{result['model']} on {result['traces']['dir']} (x{result['traces']['scale']:g}), "
                      f"deadline {result['deadline_ms']:g} ms, held-out traces")
    tab.add_column("method", no_wrap=True)
    for col in ("met %", "met % where oracle meets", "accuracy %", "throughput rps", "decision us"):
        tab.add_column(col, justify="right")
    for m, s in result["methods"].items():
        w = s.get("met_share_where_oracle_meets")
        tab.add_row(m, f"{100 * s['deadline_met_share']:.2f}", "-" if w is None else f"{100 * w:.2f}",
                    f"{100 * s['mean_accuracy']:.2f}", f"{s['throughput_rps']:.1f}", f"{s['decision_us_mean']:.1f}")
    Console().print(tab)
    sc = result["step_cost"]
    m = sc.get("map", {})
    print(f"detection + lookup step (map hits, {100 * sc['map_hit_share']:.1f}% of steps): median "
          f"{m.get('median_us', float('nan')):.1f} us, p99 {m.get('p99_us', float('nan')):.1f} us")


def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("dynamic", help="dynamic configurator vs baselines on held-out bandwidth traces "
                                             "(simulation)")
    p.add_argument("--traces", required=True, help="folder of trace files (cooked text, Belgium JSON or Mahimahi)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every trace rate by this (default 1)")
    p.add_argument("--model", default="alexnet-cifar10", help="zoo model (default alexnet-cifar10)")
    p.add_argument("--deadline-ms", type=float, default=300.0, help="latency requirement (default 300)")
    p.add_argument("--period-ms", type=float, default=500.0, help="one request every this many ms (default 500)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time of the link (default 20)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="first request at this time of each trace")
    p.add_argument("--table-source", default="auto",
                   help="latency tables: auto|predictor|measure|PATH of a saved table (default auto)")
    p.add_argument("--device-slowdown", type=float, default=10.0,
                   help="with --table-source measure: device = this CPU's unit times x this (default 10)")
    p.add_argument("--accuracies", default="", help="per-exit top-1 a1,a2,... (default: the model card)")
    p.add_argument("--codecs", default="float32", help="codecs of the intermediate tensor, comma-separated")
    p.add_argument("--train-every", type=int, default=2, help="file i builds the map when i %% K == 0 (default 2)")
    p.add_argument("--max-files", type=int, default=0, help="use only the first N files (sorted), 0 = all")
    p.add_argument("--bin-width", type=float, default=0.1, help="map bin width of log-throughput (default 0.1)")
    p.add_argument("--last-edges", default="",
                   help="map cells also by the latest sample's offset from the state mean, cut at these log "
                        "offsets, e.g. -0.2,0.2 (default: none, the paper's (mean, spread) state)")
    p.add_argument("--met-target", type=float, default=0.995,
                   help="map reward: share of servable training requests that must meet the deadline (default "
                        "0.995); 1 = deadline strictly first")
    p.add_argument("--smooth-bins", type=int, default=1,
                   help="map: pool each state's training requests with those within K mean bins (default 1)")
    p.add_argument("--w-min", type=float, default=1.0,
                   help="map reward: lowest deadline weight W (default 1: a met deadline outweighs any accuracy "
                        "difference on one request; below 1 that order is no longer strict, for ablations)")
    p.add_argument("--hysteresis", type=float, default=0.5, help="bin widths a state may stray (default 0.5)")
    p.add_argument("--name", default="", help="result name (default dynamic-<traces folder>)")
    p.add_argument("--out-dir", default="benchmarks/results", help="where results, map and plot go")
    p.add_argument("--testbed-seconds", type=float, default=0.0,
                   help="also run the first S seconds of one held-out trace on the real testbed (shaped link, "
                        "edge server, slowed device), every method, and compare with the simulation (default 0: "
                        "simulation only)")
    p.add_argument("--emulate", action="store_true", help="with --testbed-seconds: the emulated link even as root")
    p.add_argument("--json", action="store_true", help="print the result JSON")
    p.set_defaults(func=_cmd)


__all__ = ["run_benchmark", "register"]
