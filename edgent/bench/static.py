"""``edgent bench static``: the paper's three static experiments, predicted with the fitted latency models.

(a) bandwidth sweep 50 kbit/s - 2 Mbit/s at a 1000 ms requirement: the exit and partition Edgent picks and the
    predicted latency; (b) requirement sweep 100 - 1000 ms at 500 kbit/s; (c) accuracy of Edgent and every
    baseline for requirements 100 - 500 ms at 400 kbit/s, marking the ones that miss the requirement.

The device and edge latency models are the latency stage's fitted predictors (the emulated weak device of
:data:`edgent.profile.throttle.DEVICE` and the unthrottled edge on this machine); the ratio of their predicted
device-only and edge-only compute times for the full model is recorded. Each experiment is run for two sizes of what is sent at partition point 0:

- ``as_sent``: what edgent's runtime really sends, the uint8 pixels (3 x 32 x 32 = 3072 bytes);
- ``float32_input``: the normalised float32 input (12288 bytes), which matches the paper's edge-only times
  (2.317 s at 50 kbit/s is ~14 kB, 0.123 s at 1 Mbit/s ~15 kB including protocol overhead).

Results go to ``benchmarks/results/static.json`` and three PNG plots next to it.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgent.bench.experiments import (QUICK_BANDWIDTHS_KBIT, QUICK_DEADLINES_B_MS, QUICK_DEADLINES_C_MS,
                                      BANDWIDTHS_KBIT, DEADLINE_A_MS, DEADLINES_B_MS, DEADLINES_C_MS, RATE_B_KBIT,
                                      RATE_C_KBIT, accuracy_bars, compute_ratio, with_input_bytes)
from edgent.plan.link import Link
from edgent.plan.overhead import OverheadModel
from edgent.plan.planner import POLICIES, Plan, Planner
from edgent.plan.table import LatencyTable

def _row(p: Plan, table: LatencyTable) -> dict[str, Any]:
    n = table.exits[p.exit - 1].num_units
    b = p.breakdown
    return {"exit": p.exit, "partition": p.partition, "units": n,
            "placement": "edge only" if p.partition == 0 else "device only" if p.partition == n else "split",
            "accuracy": p.accuracy, "predicted_ms": p.predicted_ms, "feasible": p.feasible,
            "device_ms": b.device_ms, "transfer_ms": b.upload_ms + b.download_ms, "edge_ms": b.edge_ms,
            "other_ms": b.rtt_ms + b.serialization_ms + b.queue_ms, "reason": p.reason}


def _with_measured(row: dict[str, Any], p: Plan, link: Link, measured: Planner | None) -> dict[str, Any]:
    """Add the latency of the chosen configuration on the measured table (the paper's "actual")."""
    if measured is not None:
        row["measured_table_ms"] = measured.predict(link, p.exit, p.partition).total_ms
    return row


def sweep_bandwidth(planner: Planner, rates_kbit: Sequence[float], deadline_ms: float, rtt_ms: float,
                    measured: Planner | None = None) -> list[dict[str, Any]]:
    """Experiment (a): Edgent's choice at each uplink rate (downlink = uplink) for one requirement."""
    rows = []
    for r in rates_kbit:
        link = Link(r * 1e3, r * 1e3, rtt_ms)
        p = planner.plan(link, deadline_ms)
        rows.append(_with_measured({"bandwidth_kbit": r, **_row(p, planner.table)}, p, link, measured))
    return rows


def sweep_deadline(planner: Planner, rate_kbit: float, deadlines_ms: Sequence[float], rtt_ms: float,
                   measured: Planner | None = None) -> list[dict[str, Any]]:
    """Experiment (b): Edgent's choice at each requirement for one rate."""
    link = Link(rate_kbit * 1e3, rate_kbit * 1e3, rtt_ms)
    rows = []
    for d in deadlines_ms:
        p = planner.plan(link, d)
        rows.append(_with_measured({"deadline_ms": d, **_row(p, planner.table)}, p, link, measured))
    return rows


def compare_policies(planner: Planner, rate_kbit: float, deadlines_ms: Sequence[float], rtt_ms: float,
                     measured: Planner | None = None) -> list[dict[str, Any]]:
    """Experiment (c): every policy at each requirement; ``met`` says whether its plan meets it (by the
    predicted table). With a ``measured`` table, the oracle (Edgent on measured times) is added, and every row
    also says whether its configuration meets the requirement by the measured times (``met_measured``)."""
    link = Link(rate_kbit * 1e3, rate_kbit * 1e3, rtt_ms)
    rows = []
    for d in deadlines_ms:
        plans = [(policy, planner.plan(link, d, policy)) for policy in POLICIES]
        if measured is not None:
            plans.append(("oracle", replace(measured.plan(link, d), policy="oracle")))
        for policy, p in plans:
            r = _with_measured(_row(p, planner.table), p, link, measured)
            if measured is not None:
                r["met_measured"] = r["measured_table_ms"] <= d
                if policy == "oracle":
                    r["predicted_ms"] = r["measured_table_ms"]
                    r["feasible"] = p.feasible
            rows.append({"deadline_ms": d, "policy": policy, "met": r["feasible"], **r})
    return rows


def findings(a: list[dict[str, Any]], b: list[dict[str, Any]], c: list[dict[str, Any]]) -> dict[str, Any]:
    """The qualitative facts the paper reports, computed from the three experiments."""
    exits_a = [r["exit"] for r in a if r["feasible"]]
    exits_b = [r["exit"] for r in b if r["feasible"]]
    met: dict[str, list[float]] = {}
    for r in c:
        if r["met"]:
            met.setdefault(r["policy"], []).append(r["deadline_ms"])
    policies = list(dict.fromkeys(r["policy"] for r in c))
    return {
        "a_exit_non_decreasing_with_bandwidth": all(x <= y for x, y in zip(exits_a, exits_a[1:])),
        "a_lowest_feasible_bandwidth_kbit": next((r["bandwidth_kbit"] for r in a if r["feasible"]), None),
        "a_placements": sorted({r["placement"] for r in a}),
        "b_exit_non_decreasing_with_deadline": all(x <= y for x, y in zip(exits_b, exits_b[1:])),
        "b_lowest_feasible_deadline_ms": next((r["deadline_ms"] for r in b if r["feasible"]), None),
        "c_deadlines_met_by_policy": {p: met.get(p, []) for p in policies},
    }


def run_static(table: LatencyTable, *, rtt_ms: float = 0.0, overhead: OverheadModel | None = None,
               float32_input_bytes: int | None = None, measured: LatencyTable | None = None,
               quick: bool = False) -> dict[str, Any]:
    """All three experiments on ``table`` (as sent) and on its float32-input variant; with a ``measured``
    table (same model, measured unit times) also the oracle and each choice's measured-table latency."""
    first = table.exits[0].transfer_bytes[0]
    f32 = float32_input_bytes or 4 * first
    variants = {"as_sent": (table, measured),
                "float32_input": (with_input_bytes(table, f32, raw_input=False),
                                  with_input_bytes(measured, f32, raw_input=False) if measured is not None else None)}
    out: dict[str, Any] = {"model": table.model, "codec": table.codec, "rtt_ms": rtt_ms,
                           "overhead": {"fixed_ms_per_message": (overhead or OverheadModel()).fixed_ms_per_message,
                                        "per_byte_ms": (overhead or OverheadModel()).per_byte_ms},
                           "accuracy_per_exit": [e.accuracy for e in table.exits],
                           "units_per_exit": [e.num_units for e in table.exits],
                           "compute": compute_ratio(table), "variants": {}}
    if measured is not None:
        out["compute_measured"] = compute_ratio(measured)
    for name, (t, m) in variants.items():
        planner = Planner(t, overhead)
        mp = Planner(m, overhead) if m is not None else None
        a = sweep_bandwidth(planner, QUICK_BANDWIDTHS_KBIT if quick else BANDWIDTHS_KBIT, DEADLINE_A_MS, rtt_ms, mp)
        b = sweep_deadline(planner, RATE_B_KBIT, QUICK_DEADLINES_B_MS if quick else DEADLINES_B_MS, rtt_ms, mp)
        c = compare_policies(planner, RATE_C_KBIT, QUICK_DEADLINES_C_MS if quick else DEADLINES_C_MS, rtt_ms, mp)
        out["variants"][name] = {
            "input_bytes": t.exits[0].transfer_bytes[0],
            "a_bandwidth_sweep": {"deadline_ms": DEADLINE_A_MS, "rows": a},
            "b_deadline_sweep": {"bandwidth_kbit": RATE_B_KBIT, "rows": b},
            "c_policies": {"bandwidth_kbit": RATE_C_KBIT, "rows": c},
            "findings": findings(a, b, c),
        }
    return out


# ------------------------------------------------------------------ plots
def _choice_and_latency(axes, xs, rows, xlabel, title, max_exit, deadline=None, logx=False):
    import matplotlib.ticker as mticker

    ax_choice, ax_lat = axes
    ax_choice.plot(xs, [r["exit"] for r in rows], "o-", color="tab:blue", label="exit point")
    ax_choice.set_ylabel("exit point", color="tab:blue")
    ax_choice.yaxis.set_major_locator(mticker.MaxNLocator(integer=True))
    ax_choice.set_ylim(0.5, max_exit + 0.5)
    ax_p = ax_choice.twinx()
    ax_p.plot(xs, [r["partition"] for r in rows], "s--", color="tab:orange", label="partition point")
    ax_p.set_ylabel("partition point (units on device)", color="tab:orange")
    ax_p.set_ylim(-0.5, max(r["units"] for r in rows) + 0.5)
    ax_choice.set_title(title)
    idx = np.arange(len(xs))
    bottom = np.zeros(len(xs))
    for key, color in (("device_ms", "tab:red"), ("transfer_ms", "tab:green"), ("edge_ms", "tab:purple"),
                       ("other_ms", "tab:gray")):
        vals = np.array([r[key] for r in rows])
        ax_lat.bar(idx, vals, bottom=bottom, color=color, label=key[:-3])
        bottom += vals
    for i, r in enumerate(rows):
        if not r["feasible"]:
            ax_lat.text(i, bottom[i], "miss", ha="center", va="bottom", fontsize=7, color="black")
    if deadline is not None:
        ax_lat.axhline(deadline, color="black", ls=":", lw=1, label="requirement")
    else:
        ax_lat.plot(idx, xs, "k:", lw=1, label="requirement")
    ax_lat.set_xticks(idx, [f"{x:g}" for x in xs], rotation=60, fontsize=7)
    ax_lat.set_xlabel(xlabel)
    ax_lat.set_ylabel("predicted latency (ms)")
    ax_lat.legend(fontsize=7, loc="upper right")
    if logx:
        ax_choice.set_xscale("log")


def plot_static(result: dict[str, Any], out_dir: str | Path) -> list[Path]:
    """Write the three plots (PNG) of a :func:`run_static` result to ``out_dir``; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    variants = result["variants"]
    paths = []
    ratio = result["compute"]["device_to_edge_ratio"]

    for key, fname, xkey, xlabel, title, logx in (
        ("a_bandwidth_sweep", "static_bandwidth.png", "bandwidth_kbit", "bandwidth (kbit/s)",
         f"(a) requirement {DEADLINE_A_MS:g} ms", True),
        ("b_deadline_sweep", "static_deadline.png", "deadline_ms", "latency requirement (ms)",
         f"(b) bandwidth {RATE_B_KBIT:g} kbit/s", False),
    ):
        fig, axes = plt.subplots(2, len(variants), figsize=(6 * len(variants), 7), squeeze=False)
        for col, (vname, v) in enumerate(variants.items()):
            rows = v[key]["rows"]
            xs = [r[xkey] for r in rows]
            _choice_and_latency(axes[:, col], xs, rows, xlabel,
                                f"{title}, input {v['input_bytes']} B ({vname})", len(result["units_per_exit"]),
                                deadline=DEADLINE_A_MS if key == "a_bandwidth_sweep" else None, logx=logx)
        fig.suptitle(f"{result['model']}: Edgent's choice (predicted device/edge compute ratio {ratio:.0f}x)")
        fig.tight_layout()
        path = out / fname
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    fig, axes = plt.subplots(1, len(variants), figsize=(6.5 * len(variants), 4), squeeze=False)
    for col, (vname, v) in enumerate(variants.items()):
        ax = axes[0, col]
        accuracy_bars(ax, v["c_policies"]["rows"])
        ax.set_ylabel("accuracy of the chosen configuration")
        ax.set_ylim(0, 1)
        ax.set_title(f"(c) {RATE_C_KBIT:g} kbit/s, input {v['input_bytes']} B ({vname}); hatched/x = misses")
        ax.legend(fontsize=7, ncol=3, loc="upper left")
    fig.tight_layout()
    path = out / "static_accuracy.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


# ------------------------------------------------------------------ command
def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("static", help="the paper's static experiments, predicted, as JSON and PNG plots")
    p.add_argument("--model", default="alexnet-cifar10")
    p.add_argument("--device-profile", default=None, help="device latency model (default: the fitted one)")
    p.add_argument("--edge-profile", default=None, help="edge latency model (default: the fitted one)")
    p.add_argument("--accuracies", default=None, help="comma-separated top-1 per exit instead of the card")
    p.add_argument("--table", default=None, help="use a saved latency table instead of the models")
    p.add_argument("--measured-table", default=None,
                   help="a latency table of measured unit times (table_from_measurements): adds the oracle and "
                        "the measured latency of each choice")
    p.add_argument("--rtt", default="0ms", help="round-trip time (default 0ms, as in the paper's formula)")
    add_common_options(p, "two points per sweep instead of the paper's grid (a smoke run)")
    p.set_defaults(func=_main)


def _describe_predictor(role: str, path: str | None) -> dict[str, Any]:
    """How a role's latency model was obtained (its emulation: threads, CPU quota, slowdown), for the record."""
    from edgent.plan.sources import load_unit_predictor

    pred = load_unit_predictor(role, path)
    out: dict[str, Any] = {"kind": getattr(pred, "name", type(pred).__name__)}
    emulation = getattr(pred, "emulation", None)
    if emulation is not None and hasattr(emulation, "to_json"):
        out["emulation"] = emulation.to_json()
    if hasattr(pred, "quota_factor"):
        out["quota_factor"] = pred.quota_factor
    if hasattr(pred, "scale"):
        out["scale"] = pred.scale
    return out


def _main(args: argparse.Namespace) -> int:
    from edgent.bench.record import common_options, emit, write_result
    from edgent.model.card import parse_accuracies
    from edgent.plan.sources import table_for_model
    from edgent.plan.units import parse_duration_ms

    rtt = parse_duration_ms(args.rtt, what="--rtt")
    if args.table:
        table = LatencyTable.load(args.table)
        source = {"table": str(args.table)}
    else:
        table = table_for_model(args.model, device_profile=args.device_profile, edge_profile=args.edge_profile,
                                accuracies=parse_accuracies(args.accuracies))
        source = {"device_profile": args.device_profile or "default (edgent/latency/fitted/device.json)",
                  "edge_profile": args.edge_profile or "default (edgent/latency/fitted/edge.json)",
                  "accuracies": "--accuracies" if args.accuracies else "model card",
                  **{f"{role}_predictor": _describe_predictor(role, path)
                     for role, path in (("device", args.device_profile), ("edge", args.edge_profile))}}
    measured = LatencyTable.load(args.measured_table) if args.measured_table else None
    if measured is not None and [e.num_units for e in measured.exits] != [e.num_units for e in table.exits]:
        from edgent.errors import ConfigError

        raise ConfigError(f"--measured-table {args.measured_table} does not have the exits and units of the "
                          f"predicted table of {table.model!r}")
    common = common_options(args)
    result = run_static(table, rtt_ms=rtt, measured=measured, quick=common.quick)
    result["source"] = source
    result["table"] = table.to_json()
    name = "static-quick" if common.quick else "static"
    path = write_result(name, result, common.out_dir)
    plots = plot_static(result, common.out_dir)
    emit(result, path, common, _print_static)
    print(f"plots: {', '.join(str(p) for p in plots)}", file=sys.stderr if common.json else sys.stdout)
    return 0


def _print_static(result: dict[str, Any]) -> None:
    comp = result["compute"]
    print(f"{result['table']['model']}: device-only compute {comp['device_only_compute_ms']:.1f} ms, edge-only "
          f"{comp['edge_only_compute_ms']:.2f} ms (ratio {comp['device_to_edge_ratio']:.0f}x)")
    for vname, v in result["variants"].items():
        print(f"[{vname}, input {v['input_bytes']} B]")
        for r in v["a_bandwidth_sweep"]["rows"]:
            print(f"  (a) {r['bandwidth_kbit']:6g} kbit/s: exit {r['exit']} partition {r['partition']:2d}/"
                  f"{r['units']} {r['predicted_ms']:7.1f} ms {'' if r['feasible'] else 'MISS'}")
        for r in v["b_deadline_sweep"]["rows"]:
            print(f"  (b) {r['deadline_ms']:6g} ms: exit {r['exit']} partition {r['partition']:2d}/{r['units']} "
                  f"{r['predicted_ms']:7.1f} ms {'' if r['feasible'] else 'MISS'}")
        met = v["findings"]["c_deadlines_met_by_policy"]
        print("  (c) requirements met: " + "; ".join(f"{p}: {', '.join(f'{d:g}' for d in ds) or 'none'}"
                                                     for p, ds in met.items()))
