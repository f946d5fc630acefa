"""The demo's measured run: one request every period while the trace is replayed on the link, each planned by
Edgent's dynamic configurator and co-inferred by the slowed device with the real edge server.

Every answer's throughput sample, with the shaper's burst taken out (:func:`edgent.runtime.bandwidth.
corrected_sample_bps`), feeds the change point detector; a request the edge did not answer in time gives an
upper bound on the rate (:func:`edgent.runtime.bandwidth.timeout_bound_bps`), so an outage is seen even while
every request falls back. When no traffic has crossed the link for a while (device-only plans), a small probe
keeps the samples coming.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgent.demo.live import NoLive, live_panel
from edgent.demo.options import DemoContext, RunState
from edgent.errors import EdgentError
from edgent.runtime.bandwidth import corrected_sample_bps, timeout_bound_bps

#: bytes of the probe sent after an idle spell (small: it must not cost a request its deadline)
PROBE_BYTES = 4096
#: seconds without traffic after which a probe is sent
PROBE_AFTER_IDLE_S = 1.0
#: the longest a probe may take (on a link too slow to carry it in time it gives no sample)
PROBE_TIMEOUT_S = 2.0


class PlanHook:
    """The dynamic configurator behind :class:`~edgent.runtime.session.DeviceRuntime`'s hook: it remembers its
    decision, sends the configuration's codec as the latency table priced it (raw uint8 pixels at point 0), and
    attaches the table's prediction at the latest corrected sample."""

    def __init__(self, conf: Any, cands: Any, rtt_ms: float) -> None:
        self.conf, self.cands, self.rtt_ms = conf, cands, rtt_ms
        self.last: Any = None
        self.last_index = -1
        self.last_predicted_ms = math.nan
        self.rate_bps: float | None = None  # the latest burst-corrected sample (what the prediction uses)

    def __call__(self, bandwidth_bps: float | None, rtt_ms: float | None, edge_load: Any) -> Any:
        from edgent.adapt.dynamic import edge_queue_ms
        from edgent.plan.link import Link
        from edgent.plan.planner import Plan

        d = self.conf.decide(bandwidth_bps, self.rtt_ms, edge_queue_ms(edge_load))
        self.last = d
        k = self.cands.index(d.config)
        self.last_index = k
        rate = self.rate_bps or (d.state.mean_rate_bps if d.state is not None else bandwidth_bps or 1e6)
        pred = float(self.cands.latency_ms(Link(rate, rate, self.rtt_ms))[k])
        self.last_predicted_ms = pred
        exit, partition, _ = d.config.as_tuple()
        return Plan.fixed(exit, partition, wire_codec(d.config), predicted_ms=pred, policy="edgent-dynamic")


def wire_codec(cfg: Any) -> str:
    """The codec sent for a configuration: exactly the one it was priced with (``uint8`` pixels at point 0 of
    a raw-input table, a JPEG quality, a tensor codec, the learned bottleneck)."""
    return cfg.codec


@dataclass
class DemoSession:
    """The live objects of one measured run: the bed (link, device, edge, client), the runtime with its plan
    hook, the configurator, the replay steps and the request inputs."""

    ctx: DemoContext
    bed: Any
    runtime: Any
    conf: Any
    hook: PlanHook
    steps: list
    images: np.ndarray
    labels: np.ndarray | None
    accuracies: list[float]
    console: Any


def _observe(s: DemoSession, st: RunState, rate: float | None) -> None:
    if rate:
        st.last_sample_bps = s.hook.rate_bps = rate
        if s.conf.observe(rate):
            st.change_times_s.append(time.monotonic() - st.t0)


def _probe(s: DemoSession, st: RunState, timeout_s: float | None = None) -> float | None:
    """One small probe; its burst-corrected rate (None when it said nothing)."""
    kw = {} if timeout_s is None else {"timeout_s": timeout_s}
    sample = s.bed.client.probe(PROBE_BYTES, **kw)
    st.probes += 1
    return None if sample is None else corrected_sample_bps(sample.size_bytes, 0, sample.rate_bps,
                                                            s.bed.kind == "netns")


