"""The demo's summary: the baselines simulated on the same trace and request times as the measured run, one row
per method, and the table printed at the end."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgent.adapt.simulate import METHODS, SimulatedExecutor, decide_trace
from edgent.adapt.traces import BandwidthTrace
from edgent.demo.options import MODEL, DemoOptions, RunState

METHOD_LABELS = {
    "edgent-dynamic": "Edgent dynamic (BOCPD + map), simulated",
    "edgent-dynamic-ph": "Edgent dynamic, Page-Hinkley detector, simulated",
    "edgent-static": "Edgent static planner on EWMA bandwidth, simulated",
    "neurosurgeon": "Neurosurgeon (partition only, EWMA), simulated",
    "device-only": "device only, simulated",
    "edge-only": "edge only, simulated",
    "oracle": "oracle (knows the future bandwidth), simulated",
}


def simulate_baselines(sc: Any, trace: Any, st: RunState, opts: DemoOptions) -> dict[str, Any]:
    """Every method of ``edgent bench dynamic`` on the same trace at the same request times, in simulation (the
    same latency tables); also the table's latency of the configurations the real run chose."""
    # pre-roll: every simulated method starts, like the measured run (its first probe), with one sample of the
    # first rate: the trace gets one extra second in front and the request times move by it
    pre = BandwidthTrace(trace.name, np.concatenate([[0.0], trace.time_s + 1.0]),
                         np.concatenate([trace.rate_bps[:1], trace.rate_bps]), trace.end_s + 1.0)
    trace = pre
    times = np.array([r["time_s"] for r in st.records]) + 1.0
    sim = SimulatedExecutor(sc.candidates, opts.rtt_ms)
    true_lat = sim.matrix(trace, times)
    dec = decide_trace(trace, times, sc.candidates, opts.deadline_ms, sc.maps, opts.rtt_ms,
                       true_latency_ms=true_lat)
    out: dict[str, Any] = {}
    for m in METHODS:
        ch = dec.choice[m]
        lat = true_lat[np.arange(times.size), ch]
        out[m] = {"latency_ms": lat, "choice": ch, "accuracy": sc.candidates.accuracy[ch]}
    real_ch = np.array([r["candidate"] for r in st.records])
    out["_real_choice_simulated_ms"] = true_lat[np.arange(times.size), real_ch]
    out["_oracle_servable"] = (true_lat <= opts.deadline_ms).any(axis=1)
    return out


def summarize_run(st: RunState, sim: dict[str, Any], opts: DemoOptions, sc: Any) -> list[dict[str, Any]]:
    """One row per method: the measured Edgent run first, then the simulated ones."""
    dl = opts.deadline_ms
    lat = np.array([r["latency_ms"] for r in st.records])
    plans = [(r["plan"]["exit"], r["plan"]["partition"], r["plan"]["codec"]) for r in st.records]
    servable = sim["_oracle_servable"]
    rows = [{
        "method": "Edgent dynamic (BOCPD + map), MEASURED on the testbed",
        "key": "edgent-dynamic-measured", "mode": "measured",
        "requests": int(lat.size), "met_share": float((lat <= dl).mean()),
        "met_share_where_oracle_meets": float((lat[servable] <= dl).mean()) if servable.any() else None,
        "card_accuracy": float(np.mean([r["card_accuracy"] for r in st.records])),
        "measured_top1": (st.correct / st.labelled) if st.labelled else None,
        "mean_latency_ms": float(lat.mean()), "p95_latency_ms": float(np.percentile(lat, 95)),
        "switches": int(sum(a != b for a, b in zip(plans, plans[1:]))),
        "fallbacks": st.fallbacks,
    }]
    for m, label in METHODS_ORDER:
        r = sim[m]
        ml = r["latency_ms"]
        rows.append({
            "method": label, "key": m, "mode": "simulated", "requests": int(ml.size),
            "met_share": float((ml <= dl).mean()),
            "met_share_where_oracle_meets": float((ml[servable] <= dl).mean()) if servable.any() else None,
            "card_accuracy": float(r["accuracy"].mean()), "measured_top1": None,
            "mean_latency_ms": float(ml.mean()), "p95_latency_ms": float(np.percentile(ml, 95)),
            "switches": int(np.count_nonzero(np.diff(r["choice"]))), "fallbacks": None,
        })
    return rows


METHODS_ORDER = [(m, METHOD_LABELS[m]) for m in ("edgent-dynamic", "edgent-dynamic-ph", "edgent-static",
                                                  "neurosurgeon", "device-only", "edge-only", "oracle")]
SUMMARY_COLUMNS = ["method", "mode", "requests", "deadline met %", "met % where oracle meets",
                   "accuracy % (card, exits used)", "measured top-1 %", "mean latency ms", "p95 latency ms",
                   "config switches"]


def fmt_row(r: dict[str, Any]) -> list[str]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    return [r["method"], r["mode"], str(r["requests"]), pct(r["met_share"]), pct(r["met_share_where_oracle_meets"]),
            pct(r["card_accuracy"]), pct(r["measured_top1"]), f"{r['mean_latency_ms']:.1f}",
            f"{r['p95_latency_ms']:.1f}", str(r["switches"])]


def print_summary(console: Any, rows: list[dict[str, Any]], opts: DemoOptions, kind: str) -> None:
    from rich.table import Table

    from rich import box

    tab = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{MODEL}, deadline {opts.deadline_ms:g} ms, {rows[0]['requests']} requests; the same trace "
                      f"and request times for every row ({'namespace testbed' if kind == 'netns' else 'EMULATED link'})")
    short = ["method", "met%", "srv%", "acc%", "top1%", "mean ms", "p95 ms", "sw"]
    for c in short:
        tab.add_column(c, justify="left" if c == "method" else "right", no_wrap=True)
    for r in rows:
        f = fmt_row(r)
        name = "edgent-dynamic REAL" if r["mode"] == "measured" else r["key"]
        tab.add_row(name, *f[3:7], f"{r['mean_latency_ms']:.0f}", f"{r['p95_latency_ms']:.0f}", f[9],
                    style="bold" if r["mode"] == "measured" else None)
    console.print("REAL: measured on the testbed; every other row is simulated with the same latency tables, "
                  "trace and request times. met%: deadline met; srv%: met among the requests the oracle can serve; "
                  "acc%: model card accuracy of the exits used; top1%: measured on the test images; sw: "
                  "configuration switches", highlight=False)
    console.print(tab)
