"""The live view of the device agent's requests, shared by ``edgent run`` and ``edgent demo``.

:class:`AgentLiveView` is fed every record the agent writes (:meth:`EdgentAgent.handle
<edgent.runtime.agent.EdgentAgent.handle>`) and shows, as a ``rich`` panel (:meth:`AgentLiveView.panel`, for a
``rich.live.Live``) or as one plain line (:meth:`AgentLiveView.line`, for ``--live off`` and logs): the bandwidth
estimate, the last sample and the change detector's state, the changes detected, the current configuration
(exit, partition, codec, and where its answer came from), the latency of the last request and the p95 of recent
ones against the deadline, the share of requests that met it, and the fallbacks. A caller adds rows of its own
(the demo: the trace's true rate, the accuracy so far) with ``extra_rows``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


@dataclass
class LiveCounts:
    """What the view has seen so far."""

    requests: int = 0
    met: int = 0
    fallbacks: int = 0
    fallbacks_met: int = 0
    offloaded: int = 0
    changes: int = 0
    change_times_s: list[float] = field(default_factory=list)
    last_sample_bps: float | None = None


class AgentLiveView:
    """The live view of one agent's requests (see the module docstring).

    Args:
        title: the panel's title.
        deadline_ms: the requirement the latencies are shown against.
        num_units: exit -> units of its sub-model (to say where a partition point cuts).
        window: how many recent requests the latency percentile covers.
        extra_rows: ``f(view) -> [(label, text), ...]`` rows the caller adds below the agent's own.
    """

    def __init__(self, title: str, deadline_ms: float, num_units: dict[int, int], window: int = 100,
                 extra_rows: Callable[["AgentLiveView"], list[tuple[str, str]]] | None = None) -> None:
        self.title = title
        self.deadline_ms = float(deadline_ms)
        self.num_units = dict(num_units)
        self.latencies_ms: deque[float] = deque(maxlen=int(window))
        self.extra_rows = extra_rows
        self.counts = LiveCounts()
        self.last: dict[str, Any] = {}
        self.t0 = time.monotonic()

    @classmethod
    def for_candidates(cls, title: str, deadline_ms: float, candidates: Any, **kw: Any) -> "AgentLiveView":
        """A view of the agent over ``candidates`` (:class:`edgent.adapt.config_map.Candidates`)."""
        return cls(title, deadline_ms, {e.exit: e.num_units for e in candidates.tables[0].exits}, **kw)

    def update(self, rec: dict[str, Any]) -> None:
        """Take one agent record."""
        c = self.counts
        c.requests += 1
        c.met += int(bool(rec["met"]))
        fell_back = rec["where"] == "fallback"
        c.fallbacks += int(fell_back)
        c.fallbacks_met += int(fell_back and bool(rec["met"]))
        c.offloaded += int(rec["where"] == "edge")
        probe = rec.get("probe") or {}
        if rec.get("change_detected") or probe.get("change"):
            c.changes += 1
            c.change_times_s.append(float(rec["time_s"]))
        for sample in (probe.get("sample_bps"), rec.get("sample_bps")):
            if sample:
                c.last_sample_bps = float(sample)
        self.latencies_ms.append(float(rec["total_ms"]))
        self.last = rec

    @property
    def p95_ms(self) -> float | None:
        return float(np.percentile(list(self.latencies_ms), 95)) if self.latencies_ms else None

    def where_cut(self, exit: int, partition: int) -> str:
        """Where a partition point cuts exit ``exit``'s sub-model, in words."""
        n = self.num_units.get(int(exit))
        if partition == 0:
            return "all on the edge"
        if n is not None and partition >= n:
            return "all on the device"
        return f"{partition}/{n} units on the device"

    def rows(self) -> list[tuple[str, str]]:
        """The view's rows as (label, text)."""
        c, r = self.counts, self.last
        mbit = lambda v: "-" if not v else f"{v / 1e6:.3f}"  # noqa: E731
        rows = [("requests", f"{c.requests}   running {time.monotonic() - self.t0:.0f} s")]
        if not r:
            return rows + (self.extra_rows(self) if self.extra_rows else [])
        rows.append(("bandwidth", f"estimate {mbit(r.get('estimate_after_bps') or r.get('estimate_bps'))} Mbit/s   "
                                  f"last sample {mbit(c.last_sample_bps)}   detector state "
                                  f"{mbit(r.get('bocpd_state_bps'))} Mbit/s   RTT {r.get('rtt_ms', 0):.0f} ms"))
        cps = ", ".join(f"{t:.1f}" for t in c.change_times_s[-5:])
        rows.append(("changes detected", f"{c.changes}" + (f"   (at {cps} s)" if cps else "")))
        from rich.markup import escape

        pl = r["plan"]
        rows.append(("configuration", f"exit {pl['exit']}, partition {pl['partition']} "
                                      f"({self.where_cut(pl['exit'], pl['partition'])}), codec {escape(pl['codec'])}"
                                      f"   {escape('[' + pl['source'] + ']')}   answered: {r['where']}"
                                      + (f" (exit {r['exit_used']})" if r["where"] == "fallback" else "")))
        color = "green" if r["met"] else "red"
        p95 = self.p95_ms
        rows.append(("latency", f"[{color}]last {r['total_ms']:.1f} ms[/{color}]   p95 {p95:.1f} ms (last "
                                f"{len(self.latencies_ms)})   predicted {r['predicted_ms']['calibrated']:.0f} ms   "
                                f"deadline {self.deadline_ms:g} ms"))
        rows.append(("deadline met", f"{100 * c.met / c.requests:.1f} %   fallbacks {c.fallbacks} "
                                     f"({c.fallbacks_met} met)   offloaded {c.offloaded}"))
        return rows + (self.extra_rows(self) if self.extra_rows else [])

    def panel(self) -> Any:
        """The rich renderable of the view (for ``rich.live.Live``)."""
        from rich.panel import Panel
        from rich.table import Table

        tab = Table.grid(padding=(0, 2))
        tab.add_column(style="bold")
        tab.add_column()
        for label, text in self.rows():
            tab.add_row(label, text)
        return Panel(tab, title=self.title, expand=False)

    def line(self) -> str:
        """One plain line of the last request (no markup)."""
        r, c = self.last, self.counts
        if not r:
            return "no request yet"
        pl = r["plan"]
        est = r.get("estimate_after_bps") or r.get("estimate_bps") or 0.0
        return (f"#{r['seq']:<5} est {est / 1e6:7.3f} Mbit/s  changes {c.changes}  exit {pl['exit']} part "
                f"{pl['partition']} {pl['codec']:<7} {r['where']:<8} {r['total_ms']:7.1f} ms (pred "
                f"{r['predicted_ms']['calibrated']:.0f}, p95 {self.p95_ms or 0:.0f}) "
                f"{'met' if r['met'] else 'MISSED'}  met {100 * c.met / c.requests:.1f} %  fallbacks {c.fallbacks}")


class NoLive:
    """Stands in for ``rich.live.Live`` when the view is off."""

    def __enter__(self) -> "NoLive":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None