def _request(s: DemoSession, st: RunState, k: int) -> dict[str, Any]:
    """Send request ``k``, feed its sample to the detector, and return its record."""
    opts, trace, accs = s.ctx.opts, s.ctx.trace, s.accuracies
    cands = s.ctx.scenario.candidates
    t_req = time.monotonic() - st.t0
    i = k % len(s.images)
    label = None if s.labels is None else int(s.labels[i])
    res = s.runtime.infer(s.images[i], label=label)
    rate = corrected_sample_bps(res.upload_bytes, res.download_bytes, res.bandwidth_sample_bps,
                                s.bed.kind == "netns")
    bound = False
    k_c = s.hook.last_index
    if rate is None and res.where == "fallback" and cands.crosses[k_c]:
        rate = timeout_bound_bps(float(cands.tx_bytes[k_c]), res.total_ms, res.device_ms,
                                 getattr(res, "encode_ms", 0.0))
        bound = True
    _observe(s, st, rate)
    d = s.hook.last
    met = bool(res.total_ms <= opts.deadline_ms)
    st.met += met
    st.fallbacks += res.where == "fallback"
    # the configuration's accuracy (exit and codec) when it ran as planned, the exit's own on the device
    card_acc = float(cands.accuracy[k_c]) if res.where == "edge" else accs[res.exit - 1]
    st.card_acc_sum += card_acc
    if label is not None:
        st.labelled += 1
        st.correct += int(res.classes[0] == label)
    return {
        "time_s": round(t_req, 4), "true_bps": float(trace.rate_at(t_req)),
        "estimate_bps": s.bed.client.estimator.rate_bps, "raw_sample_bps": res.bandwidth_sample_bps,
        "sample_bps": rate, "sample_is_timeout_bound": bound,
        "last_sample_bps": st.last_sample_bps,
        "plan": {"exit": d.config.exit, "partition": d.config.partition, "codec": wire_codec(d.config)},
        "source": d.source, "candidate": s.hook.last_index,
        "exit_used": res.exit, "where": res.where, "fallback_reason": res.fallback_reason,
        "latency_ms": round(res.total_ms, 3), "device_ms": round(res.device_ms, 3),
        "network_ms": None if res.network_ms is None else round(res.network_ms, 3),
        "edge_ms": (res.server_timings_ms or {}).get("server_ms"),
        "predicted_ms": round(s.hook.last_predicted_ms, 3), "met": met,
        "label": label, "predicted_class": int(res.classes[0]),
        "correct": None if label is None else bool(res.classes[0] == label),
        "card_accuracy": card_acc,
        "state_mean_bps": None if d.state is None else d.state.mean_rate_bps,
    }


def run_loop(s: DemoSession, st: RunState) -> None:
    """Replay the trace on the link and send one request every period until the duration has passed."""
    from rich.live import Live

    opts, console, kind = s.ctx.opts, s.console, s.bed.kind
    cands = s.ctx.scenario.candidates
    period_s = opts.period_ms / 1e3
    live_on = console.is_terminal if opts.live is None else opts.live
    last_print = -1e9

    def panel(now_s: float) -> Any:
        return live_panel(st, opts, s.ctx.trace, now_s, cands, kind)

    with Live(panel(0.0), console=console, auto_refresh=False, transient=False) if live_on else NoLive() as live:
        s.bed.warm_up(s.images[0])  # not recorded; then the replay and the clock start
        replayer = s.bed.testbed.replay(s.steps)
        st.t0 = time.monotonic()
        # a first throughput sample so that the configurator starts from a measurement
        try:
            rate = _probe(s, st, timeout_s=PROBE_TIMEOUT_S)
        except EdgentError:  # a link too slow to carry the probe in time: the configurator starts from the trace
            rate = None
        s.conf.observe(rate if rate else float(s.ctx.trace.rate_bps[0]))  # (a sample is needed to start)
        st.last_sample_bps = s.hook.rate_bps = rate
        k = 0
        while k == 0 or time.monotonic() - st.t0 < s.ctx.duration_s:  # at least one request, however slow
            if s.bed.client.estimator.idle_for_s() > PROBE_AFTER_IDLE_S:
                try:
                    _observe(s, st, _probe(s, st, timeout_s=PROBE_TIMEOUT_S))
                except EdgentError:
                    pass
            rec = _request(s, st, k)
            st.records.append(rec)
            st.last = rec
            k += 1
            code = s.bed.edge_exited()
            if st.edge_exit_note is None and code is not None:
                st.edge_exit_note = (f"WARNING: the edge server exited (code {code}) at {rec['time_s']:.1f} s; "
                                     "from then on the device falls back on itself (see edge.log)")
                console.print(f"[red]{st.edge_exit_note}[/red]")
            now = time.monotonic() - st.t0
            if live_on:
                live.update(panel(now), refresh=True)
            elif now - last_print >= 5.0:
                last_print = now
                console.print(f"t={now:5.1f}s  true {rec['true_bps'] / 1e6:.3f} Mbit/s  measured "
                              f"{(st.last_sample_bps or 0) / 1e6:.3f}  changes {len(st.change_times_s)}  exit "
                              f"{rec['plan']['exit']} part {rec['plan']['partition']} {rec['plan']['codec']}  "
                              f"{rec['latency_ms']:.0f} ms "
                              f"({'met' if rec['met'] else 'MISSED'})  met {100 * st.met / len(st.records):.0f}%")
            wait = rec["time_s"] + period_s - (time.monotonic() - st.t0)
            if wait > 0:
                time.sleep(wait)
        elapsed = time.monotonic() - st.t0
        due = sum(1 for step in s.steps if step.time_s < elapsed - 0.5)
        if len(replayer.applied) < due:
            st.replay_note = (f"WARNING: the trace replay stopped after {len(replayer.applied)} of {due} rate "
                              "changes (a tc command failed); the link kept its last rate")
            console.print(f"[red]{st.replay_note}[/red]")
    if live_on:
        console.print()
