"""The plots of a run: (a) and (b) Edgent's choice per point with its predicted and measured latency by stage, (c)
the accuracy each policy and the oracle got at each requirement with the misses marked, and predicted against
measured latency per request for the paper's fluid formula and the wire model.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from edgent.bench.experiments import accuracy_bars
from edgent.bench.paper.summary import STAGES, within

#: the colour of each stage in the stacked latency bars
STAGE_COLORS = {"device": "tab:red", "link": "tab:green", "rtt": "tab:olive", "edge": "tab:purple",
                "overheads": "tab:gray"}


def _sweep_axes(axes: Any, rows: list[dict[str, Any]], xkey: str, xlabel: str, title: str, max_exit: int,
                deadline_ms: float | None) -> None:
    """One sweep in a column of two axes: above, the exit and partition chosen per point; below, the predicted
    (left bar) and measured (right bar) latency by stage, the measured spread and the requirement."""
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
