"""The plot of ``edgent bench fleet``: per fleet size, every method's share of deadlines met, accuracy, edge
throughput and p95 latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_fleet(result: dict[str, Any], path: Path) -> Path:
    """Four panels against N (devices), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = result["results"]
    ns = sorted(int(n) for n in res)
    methods = list(res[str(ns[0])])
    fig, ax = plt.subplots(1, 4, figsize=(17, 4))
    panels = [("met_share", "share of deadlines met"), ("accuracy", "accuracy (CIFAR-10 labels)"),
              ("edge_throughput_per_s", "edge throughput (requests/s)"), ("p95_ms", "p95 latency (ms)")]
    for a, (key, label) in zip(ax, panels):
        for m in methods:
            ys = [res[str(n)][m].get(key) for n in ns]
            a.plot(ns, [float("nan") if y is None else y for y in ys], marker="o", label=m)
        a.set_xscale("log", base=2)
        a.set_xticks(ns)
        a.set_xticklabels([str(n) for n in ns])
        a.set_xlabel("devices")
        a.set_title(label, fontsize=10)
    ax[3].axhline(result["options"]["deadline_ms"], color="0.5", ls=":", lw=1)
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
