"""The plot of ``edgent bench fleet``: per fleet size, every method's share of deadlines met, accuracy, edge
throughput and p95 latency; with a capacity test, each edge's answers per second in a closed loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_fleet(result: dict[str, Any], path: Path) -> Path:
    """Four panels against N (devices), one line per method, and a fifth with the capacity test's bars when the
    run has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = result["results"]
    cap = result.get("capacity")
    panels = [("met_share", "share of deadlines met"), ("accuracy", "accuracy (CIFAR-10 labels)"),
              ("edge_throughput_per_s", "edge throughput (requests/s)"), ("p95_ms", "p95 latency (ms)")] if res else []
    count = len(panels) + (1 if cap else 0)
    fig, ax = plt.subplots(1, count, figsize=(4.3 * count, 4), squeeze=False)
    ax = ax[0]
    if res:
        ns = sorted(int(n) for n in res)
        methods = list(res[str(ns[0])])
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
    if cap:
        a = ax[-1]
        keys = ("one_by_one", "batching")
        values = [cap.get(f"{k}_per_s") or 0.0 for k in keys]
        a.bar(["one by one", "batching"], values, color=["tab:orange", "tab:green"])
        for i, v in enumerate(values):
            a.text(i, v, f"{v:.0f}", ha="center", va="bottom", fontsize=9)
        ratio = cap.get("ratio")
        a.set_title(f"edge capacity, {cap['clients']} devices in a closed loop"
                    + (f" ({ratio:.2f}x)" if ratio else ""), fontsize=10)
        a.set_ylabel(f"answers/s (mean of {len(cap['rounds'])} rounds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
