"""The paper's three static experiments, defined once for ``edgent bench static`` (predicted) and ``edgent bench
paper`` (measured on the testbed).

- (a) bandwidth sweep at a fixed latency requirement: the exit and partition Edgent picks at each rate;
- (b) requirement sweep at a fixed rate;
- (c) Edgent and every baseline policy at a fixed rate for a range of requirements.

A shared definitions module, not a benchmark (it has no ``register``): the benchmarks import it, never each
other. It also holds what both benchmarks do to a latency table and how both draw experiment (c).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from edgent.plan.table import LatencyTable

#: (a): the uplink (= downlink) rates swept, kbit/s, at the requirement :data:`DEADLINE_A_MS`
BANDWIDTHS_KBIT: tuple[float, ...] = (50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000, 1250, 1500, 2000)
DEADLINE_A_MS = 1000.0
#: (b): the requirements swept, ms, at the rate :data:`RATE_B_KBIT`
RATE_B_KBIT = 500.0
DEADLINES_B_MS: tuple[float, ...] = tuple(float(d) for d in range(100, 1001, 100))
#: (c): the requirements, ms, at which every policy is compared, at the rate :data:`RATE_C_KBIT`
RATE_C_KBIT = 400.0
DEADLINES_C_MS: tuple[float, ...] = tuple(float(d) for d in range(100, 501, 100))
#: a quick (smoke-test) run: two points per experiment
QUICK_BANDWIDTHS_KBIT: tuple[float, ...] = (75.0, 1000.0)
QUICK_DEADLINES_B_MS: tuple[float, ...] = (100.0, 1000.0)
QUICK_DEADLINES_C_MS: tuple[float, ...] = (100.0, 300.0)


def with_input_bytes(table: LatencyTable, input_bytes: int, raw_input: bool = True) -> LatencyTable:
    """The same table with ``input_bytes`` sent at partition point 0 of every exit: the raw input (preprocessed
    on the edge) or, with ``raw_input=False``, the model's input (preprocessed on the device)."""
    return replace(table, raw_input=raw_input,
                   exits=tuple(replace(e, transfer_bytes=(int(input_bytes), *e.transfer_bytes[1:]))
                               for e in table.exits))


def compute_ratio(table: LatencyTable) -> dict[str, float]:
    """Predicted compute of the full model all on the device vs all on the edge, as the planner prices them
    (with the input's preprocessing)."""
    from edgent.plan.planner import Planner

    pl = Planner(table)
    main = table.exits[-1]
    j_edge = int(np.flatnonzero((pl.pair_exit == main.exit) & (pl.pair_point == 0))[0])
    device, edge = table.device_call_ms(main.exit), float(pl.edge_ms[j_edge])
    return {"device_only_compute_ms": device, "edge_only_compute_ms": edge,
            "device_to_edge_ratio": device / edge if edge > 0 else float("inf")}


def accuracy_bars(ax: Any, rows: list[dict[str, Any]], floor: float = 0.0) -> None:
    """Experiment (c) on ``ax``: per latency requirement, one bar per policy at the accuracy of the exit it used
    (bars start at ``floor``); a missed requirement is hatched and marked x."""
    deadlines = sorted({r["deadline_ms"] for r in rows})
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    width = 0.8 / len(policies)
    for k, policy in enumerate(policies):
        for i, d in enumerate(deadlines):
            r = next(r for r in rows if r["policy"] == policy and r["deadline_ms"] == d)
            x = i + (k - (len(policies) - 1) / 2) * width
            style = ({"color": f"C{k}"} if r["met"]
                     else {"color": "white", "edgecolor": f"C{k}", "hatch": "//"})
            ax.bar(x, r["accuracy"] - floor, width, bottom=floor, label=policy if i == 0 else None, **style)
            if not r["met"]:
                ax.text(x, floor + 0.005, "x", ha="center", fontsize=9, color=f"C{k}", fontweight="bold")
    ax.set_xticks(range(len(deadlines)), [f"{d:g}" for d in deadlines])
    ax.set_xlabel("latency requirement (ms)")


__all__ = ["BANDWIDTHS_KBIT", "DEADLINE_A_MS", "DEADLINES_B_MS", "DEADLINES_C_MS", "QUICK_BANDWIDTHS_KBIT",
           "QUICK_DEADLINES_B_MS", "QUICK_DEADLINES_C_MS", "RATE_B_KBIT", "RATE_C_KBIT", "accuracy_bars",
           "compute_ratio", "with_input_bytes"]
