"""``edgent bench planner``: how long one planning decision takes, and how that grows with model depth.

One decision = :meth:`edgent.plan.Planner.plan` for a new (bandwidth, deadline) request on a table built once per
model; for alexnet-cifar10 also with every codec of its model card as the third dimension (exit, partition,
codec). Timed one call at a time with ``time.perf_counter_ns`` over many requests drawn at random (log-uniform
50 kbit/s - 10 Mbit/s, deadlines 50 - 2000 ms); the median is the figure (target: <= 100 us for
alexnet-cifar10; the paper reports under 1 ms). Scaling: the same on the converted ``resnet18`` and
``mobilenet_v2`` (with exits), and on synthetic tables of growing size to show the cost is linear in the number of
(exit, partition) pairs.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from edgent.plan.link import Link
from edgent.plan.planner import POLICIES, Planner, plan
from edgent.plan.table import ExitCosts, LatencyTable

TARGET_US = 100.0


class FlopsProxyPredictor:
    """Unit time proportional to its FLOPs, used only when no fitted latency model exists: the cost of a
    decision does not depend on the values in the table, only on its size."""

    def __init__(self, ms_per_gflop: float) -> None:
        self.ms_per_gflop = ms_per_gflop

    def predict_unit_ms(self, unit: Any) -> float:
        return unit.flops / 1e9 * self.ms_per_gflop + 0.01


def model_table(name: str) -> tuple[LatencyTable, str]:
    """The predicted table of a zoo model: the fitted latency models when present, else a FLOPs proxy; per-exit
    accuracy from the card when present, else evenly spaced stand-ins (timings do not depend on either)."""
    from edgent.errors import EdgentError
    from edgent.model.zoo import load_model
    from edgent.model.card import card_accuracies
    from edgent.plan.sources import load_unit_predictor
    from edgent.plan.table import build_latency_table

    chain = load_model(name, pretrained=False)
    try:
        accs = card_accuracies(name)
        acc_source = "model card"
    except EdgentError:
        accs = list(np.linspace(0.5, 0.8, chain.num_exits))
        acc_source = "stand-in"
    try:
        device, edge = load_unit_predictor("device", None), load_unit_predictor("edge", None)
        source = "fitted latency models"
    except EdgentError:
        device, edge = FlopsProxyPredictor(200.0), FlopsProxyPredictor(1.5)
        source = "FLOPs proxy (no fitted latency models)"
    return build_latency_table(chain, accs, device, edge), f"{source}; accuracies: {acc_source}"


def synthetic_table(num_exits: int, units_per_exit: int, seed: int = 0) -> LatencyTable:
    """A random table with ``num_exits`` exits of ``units_per_exit`` units each (for the scaling curve)."""
    rng = np.random.default_rng(seed)
    exits = []
    for i in range(1, num_exits + 1):
        exits.append(ExitCosts(
            exit=i, accuracy=0.5 + 0.3 * i / num_exits,
            device_unit_ms=tuple(rng.uniform(0, 50, units_per_exit)),
            edge_unit_ms=tuple(rng.uniform(0, 0.5, units_per_exit)),
            transfer_bytes=(*rng.integers(1000, 300_000, units_per_exit).tolist(), 0), result_bytes=40))
    return LatencyTable("synthetic", tuple(exits))


def requests(n: int, seed: int = 1) -> list[tuple[Link, float]]:
    """``n`` random (link, deadline) requests."""
    rng = np.random.default_rng(seed)
    rates = np.exp(rng.uniform(np.log(50e3), np.log(10e6), n))
    deadlines = rng.uniform(50, 2000, n)
    return [(Link(float(r), float(r), 10.0), float(d)) for r, d in zip(rates, deadlines)]


def time_decisions(fn, reqs: list[tuple[Link, float]], repeats: int) -> dict[str, float]:
    """Time ``fn(link, deadline)`` one call at a time; median and tail in microseconds."""
    for link, deadline in reqs[:200]:  # warm up
        fn(link, deadline)
    samples = np.empty(repeats)
    clock = time.perf_counter_ns
    for k in range(repeats):
        link, deadline = reqs[k % len(reqs)]
        start = clock()
        fn(link, deadline)
        samples[k] = clock() - start
    us = samples / 1e3
    return {"median_us": float(np.median(us)), "min_us": float(us.min()), "p90_us": float(np.percentile(us, 90)),
            "p99_us": float(np.percentile(us, 99)), "calls": repeats}


def codec_row(table: LatencyTable, reqs: list[tuple[Link, float]], repeats: int) -> dict[str, Any] | None:
    """The decision time on ``table`` with every codec of the model card as a third dimension
    (:func:`edgent.plan.sources.with_codecs`); None when the card has no codec accuracies."""
    from edgent.errors import EdgentError
    from edgent.plan.sources import with_codecs

    try:
        tc = with_codecs(table, "card")
    except EdgentError:
        return None
    if not tc.variants:
        return None
    planner = Planner(tc)
    return {"codecs": list(tc.codecs), "triples": tc.num_triples, "edgent": time_decisions(planner.plan, reqs, repeats)}


def run(repeats: int = 20000, models: tuple[str, ...] = ("alexnet-cifar10", "resnet18", "mobilenet_v2"),
        synthetic_sizes: tuple[int, ...] = (10, 30, 100, 300, 1000, 3000, 10000)) -> dict[str, Any]:
    """Run the whole benchmark and return its result dictionary."""
    reqs = requests(1000)
    result: dict[str, Any] = {"target_us": TARGET_US, "repeats": repeats, "models": [], "synthetic": []}
    for name in models:
        table, source = model_table(name)
        start = time.perf_counter()
        planner = Planner(table)
        build_us = (time.perf_counter() - start) * 1e6
        row: dict[str, Any] = {"model": name, "table": source, "exits": len(table.exits),
                               "units_per_exit": [e.num_units for e in table.exits], "pairs": table.num_pairs,
                               "planner_build_us": build_us,
                               "edgent": time_decisions(planner.plan, reqs, repeats)}
        row["policies"] = {p: time_decisions(lambda link, d, p=p: planner.plan(link, d, p), reqs, repeats // 4)
                           for p in POLICIES if p != "edgent"}
        row["function_form"] = time_decisions(lambda link, d: plan(table, link, d), reqs, repeats // 4)
        if name == "alexnet-cifar10":
            result["alexnet_median_us"] = row["edgent"]["median_us"]
            result["meets_target"] = row["edgent"]["median_us"] <= TARGET_US
            row["with_codecs"] = codec_row(table, reqs, repeats)
            if row["with_codecs"] is not None:
                result["alexnet_codecs_median_us"] = row["with_codecs"]["edgent"]["median_us"]
                result["meets_target_with_codecs"] = result["alexnet_codecs_median_us"] <= TARGET_US
        result["models"].append(row)
    for units in synthetic_sizes:
        table = synthetic_table(5, units)
        planner = Planner(table)
        result["synthetic"].append({"exits": 5, "units_per_exit": units, "pairs": table.num_pairs,
                                    **time_decisions(planner.plan, reqs, max(500, repeats // 10))})
    pairs = np.array([r["pairs"] for r in result["synthetic"]], float)
    med = np.array([r["median_us"] for r in result["synthetic"]], float)
    slope, intercept = np.polyfit(pairs, med, 1)
    result["synthetic_fit"] = {"us_per_pair": float(slope), "fixed_us": float(intercept),
                               "note": "least-squares line through the medians: cost = fixed + us_per_pair x pairs"}
    return result


def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("planner", help="time one planning decision (target <= 100 us for alexnet-cifar10)")
    p.add_argument("--repeats", type=int, default=20000, help="decisions timed per model (default 20000)")
    p.add_argument("--models", default="alexnet-cifar10,resnet18,mobilenet_v2",
                   help="comma-separated zoo models to time")
    add_common_options(p, "2000 decisions per model instead of --repeats (a smoke run)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edgent.bench.record import common_options, emit, write_result

    common = common_options(args)
    result = run(min(args.repeats, 2000) if common.quick else args.repeats, tuple(m for m in args.models.split(",") if m))
    path = write_result("planner-quick" if common.quick else "planner", result, common.out_dir)
    emit(result, path, common, _print_result)
    return 0


def _print_result(result: dict) -> None:
    for row in result["models"]:
        e = row["edgent"]
        print(f"{row['model']:>16}: {row['pairs']:4d} pairs, median {e['median_us']:.1f} us, "
              f"p99 {e['p99_us']:.1f} us  ({row['table']})")
    fit = result["synthetic_fit"]
    print(f"synthetic: {fit['fixed_us']:.1f} us + {fit['us_per_pair'] * 1000:.2f} ns per pair")
    if result.get("alexnet_codecs_median_us") is not None:
        row = next(r for r in result["models"] if r["model"] == "alexnet-cifar10")["with_codecs"]
        print(f"alexnet-cifar10 with {len(row['codecs'])} codecs ({row['triples']} triples): median "
              f"{result['alexnet_codecs_median_us']:.1f} us, p99 {row['edgent']['p99_us']:.1f} us")
    if "meets_target" in result:
        print(f"alexnet-cifar10: {result['alexnet_median_us']:.1f} us "
              f"({'meets' if result['meets_target'] else 'MISSES'} the {TARGET_US:.0f} us target)")
    return 0
