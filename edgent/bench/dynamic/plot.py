"""The plot of ``edgent bench dynamic``: one held-out trace with the detected states, the configurations chosen
and the latencies against the deadline."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgent.adapt.config_map import Candidates
from edgent.adapt.simulate import TraceDecisions


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
