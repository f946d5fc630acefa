"""The demo's live view: bandwidth, detected changes, configuration and latency, refreshed per request."""

from __future__ import annotations

from typing import Any

from edgent.demo.options import MODEL, DemoOptions, RunState


def live_panel(st: RunState, opts: DemoOptions, trace: Any, now_s: float, cands: Any, testbed_kind: str) -> Any:
    """The rich renderable of the live view."""
    from rich.panel import Panel
    from rich.table import Table

    n = len(st.records)
    tab = Table.grid(padding=(0, 2))
    tab.add_column(style="bold")
    tab.add_column()
    true_bps = float(trace.rate_at(min(now_s, trace.end_s - 1e-6)))
    last = st.last
    est = st.last_sample_bps
    state = last.get("state_mean_bps")
    tab.add_row("time", f"{now_s:5.1f} / {opts.duration_s:g} s   requests {n}   link: {testbed_kind}")
    tab.add_row("bandwidth", f"true {true_bps / 1e6:6.3f} Mbit/s   measured "
                             f"{'-' if not est else f'{est / 1e6:6.3f}'} Mbit/s (last sample)   state "
                             f"{'-' if not state else f'{state / 1e6:6.3f}'} Mbit/s (BOCPD)")
    cps = ", ".join(f"{t:.1f}" for t in st.change_times_s[-6:])
    tab.add_row("changes detected", f"{len(st.change_times_s)}" + (f"  (at {cps} s)" if cps else ""))
    if last:
        cfg = last["plan"]
        n_units = int(cands.tables[0].exits[cfg["exit"] - 1].num_units)
        where = ("edge only" if cfg["partition"] == 0 else "device only" if cfg["partition"] >= n_units
                 else f"{cfg['partition']}/{n_units} units on device")
        tab.add_row("configuration", f"exit {cfg['exit']}, partition {cfg['partition']} ({where}), "
                                     f"codec {cfg['codec']}  [{last['source']}]")
        lat, dl = last["latency_ms"], opts.deadline_ms
        color = "green" if lat <= dl else "red"
        tab.add_row("latency", f"[{color}]{lat:7.1f} ms[/{color}] vs deadline {dl:g} ms "
                               f"(predicted {last['predicted_ms']:.0f} ms; {last['where']})")
        tab.add_row("deadline met", f"{100 * st.met / n:5.1f} %   fallbacks {st.fallbacks}")
        if st.labelled:
            tab.add_row("accuracy so far", f"{100 * st.correct / st.labelled:5.1f} % measured on "
                                           f"{st.labelled} test images (card accuracy of the exits used "
                                           f"{100 * st.card_acc_sum / n:.1f} %)")
        else:
            tab.add_row("accuracy so far", f"{100 * st.card_acc_sum / n:5.1f} % (model card, synthetic inputs)")
    return Panel(tab, title=f"edgent demo: {MODEL}, deadline {opts.deadline_ms:g} ms", expand=False)


class NoLive:
    def __enter__(self) -> "NoLive":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None
