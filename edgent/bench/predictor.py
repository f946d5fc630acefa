"""``edgent bench predictor``: how accurate the latency predictors are, on layers and models they never saw.

One self-contained run per role, each as :func:`~edgent.profile.throttle.role_emulation` defines it (edge:
2 threads, unthrottled; device: 1 thread timed on its steady CPU clock), without the emulated slowdown, which
is an exact factor on both sides (``--cpu-quota`` runs the device under a real CPU quota instead): sweep
synthetic layers, fit the paper's and edgent's predictors, then compare their predictions with measurements of

- every unit of every exit's sub-model of the zoo models (alexnet-cifar10, resnet18, mobilenet_v2, vgg11);
- every device part (units ``[0, p)``, run as ``run_device``) and every edge part (units ``[p, N_i)``, run as
  ``run_edge``) of every (exit, partition point) pair of alexnet-cifar10, all parts in interleaved rounds:
  unthrottled as one call after an idle spell on the role's clock (the median over rounds), under a quota by
  the mean over windows of back-to-back calls (the time average the quota sets).

Figures: share within +-10% and +-20%, median absolute percentage error; a prediction within 0.05 ms of the
measurement counts as within any percentage. Written with :func:`edgent.bench.record.write_result`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from edgent.latency.fit import fit_predictors
from edgent.latency.predictor import LatencyPredictor, unit_from_json
from edgent.latency.regression import summarise_errors
from edgent.model.chain import MultiExitChain
from edgent.model.describe import describe_chain
from edgent.profile.profiler import load_chain, profile_model
from edgent.profile.sweep import after_idle_timing, run_sweep, sweep_clock
from edgent.profile.throttle import DeviceEmulation, role_emulation
from edgent.profile.timing import time_interleaved

DEFAULT_MODELS = ("alexnet-cifar10", "resnet18", "mobilenet_v2", "vgg11")


def measure_parts(chain: MultiExitChain, emulation: DeviceEmulation, quick: bool = False,
                  progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Measure every device part and every edge part of every (exit, point) pair of ``chain`` as a whole
    ``run_device``/``run_edge`` call (identical device parts shared between exits are measured once), as the
    runtime calls them: once per request, after an idle spell (:func:`edgent.profile.sweep.after_idle_timing`;
    under a quota, by window means), on the role's clock."""
    say = progress or (lambda s: None)
    chain.eval()
    torch.manual_seed(0)
    x = torch.randn(1, *chain.input_shape)
    rows: list[dict[str, Any]] = []
    fns: dict[tuple, Callable[[], Any]] = {}
    infos = {ep.exit: describe_chain(chain, ep.exit) for ep in chain.exit_points}
    with torch.no_grad():
        for ep in chain.exit_points:
            names = chain.unit_names(ep.exit)
            for p in ep.partition_points:
                t_p = chain.run_device(x, ep.exit, p)
                if p > 0:
                    key = ("device", *names[:p])  # identical device parts of several exits: timed once
                    fns.setdefault(key, lambda e=ep.exit, p=p: chain.run_device(x, e, p))
                    rows.append({"exit": ep.exit, "point": p, "side": "device", "key": key,
                                 "units": infos[ep.exit][:p]})
                if p < ep.num_units:
                    key = ("edge", ep.exit, p)
                    fns[key] = lambda e=ep.exit, p=p, t=t_p: chain.run_edge(t, e, p)
                    rows.append({"exit": ep.exit, "point": p, "side": "edge", "key": key,
                                 "units": infos[ep.exit][p:]})
    say(f"parts {chain.name}: timing {len(fns)} distinct parts in interleaved rounds")
    keys = list(fns)
    with emulation.real_part(), torch.no_grad():
        how = {} if emulation.uses_quota else {"clock": sweep_clock(emulation), **after_idle_timing(quick)}
        stats = dict(zip(keys, time_interleaved([fns[k] for k in keys], throttled=emulation.uses_quota,
                                                quick=quick, **how)))
    for r in rows:
        r["measured_ms"] = stats[r.pop("key")].median_ms
    return rows


