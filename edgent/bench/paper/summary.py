"""How the measurements are judged and summarised: the stages of a request, when a prediction is right, when a
point meets its requirement, and the summary over every measured request (in the result and printed).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

#: the stages of a request, measured and predicted (:data:`STAGE_NOTES` says what each one is)
STAGES: tuple[str, ...] = ("device", "link", "rtt", "edge", "overheads")
STAGE_NOTES = {
    "device": "device compute: preprocessing and units [0, p) under the device throttle (measured: device_ms)",
    "link": "upload + download (measured: network time minus the base round trip)",
    "rtt": "base round trip (measured: smallest HEALTH round trip at this link setting; the planner is given it)",
    "edge": "edge compute of units [p, N) (measured: the server's compute_ms)",
    "overheads": "everything else: encoding, decoding, framing, the server's bookkeeping (measured: total minus "
                 "the other stages; predicted: serialization + queueing)",
}
#: a prediction is right when the measurement is within max(10 %, 5 ms) of it
WITHIN_REL, WITHIN_ABS_MS = 0.10, 5.0
#: a point meets its requirement when at least this share of its requests do
MET_SHARE = 0.9


def within(measured_ms: Any, predicted_ms: Any) -> Any:
    """Whether a measurement is within +-10 % (or 5 ms, whichever is larger) of the prediction."""
    m, p = np.asarray(measured_ms, dtype=float), np.asarray(predicted_ms, dtype=float)
    return np.abs(m - p) <= np.maximum(WITHIN_REL * p, WITHIN_ABS_MS)


def latency_stats(v: Sequence[float]) -> dict[str, float]:
    """Median, mean, p5, p95, min and max of some latencies (ms)."""
    a = np.asarray(v, dtype=float)
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p5": float(np.percentile(a, 5)),
            "p95": float(np.percentile(a, 95)), "min": float(a.min()), "max": float(a.max())}


def top1(correct: Sequence[bool | None]) -> float | None:
    """The share of correct answers among the requests whose label is known (None when none is)."""
    c = [x for x in correct if x is not None]
    return float(np.mean(c)) if c else None


def device_spread(variants: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """How much identical device calls spread, on the steady clock the device ran on and on the plain CPU clock
    (the same calls' raw CPU time x the slowdown): the share of device calls within +-10 % (or 5 ms) of their
    configuration's median, and the host's speed during them (:mod:`edgent.profile.hostspeed`)."""
    ok_steady: list[bool] = []
    ok_raw: list[bool] = []
    speed: list[float] = []
    for v in variants.values():
        for meas in v["measurements"].values():
            req = meas["requests"]
            rows = [(d, raw, sp) for d, raw, sp in zip(req["device_ms"], req.get("device_raw_ms") or [],
                                                      req.get("device_host_speed") or []) if raw is not None]
            if not rows:
                continue
            d, raw, sp = (np.asarray(c, dtype=float) for c in zip(*rows))
            ok_steady += list(within(d, np.median(d)))
            ok_raw += list(within(raw, np.median(raw)))
            speed += list(sp)
    if not speed:
        return None
    return {"calls": len(speed), "within_own_median_steady_clock": float(np.mean(ok_steady)),
            "within_own_median_plain_cpu_clock": float(np.mean(ok_raw)),
            "host_speed": {k: float(np.percentile(speed, q)) for k, q in (("p5", 5), ("median", 50), ("p95", 95))}}


def summarize(variants: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Predicted against measured over every measured request (each measurement once, also the oracle's
    candidates it did not pick), stage by stage; and whether Edgent met every requirement of (c) that the oracle
    met."""
    pred_tot: list[float] = []
    pred_off: list[float] = []
    own_median: list[float] = []
    pred_fluid: list[float] = []
    meas_tot: list[float] = []
    place: list[str] = []
    exps: list[str] = []
    meas_st: dict[str, list[float]] = {s: [] for s in STAGES}
    pred_st: dict[str, list[float]] = {s: [] for s in STAGES}
    for v in variants.values():
        for meas in v["measurements"].values():
            req = meas["requests"]
            n = len(req["total_ms"])
            meas_tot += req["total_ms"]
            pred_off += req.get("predicted_offline_ms") or [meas["predicted_ms"]] * n
            own_median += [float(np.median(req["total_ms"]))] * n
            pred_tot += req.get("predicted_ms") or [meas["predicted_ms"]] * n
            pred_fluid += [meas["predicted_fluid_ms"]] * n
            place += [meas["placement"]] * n
            exps += [meas["experiment"]] * n
            for s in STAGES:
                meas_st[s] += req[f"{s}_ms"]
                pred_st[s] += req.get(f"predicted_{s}_ms") or [meas["predicted_stages_ms"][s]] * n
    m, p, pf = np.asarray(meas_tot), np.asarray(pred_tot), np.asarray(pred_fluid)
    ok = within(m, p)
    out: dict[str, Any] = {
        "requests": int(m.size),
        "within_share": float(ok.mean()) if m.size else None,
        "within_share_offline": float(within(m, np.asarray(pred_off)).mean()) if m.size else None,
        "within_share_fluid": float(within(m, pf).mean()) if m.size else None,
        "median_measured_over_predicted": float(np.median(m / np.maximum(p, 1e-9))) if m.size else None,
        "within_share_by_placement": {}, "within_share_by_experiment": {}, "stages": {},
    }
    # the noise floor: each configuration's own median, known only afterwards, is the best one figure per
    # configuration could do; what it misses is the spread of repeated identical requests, not the model
    ok_med = within(m, np.asarray(own_median)) if m.size else np.zeros(0, bool)
    out["within_share_of_own_median"] = float(ok_med.mean()) if m.size else None
    place_a, exps_a = np.asarray(place), np.asarray(exps)
    for k in sorted(set(place)):
        sel = place_a == k
        out["within_share_by_placement"][k] = {"requests": int(sel.sum()), "within_share": float(ok[sel].mean()),
                                               "within_share_offline": float(within(m[sel],
                                                                                    np.asarray(pred_off)[sel]).mean()),
                                               "within_share_of_own_median": float(ok_med[sel].mean()),
                                               "within_share_fluid": float(within(m[sel], pf[sel]).mean())}
    for k in sorted(set(exps)):
        sel = exps_a == k
        out["within_share_by_experiment"][k] = {"requests": int(sel.sum()), "within_share": float(ok[sel].mean())}
    blame = {s: 0 for s in STAGES}
    errs = {s: np.asarray(meas_st[s]) - np.asarray(pred_st[s]) for s in STAGES}
    for i in np.flatnonzero(~ok):
        blame[max(STAGES, key=lambda s: abs(errs[s][i]))] += 1
    for s in STAGES:
        e, ms, ps = errs[s], np.asarray(meas_st[s]), np.asarray(pred_st[s])
        used = (ps > 0) | (ms > 0.05)  # the stage ran (or was predicted to)
        out["stages"][s] = {
            "what": STAGE_NOTES[s], "requests": int(used.sum()),
            "median_error_ms": float(np.median(e[used])) if used.any() else 0.0,
            "median_abs_error_ms": float(np.median(np.abs(e[used]))) if used.any() else 0.0,
            "p95_abs_error_ms": float(np.percentile(np.abs(e[used]), 95)) if used.any() else 0.0,
            "within_share": float(within(ms[used], ps[used]).mean()) if used.any() else None,
            "median_measured_over_predicted": (float(np.median(ms[used & (ps > 0)] / ps[used & (ps > 0)]))
                                               if (used & (ps > 0)).any() else None),
            "largest_error_of_requests_outside": blame[s],
        }
    out["requests_outside"] = int((~ok).sum())
    # the requests whose prediction the online calibration changed (it had measured compute to go by): how close
    # each prediction came, the offline one and the calibrated one the agent decided with
    po = np.asarray(pred_off)
    active = np.abs(p - po) > 1e-6 if m.size else np.zeros(0, bool)
    out["calibrated_requests"] = {
        "requests": int(active.sum()),
        "within_share_calibrated": float(ok[active].mean()) if active.any() else None,
        "within_share_offline": float(within(m[active], po[active]).mean()) if active.any() else None,
    }
    out["device_spread"] = device_spread(variants)
    # which predictions are to blame: the share within if a stage's prediction were replaced by its measurement
    md, me = np.asarray(meas_st["device"]), np.asarray(meas_st["edge"])
    pd, pe = np.asarray(pred_st["device"]), np.asarray(pred_st["edge"])
    out["within_share_if_measured"] = {
        "device": float(within(m, p - pd + md).mean()) if m.size else None,
        "edge": float(within(m, p - pe + me).mean()) if m.size else None,
        "device_and_edge": float(within(m, p - pd + md - pe + me).mean()) if m.size else None,
        "device_and_edge_fluid_link": float(within(m, pf - pd + md - pe + me).mean()) if m.size else None,
    }
    # (c): Edgent against the oracle
    checks = {}
    for name, v in variants.items():
        rows = v["c_policies"]["rows"]
        if not any(r["policy"] == "oracle" for r in rows):
            continue
        by = {(r["policy"], r["deadline_ms"]): r for r in rows}
        ds = sorted({r["deadline_ms"] for r in rows})
        checks[name] = {f"{d:g}": {"oracle_met": by[("oracle", d)]["met"], "edgent_met": by[("edgent", d)]["met"],
                                   "oracle_accuracy": by[("oracle", d)]["accuracy"],
                                   "edgent_accuracy": by[("edgent", d)]["accuracy"]} for d in ds}
    out["edgent_vs_oracle"] = checks
    loads = [m["other_load_cpus"] for v in variants.values() for m in v["measurements"].values()
             if m.get("other_load_cpus") is not None]
    out["other_load_cpus"] = ({"median": float(np.median(loads)), "max": float(np.max(loads))} if loads else None)
    out["edgent_meets_every_requirement_the_oracle_meets"] = (
        all(c["edgent_met"] for v in checks.values() for c in v.values() if c["oracle_met"]) if checks else None)
    return out


def print_summary(console: Any, result: dict[str, Any]) -> None:
    """The per-point tables and the predicted-vs-measured summary, with rich."""
    from rich import box
    from rich.table import Table

    for vname, v in result["variants"].items():
        tab = Table(box=box.SIMPLE_HEAD, title=f"{vname} (input {v['input_bytes']} B): per point", pad_edge=False)
        for c in ("exp", "point", "policy", "exit/part", "pred ms", "meas med", "p95", "met %", "within %", "ok"):
            tab.add_column(c, justify="left" if c in ("exp", "policy") else "right", no_wrap=True)
        for exp, xkey in (("a_bandwidth_sweep", "bandwidth_kbit"), ("b_deadline_sweep", "deadline_ms"),
                          ("c_policies", "deadline_ms")):
            for r in v[exp]["rows"]:
                unit = " kbit/s" if xkey == "bandwidth_kbit" else " ms"
                tab.add_row(exp[0], f"{r[xkey]:g}{unit}", r["policy"], f"{r['exit']}/{r['partition']}",
                            f"{r['predicted_ms']:.1f}", f"{r['measured_ms']['median']:.1f}",
                            f"{r['measured_ms']['p95']:.1f}", f"{100 * r['met_share']:.0f}",
                            f"{100 * r['within_share']:.0f}", "met" if r["met"] else "[red]MISS[/red]")
        console.print(tab)
    s = result["summary"]
    tab = Table(box=box.SIMPLE_HEAD, title="predicted vs measured, by stage (every request once)", pad_edge=False)
    for c in ("stage", "requests", "median err ms", "median |err| ms", "p95 |err| ms", "meas/pred", "within %",
              "worst of misses"):
        tab.add_column(c, justify="left" if c == "stage" else "right")
    for st, d in s["stages"].items():
        ratio = d["median_measured_over_predicted"]
        tab.add_row(st, str(d["requests"]), f"{d['median_error_ms']:+.2f}", f"{d['median_abs_error_ms']:.2f}",
                    f"{d['p95_abs_error_ms']:.2f}", "-" if ratio is None else f"{ratio:.3f}",
                    "-" if d["within_share"] is None else f"{100 * d['within_share']:.0f}",
                    str(d["largest_error_of_requests_outside"]))
    console.print(tab)
    by_place = ", ".join(f"{k} {100 * d['within_share']:.0f} % of {d['requests']}"
                         for k, d in s["within_share_by_placement"].items())
    console.print(f"[bold]{s['requests']} requests: {100 * s['within_share']:.1f} % within +-10 % (or 5 ms) of the "
                  f"prediction calibrated online[/bold] ({100 * s['within_share_offline']:.1f} % of the offline "
                  f"prediction, {100 * s['within_share_fluid']:.1f} % of the paper's fluid formula); by placement: "
                  f"{by_place}", highlight=False)
    cr = s.get("calibrated_requests") or {}
    if cr.get("requests"):
        console.print(f"the {cr['requests']} requests whose prediction the online calibration changed: "
                      f"{100 * cr['within_share_calibrated']:.1f} % within of the calibrated prediction, "
                      f"{100 * cr['within_share_offline']:.1f} % of the offline one", highlight=False)
    console.print(f"the noise floor: {100 * s['within_share_of_own_median']:.1f} % are within +-10 % (or 5 ms) of "
                  "their own configuration's median (known only afterwards: the best one figure per configuration "
                  "could do); by placement: " + ", ".join(
                      f"{k} {100 * d['within_share_of_own_median']:.0f} %"
                      for k, d in s["within_share_by_placement"].items()), highlight=False)
    ds = s.get("device_spread")
    if ds:
        console.print(f"identical device calls ({ds['calls']}): {100 * ds['within_own_median_steady_clock']:.0f} % "
                      f"within +-10 % (or 5 ms) of their configuration's median on the steady clock the device ran "
                      f"on, {100 * ds['within_own_median_plain_cpu_clock']:.0f} % on the plain CPU clock (the same "
                      f"calls); host speed p5 {ds['host_speed']['p5']:.2f}, median {ds['host_speed']['median']:.2f}, "
                      f"p95 {ds['host_speed']['p95']:.2f} of the reference", highlight=False)
    cf = s["within_share_if_measured"]
    console.print(f"with the measured compute in place of its prediction: device {100 * cf['device']:.1f} %, edge "
                  f"{100 * cf['edge']:.1f} %, both {100 * cf['device_and_edge']:.1f} % within (both, with the "
                  f"paper's fluid link formula: {100 * cf['device_and_edge_fluid_link']:.1f} %)", highlight=False)
    ok = s["edgent_meets_every_requirement_the_oracle_meets"]
    if ok is not None:
        console.print(f"[bold]Edgent meets every requirement of (c) the oracle meets: {'yes' if ok else 'NO'}"
                      "[/bold]", highlight=False)
    load = s.get("other_load_cpus")
    if load:
        console.print(f"other work on the machine during the measurements: median {load['median']:.2f}, max "
                      f"{load['max']:.2f} CPUs (CPU time of every process but the device and the edge)",
                      highlight=False)
    console.print(f"testbed: {result['testbed']['describe']}; wall time {result['wall_s']:.0f} s",
                  highlight=False)
