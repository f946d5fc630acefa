"""The demo's measured run: the trace is replayed on the bed's link while the Edgent device agent
(:class:`edgent.runtime.agent.EdgentAgent`, the code behind ``edgent run``) serves one request every period.

The demo adds no decision, codec or sample logic of its own: the agent estimates the bandwidth (the bed's
estimator corrects the shaper's burst), detects changes, reads the configuration map, co-infers, falls back and
writes the per-request records. This module only feeds it the request images on the period's schedule, turns
each agent record into the report's row (with the trace's true rate at that time) and refreshes the live view.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from edgent.demo.live import demo_rows, demo_title
from edgent.demo.options import DemoContext, RunState
from edgent.runtime.liveview import AgentLiveView, NoLive


@dataclass
class DemoSession:
    """The live objects of one measured run: the bed (link, device, edge, client), the agent on the bed's client,
    the replay steps and the request inputs."""

    ctx: DemoContext
    bed: Any
    agent: Any
    steps: list
    images: np.ndarray
    labels: np.ndarray | None
    accuracies: list[float]
    console: Any


def _inputs(s: DemoSession) -> Iterator[tuple[np.ndarray, int | None]]:
    """The request images, round and round, with their labels (None for synthetic inputs)."""
    for k in itertools.count():
        i = k % len(s.images)
        yield s.images[i], None if s.labels is None else int(s.labels[i])


def demo_record(s: DemoSession, st: RunState, rec: dict[str, Any], offset_s: float) -> dict[str, Any]:
    """The report's row for one agent record; ``offset_s`` moves the agent's clock to the replay's
    (``time_s`` is then seconds since the replay started)."""
    t_req = rec["time_s"] + offset_s
    probe = rec.get("probe") or {}
    for sample in (probe.get("sample_bps"), rec["sample_bps"]):
        if sample:
            st.last_sample_bps = sample
    if rec["change_detected"] or probe.get("change"):
        st.change_times_s.append(t_req)
    exit_used = int(rec["exit_used"])
    plan = rec["plan"]
    # the configuration's accuracy (exit and codec) when it ran as planned, the exit's own on the device
    card = (float(s.ctx.scenario.candidates.accuracy[int(plan["candidate"])]) if rec["where"] == "edge"
            else float(s.accuracies[exit_used - 1]))
    met = bool(rec["met"])
    st.met += met
    st.fallbacks += rec["where"] == "fallback"
    st.card_acc_sum += card
    if rec["label"] is not None:
        st.labelled += 1
        st.correct += int(bool(rec["correct"]))
    meas = rec["measured_ms"]
    return {
        "seq": rec["seq"], "time_s": round(t_req, 4), "true_bps": float(s.ctx.trace.rate_at(max(t_req, 0.0))),
        "estimate_bps": rec["estimate_bps"], "sample_bps": rec["sample_bps"], "sample_kind": rec["sample_kind"],
        "probe": rec["probe"], "last_sample_bps": st.last_sample_bps,
        "plan": {"exit": plan["exit"], "partition": plan["partition"], "codec": plan["codec"]},
        "source": plan["source"], "candidate": plan["candidate"],
        "exit_used": exit_used, "where": rec["where"], "fallback_reason": rec["fallback_reason"],
        "no_exit_could_meet": rec["no_exit_could_meet"],
        "latency_ms": rec["total_ms"], "device_ms": meas["device"], "network_ms": meas["network"],
        "edge_ms": meas["edge_total"],
        "predicted_ms": rec["predicted_ms"]["calibrated"], "predicted_offline_ms": rec["predicted_ms"]["offline"],
        "met": met, "label": rec["label"], "predicted_class": rec["prediction"]["class"],
        "correct": rec["correct"], "card_accuracy": card, "state_mean_bps": rec.get("bocpd_state_bps"),
    }


def run_loop(s: DemoSession, st: RunState) -> None:
    """Warm both sides up, start the trace replay and let the agent serve one request per period until the
    duration has passed (at least one request, however slow the link)."""
    from rich.live import Live

    opts, console, kind = s.ctx.opts, s.console, s.bed.kind
    cands = s.ctx.scenario.candidates
    live_on = console.is_terminal if opts.live is None else opts.live
    last_print = [-1e9]
    view = AgentLiveView.for_candidates(demo_title(opts), opts.deadline_ms, cands,
                                        extra_rows=demo_rows(st, opts, s.ctx.trace, kind))

    with Live(view.panel(), console=console, auto_refresh=False, transient=False) if live_on else NoLive() as live:
        s.bed.warm_up(s.images[0])  # not recorded; then the replay and the clock start
        replayer = s.bed.testbed.replay(s.steps)
        st.t0 = time.monotonic()
        offset_s = s.agent.t0 - time.perf_counter()  # agent clock -> seconds since the replay started

        def on_record(rec: dict[str, Any]) -> None:
            row = demo_record(s, st, rec, offset_s)
            st.records.append(row)
            st.last = row
            st.probes = s.agent.stats.probes
            code = s.bed.edge_exited()
            if st.edge_exit_note is None and code is not None:
                st.edge_exit_note = (f"WARNING: the edge server exited (code {code}) at {row['time_s']:.1f} s; "
                                     "from then on the device falls back on itself (see edge.log)")
                console.print(f"[red]{st.edge_exit_note}[/red]")
            view.update(rec)
            now = time.monotonic() - st.t0
            if live_on:
                live.update(view.panel(), refresh=True)
            elif now - last_print[0] >= 5.0:
                last_print[0] = now
                console.print(f"t={now:5.1f}s  true {row['true_bps'] / 1e6:.3f} Mbit/s  {view.line()}", markup=False,
                              highlight=False)

        # the demo's requests are camera frames: one that could not start on time is taken when the device is
        # free, and its time counts from then
        s.agent.run(_inputs(s), on_record, rate_per_s=1e3 / opts.period_ms, duration_s=s.ctx.duration_s,
                    queue_late=False)
        elapsed = time.monotonic() - st.t0
        due = sum(1 for step in s.steps if step.time_s < elapsed - 0.5)
        if len(replayer.applied) < due:
            st.replay_note = (f"WARNING: the trace replay stopped after {len(replayer.applied)} of {due} rate "
                              "changes (a tc command failed); the link kept its last rate")
            console.print(f"[red]{st.replay_note}[/red]")
    if live_on:
        console.print()