def evaluate_role(role: str, emu: DeviceEmulation, models: tuple[str, ...], quick: bool, sweep_scale: float,
                  progress: Callable[[str], None]) -> tuple[dict[str, Any], dict[str, LatencyPredictor], float]:
    """Sweep, fit and evaluate one role (``emu``: its emulation without the slowdown); returns the role's
    results, its predictors and the measured full alexnet-cifar10 forward time (ms, without slowdown)."""
    t0 = time.perf_counter()
    drift_before = _reference_ms(emu, quick)
    sweep = run_sweep(role, emu, scale=sweep_scale, quick=quick, progress=progress)
    predictors = fit_predictors(sweep)
    out: dict[str, Any] = {"emulation": emu.to_json(), "sweep_seconds": sweep["seconds"],
                           "sweep_records": len(sweep["records"]), "overheads": sweep["overheads"],
                           "quota_calibration": sweep["quota_calibration"], "loading": sweep["loading"],
                           "fits": {k: p.info.get("per_kind") for k, p in predictors.items()},
                           "units": {}, "alexnet_parts": {}}
    for model in models:
        chain = load_chain(model)
        doc = profile_model(chain, role, emu, quick=quick)
        recs = doc["units"]
        units = [unit_from_json(r["unit"]) for r in recs]
        measured = [r["measured_ms"] for r in recs]
        labels = [f"{model} exit{r['exit']} {r['name']}" for r in recs]
        out["units"][model] = {"profile_seconds": doc["seconds"], "units": len(recs)}
        for name, pred in predictors.items():
            pr = [pred.predict_unit_ms(u) for u in units]
            out["units"][model][name] = summarise_errors(pr, measured, labels).to_json()
        progress(f"{role}: {model} units: " + ", ".join(
            f"{n} {out['units'][model][n]['within_10pct']:.0%}" for n in predictors))
    chain = load_chain("alexnet-cifar10")
    parts = measure_parts(chain, emu, quick=quick, progress=progress)
    for side in ("device", "edge"):
        rows = [r for r in parts if r["side"] == side]
        out["alexnet_parts"][side] = {"n": len(rows)}
        preds = {}
        for name, pred in predictors.items():
            preds[name] = pr = [pred.predict_units_ms(r["units"]) for r in rows]
            labels = [f"exit{r['exit']} p{r['point']} {side}" for r in rows]
            out["alexnet_parts"][side][name] = summarise_errors(pr, [r["measured_ms"] for r in rows], labels).to_json()
        out["alexnet_parts"][side]["rows"] = [
            {"exit": r["exit"], "point": r["point"], "measured_ms": round(r["measured_ms"], 5),
             **{f"{n}_ms": round(preds[n][i], 5) for n in preds}} for i, r in enumerate(rows)]
        progress(f"{role}: alexnet {side} parts: " + ", ".join(
            f"{n} {out['alexnet_parts'][side][n]['within_10pct']:.0%}" for n in predictors))
    full = next(r["measured_ms"] for r in parts if r["side"] == "edge" and r["point"] == 0
                and r["exit"] == chain.num_exits)
    out["alexnet_full_forward_ms"] = full
    drift_after = _reference_ms(emu, quick)
    out["host_drift"] = {
        "before_ms": drift_before, "after_ms": drift_after, "after_over_before": drift_after / drift_before,
        "what": "the full alexnet-cifar10 forward timed the same way at the start (before the sweep) and at the "
                "end (after the parts) of this role's run: how much this host's speed moved meanwhile"}
    progress(f"{role}: host drift: reference forward {drift_before:.2f} ms before, {drift_after:.2f} ms after")
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, predictors, full


def _reference_ms(emu: DeviceEmulation, quick: bool) -> float:
    """The full alexnet-cifar10 forward on the role, timed like a part (the host-drift reference)."""
    chain = load_chain("alexnet-cifar10").eval()
    x = torch.randn(1, *chain.input_shape)
    with emu.real_part(), torch.no_grad():
        return time_interleaved([lambda: chain.forward(x)], throttled=emu.uses_quota, quick=quick)[0].median_ms


def run_bench(roles: tuple[str, ...], models: tuple[str, ...], quick: bool, sweep_scale: float,
              save_fits: Path | None, progress: Callable[[str], None],
              emulations: dict[str, DeviceEmulation] | None = None) -> dict[str, Any]:
    """The whole benchmark (see the module docstring); returns the result document. ``emulations`` overrides
    the roles' emulations (default :func:`role_emulation`)."""
    from edgent.profile.timing import clock_name

    result: dict[str, Any] = {"clock": clock_name(), "quick": quick, "sweep_scale": sweep_scale, "models": list(models),
                              "abs_tol_ms": 0.05, "roles": {}}
    full_ms: dict[str, float] = {}
    emulations = {r: (emulations or {}).get(r) or role_emulation(r) for r in roles}
    for role in roles:
        res, predictors, full_ms[role] = evaluate_role(role, emulations[role].without_slowdown(), models, quick,
                                                       sweep_scale, progress)
        result["roles"][role] = res
        if save_fits is not None:
            emu = emulations[role]
            for name, pred in predictors.items():
                fname = f"{role}.json" if name == "edgent" else f"{role}.{name}.json"
                pred.with_emulation(emu).save(save_fits / fname)
    if "device" in full_ms and "edge" in full_ms:
        dev = emulations["device"]
        result["device_over_edge_alexnet"] = {
            "edge_ms": full_ms["edge"], "device_quota_ms": full_ms["device"], "slowdown": dev.slowdown,
            "device_ms": full_ms["device"] * dev.slowdown,
            "real_ratio": full_ms["device"] / full_ms["edge"],
            "ratio": full_ms["device"] * dev.slowdown / full_ms["edge"],
            "how": "full alexnet-cifar10 forward (main exit) as run_edge(x, exit, 0), each role timed like its parts "
                   "(unthrottled: one call after idle on the role's clock, median over interleaved rounds; under a "
                   "quota: interleaved window means); the device's time x its emulated slowdown",
            "edge": emulations["edge"].describe(), "device": dev.describe()}
    result["target"] = _target_check(result)
    return result


