"""The demo's report folder: ``report.html``, ``timeline.png``, ``summary.png`` and ``report.json``."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgent.demo.options import MODEL, DemoContext, RunState
from edgent.demo.summary import METHODS_ORDER, SUMMARY_COLUMNS, fmt_row


def plot_summary(rows: list[dict[str, Any]], path: Path, deadline_ms: float) -> Path:
    """Bars: deadline met % and accuracy % per method (the measured row highlighted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["key"] for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 1.5), sharey=True)
    colors = ["tab:red" if r["mode"] == "measured" else "tab:gray" for r in rows]
    ax[0].barh(y, [100 * r["met_share"] for r in rows], color=colors)
    ax[0].set_xlabel(f"requests meeting the {deadline_ms:g} ms deadline (%)")
    ax[0].set_xlim(0, 100)
    ax[1].barh(y, [100 * r["card_accuracy"] for r in rows], color=colors, label="card accuracy of exits used")
    meas = [(i, 100 * r["measured_top1"]) for i, r in enumerate(rows) if r["measured_top1"] is not None]
    if meas:
        ax[1].plot([v for _, v in meas], [i for i, _ in meas], "k*", ms=10, label="measured top-1")
        ax[1].legend(loc="lower right", fontsize=8)
    accs = [100 * r["card_accuracy"] for r in rows]
    every = accs + [v for _, v in meas]
    ax[1].set_xlim(max(0.0, min(every) - 5), min(100.0, max(every) + 5))
    ax[1].set_xlabel("accuracy (%)")
    ax[0].set_yticks(y)
    ax[0].set_yticklabels(names, fontsize=8)
    ax[0].invert_yaxis()
    fig.suptitle("red: measured on the testbed; gray: simulated on the same trace and request times", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out: Path, ctx: DemoContext, st: RunState, rows: list[dict[str, Any]], sim: dict[str, Any]) -> Path:
    """``report.html`` + ``timeline.png`` + ``summary.png`` + ``report.json`` in ``out``."""
    opts, sc, trace, kind, notes = ctx.opts, ctx.scenario, ctx.trace, ctx.testbed_kind, ctx.notes
    from edgent.report.html import RunTimeline, plot_timeline, write_html_report

    tl = RunTimeline()
    for r in st.records:
        tl.time_s.append(r["time_s"])
        tl.true_bps.append(r["true_bps"])
        tl.measured_bps.append(r["last_sample_bps"])  # the latest burst-corrected sample the configurator saw
        tl.exit.append(r["plan"]["exit"])
        tl.partition.append(r["plan"]["partition"])
        tl.latency_ms.append(r["latency_ms"])
        tl.predicted_ms.append(r["predicted_ms"])
        tl.met.append(r["met"])
        tl.fallback.append(r["where"] == "fallback")
    tl.change_times_s = list(st.change_times_s)
    link = "namespace testbed, tc tbf" if kind == "netns" else "EMULATED link"
    timeline = plot_timeline(tl, opts.deadline_ms, out / "timeline.png",
                             f"edgent demo: {MODEL}, measured run ({link})")
    summary_png = plot_summary(rows, out / "summary.png", opts.deadline_ms)
    sim_real = sim["_real_choice_simulated_ms"]
    meas = np.array([r["latency_ms"] for r in st.records])
    within = np.abs(meas - sim_real) <= np.maximum(0.1 * sim_real, 5.0)
    extra_notes = [
        "Only the first row is measured: real co-inference of the slowed device with the edge server over the "
        "shaped link while the trace is replayed on it. The other rows are SIMULATED with the same latency "
        "tables (fitted latency models), the same trace and the same request times (edgent bench dynamic's "
        "simulation); the simulated methods see the trace's true samples once per second, the measured run only "
        "what its own traffic measures.",
        f"Measured latency of the configurations chosen vs the simulation's latency for them: "
        f"{100 * within.mean():.0f}% within +-10% (or 5 ms); median measured/simulated "
        f"{np.median(meas / np.maximum(sim_real, 1e-9)):.2f}.",
    ]
    if st.edge_exit_note:
        extra_notes.insert(0, st.edge_exit_note)
    if st.replay_note:
        extra_notes.insert(0, st.replay_note)
    if st.interrupted:
        extra_notes.insert(0, "INTERRUPTED run (Ctrl-C / SIGTERM): the figures cover only the requests that ran.")
    all_notes = list(dict.fromkeys(extra_notes + notes))
    data = {
        "model": MODEL, "options": asdict(opts), "testbed": {"kind": kind, "describe": ctx.testbed_description},
        "device": ctx.device_description, "inputs": ctx.input_source, "interrupted": st.interrupted,
        "trace": {"name": trace.name, "time_s": trace.time_s.tolist(), "rate_bps": trace.rate_bps.tolist(),
                  "end_s": trace.end_s},
        "accuracy": {"per_exit": sc.accuracies, "source": sc.accuracy_source},
        "map": {"training": sc.training, "build_s": sc.map_build_s,
                "filled_cells": {k: m.filled_cells for k, m in sc.maps.items()},
                "configs": [c.as_tuple() for c in sc.maps["bocpd"].configs]},
        "latency_table": {"exit_device_only_ms": list(sc.tables[0].fallback_device_ms().values()),
                          "input_bytes": sc.tables[0].exits[0].transfer_bytes[0]},
        "summary": rows,
        "change_times_s": st.change_times_s,
        "probes": st.probes,
        "measured_vs_simulated_within_10pct_share": float(within.mean()),
        "requests": st.records,
        "simulated_latency_ms": {m: sim[m]["latency_ms"].tolist() for m, _ in METHODS_ORDER},
    }
    return write_html_report(out, f"edgent demo: {MODEL}, deadline {opts.deadline_ms:g} ms", all_notes,
                             SUMMARY_COLUMNS, [fmt_row(r) for r in rows],
                             [("configuration, bandwidth and latency over time (measured run)", timeline),
                              ("summary: measured Edgent run vs simulated baselines", summary_png)], data)
