"""A run's report: PNG plots over time and a self-contained HTML page that shows them with the summary table."""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence


@dataclass
class RunTimeline:
    """Per-request series of one run, all the same length (one entry per request)."""

    time_s: list[float] = field(default_factory=list)
    true_bps: list[float] = field(default_factory=list)
    measured_bps: list[float | None] = field(default_factory=list)
    exit: list[int] = field(default_factory=list)
    partition: list[int] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    predicted_ms: list[float | None] = field(default_factory=list)
    met: list[bool] = field(default_factory=list)
    fallback: list[bool] = field(default_factory=list)
    change_times_s: list[float] = field(default_factory=list)


def plot_timeline(tl: RunTimeline, deadline_ms: float, path: Path, title: str) -> Path:
    """Plot bandwidth (true and measured) with detected changes, the configuration chosen, and latency against
    the deadline, stacked over one time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    ax = axes[0]
    ax.step(tl.time_s, [b / 1e6 for b in tl.true_bps], where="post", label="true (shaped) rate", color="0.4")
    meas = [(t, b / 1e6) for t, b in zip(tl.time_s, tl.measured_bps) if b]
    if meas:
        ax.plot(*zip(*meas), ".", ms=3, label="measured from inference traffic", color="tab:blue")
    for i, t in enumerate(tl.change_times_s):
        ax.axvline(t, color="tab:red", lw=0.8, ls="--", label="detected change" if i == 0 else None)
    ax.set_ylabel("uplink Mbit/s")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    ax.step(tl.time_s, tl.exit, where="post", label="exit", color="tab:green")
    ax.step(tl.time_s, tl.partition, where="post", label="partition point", color="tab:purple")
    ax.set_ylabel("configuration")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    colors = ["tab:blue" if m else "tab:red" for m in tl.met]
    ax.scatter(tl.time_s, tl.latency_ms, c=colors, s=6, label="measured latency (red: missed)")
    pred = [(t, p) for t, p in zip(tl.time_s, tl.predicted_ms) if p is not None]
    if pred:
        ax.plot(*zip(*pred), lw=0.8, color="0.5", label="predicted")
    ax.axhline(deadline_ms, color="k", ls=":", label=f"deadline {deadline_ms:g} ms")
    ax.set_ylabel("latency ms")
    ax.set_xlabel("time s")
    ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_html_report(
    out_dir: Path,
    title: str,
    notes: Sequence[str],
    summary_columns: Sequence[str],
    summary_rows: Sequence[Sequence[Any]],
    images: Sequence[tuple[str, Path]],
    data: dict[str, Any],
) -> Path:
    """Write ``report.html`` (and ``report.json`` with ``data``) into ``out_dir``; images are linked by file
    name, so the folder can be moved as a whole."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in summary_rows
    )
    head = "".join(f"<th>{html.escape(c)}</th>" for c in summary_columns)
    figs = "\n".join(
        f'<figure><img src="{html.escape(p.name)}" alt="{html.escape(cap)}"><figcaption>{html.escape(cap)}'
        "</figcaption></figure>" for cap, p in images
    )
    note_items = "\n".join(f"<li>{html.escape(n)}</li>" for n in notes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<ul>{note_items}</ul>
<h2>Summary</h2>
<table><thead><tr>{head}</tr></thead><tbody>
{rows}
</tbody></table>
<h2>Over time</h2>
{figs}
</body></html>
"""
    path = out_dir / "report.html"
    path.write_text(page)
    (out_dir / "report.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path