def _target_check(result: dict[str, Any]) -> dict[str, Any]:
    """Does the best predictor put >= 90% of alexnet-cifar10 device and edge parts within +-10% on each role?"""
    out = {}
    for role, res in result["roles"].items():
        best = None
        for name in ("paper", "edgent"):
            shares = [res["alexnet_parts"][side][name]["within_10pct"] for side in ("device", "edge")]
            if best is None or min(shares) > best[1]:
                best = (name, min(shares))
        out[role] = {"best_predictor": best[0], "min_share_within_10pct": best[1], "met": best[1] >= 0.9}
    return out


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = sub.add_parser("predictor", help="accuracy of the latency predictors on unseen layers, models and "
                                         "alexnet-cifar10 device/edge parts (sweep + fit + evaluate)")
    p.add_argument("--roles", default="edge,device", help="comma-separated roles (default: edge,device)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="models whose units are tested")
    p.add_argument("--sweep-scale", type=float, default=None,
                   help="multiplier of the number of sweep layers per kind (default 1, or 0.3 with --quick)")
    p.add_argument("--save-fits", default=None, help="also save the fitted predictors in this folder "
                                                     "(edgent/latency/fitted to refresh the shipped ones)")
    p.add_argument("--edge-threads", type=int, default=None, help="torch threads of the edge role (default 2)")
    p.add_argument("--device-threads", type=int, default=None, help="torch threads of the device role (default 1)")
    p.add_argument("--cpu-quota", type=float, default=None,
                   help="run the device role under a real cgroup-v1 CPU quota, as a fraction of its threads' "
                        "CPUs (default: none, as the role has none; needs root)")
    add_common_options(p, "fewer repetitions and a smaller sweep (a smoke run)")
    p.set_defaults(func=_cmd)


def _cmd(args: argparse.Namespace) -> int:
    from edgent.bench.record import write_result
    from edgent.errors import ConfigError

    roles = tuple(r for r in args.roles.split(",") if r)
    for r in roles:
        role_emulation(r)
    models = tuple(m for m in args.models.split(",") if m)
    if not models:
        raise ConfigError("--models is empty")
    scale = args.sweep_scale if args.sweep_scale is not None else (0.3 if args.quick else 1.0)
    if scale <= 0:
        raise ConfigError("--sweep-scale must be > 0")
    progress = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    emulations = {}
    if args.edge_threads is not None:
        emulations["edge"] = role_emulation("edge").with_real_part(args.edge_threads)
    if args.device_threads is not None or args.cpu_quota is not None:
        emulations["device"] = role_emulation("device").with_real_part(args.device_threads or None, args.cpu_quota)
    t0 = time.perf_counter()
    result = run_bench(roles, models, args.quick, scale, Path(args.save_fits) if args.save_fits else None, progress,
                       emulations)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    path = write_result("predictor", result, args.out_dir)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_summary(result)
    print(f"written: {path}", file=sys.stderr)
    return 0


def _print_summary(result: dict[str, Any]) -> None:
    for role, res in result["roles"].items():
        print(f"[{role}] {res['emulation']['describe']}")
        for side in ("device", "edge"):
            for name in ("paper", "edgent"):
                s = res["alexnet_parts"][side][name]
                print(f"  alexnet {side} parts  {name:6s}: within 10% {s['within_10pct']:.0%}, 20% "
                      f"{s['within_20pct']:.0%}, median APE {s['median_ape']:.1%} (n={s['n']})")
        for model, u in res["units"].items():
            print(f"  {model} units: " + ", ".join(
                f"{n} {u[n]['within_10pct']:.0%}/{u[n]['within_20pct']:.0%}/{u[n]['median_ape']:.1%}"
                for n in ("paper", "edgent")))
    if "device_over_edge_alexnet" in result:
        r = result["device_over_edge_alexnet"]
        print(f"device/edge alexnet-cifar10: {r['ratio']:.0f}x (real {r['real_ratio']:.1f}x x emulated {r['slowdown']:g})")
