"""``edgent profile``: measure a model's units or sweep synthetic layers on this host, and fit predictors.

Modes (one per call):

- ``edgent profile --model M --role device|edge --out FILE``: time every unit of every exit's sub-model;
- ``edgent profile --sweep --role device|edge --out FILE``: the synthetic-layer sweep (training data);
- ``edgent profile --fit SWEEP --out MODEL.json [--predictor edgent|paper]``: fit a latency predictor.

The device role is this machine as it is, timed on the wall clock with torch's threads, unless emulation is
asked for: ``--emulate`` takes the emulated weak device of this project (``edgent.profile.throttle.DEVICE``: one
thread slowed x100 on the steady clock); ``--threads``, ``--cpu-quota`` and ``--slowdown`` change threads, add a
real cgroup CPU quota (a fraction of the threads' CPUs) or an emulated slowdown factor. The edge role is two
threads, unthrottled. Every output records and prints how the role was timed (``timed_on``: ``wall clock`` or
``EMULATED: ...``). A device profile of a model timed on the wall clock is also cached for this machine
(``$EDGENT_CACHE/device-profiles/``, keyed by model and machine), where ``edgent run`` finds it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from edgent.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="time a model's units or a synthetic-layer sweep; fit latency predictors",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--model", help="zoo model or model folder whose units to time (e.g. alexnet-cifar10); the "
                      "profile is the model's own latency model, which plan, map build and the demo take")
    mode.add_argument("--sweep", action="store_true", help="time synthetic layers of every kind (training data)")
    mode.add_argument("--fit", metavar="SWEEP", help="fit a latency predictor on this sweep file")
    p.add_argument("--role", choices=("device", "edge"), help="machine role (required for --model/--sweep)")
    p.add_argument("--emulate", action="store_true",
                   help="the device role: emulate this project's weak device (x100 on the steady clock) instead "
                        "of timing this machine as it is on the wall clock")
    p.add_argument("--out", default=None, help="output JSON file (default for a model folder: "
                   "FOLDER/latency/ROLE-RUNTIME.json, where plan looks for it; for a zoo model's device profile "
                   "timed on the wall clock: this machine's cache, where edgent run looks for it)")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                   help="what runs the units: eager PyTorch (default) or ONNX Runtime (with --model)")
    p.add_argument("--device", default="cpu",
                   help="with --model: where the units run: cpu (default), cuda, cuda:N or auto; on a GPU each unit "
                        "is timed to the end of its kernels (the edge's latency model on its GPU)")
    p.add_argument("--fp16", action="store_true", help="with --model on a GPU: time the units in float16")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: edge 2; device: torch's default, 1 with --emulate)")
    p.add_argument("--cpu-quota", type=float, default=None,
                   help="real cgroup-v1 CPU quota, fraction of the threads' CPUs (default: the role's, none for "
                        "either role; 0 = none); needs root")
    p.add_argument("--slowdown", type=float, default=None,
                   help="emulated slowdown factor applied to measured time (default: none; with --emulate the "
                        "emulated device's, edgent.profile.throttle; docs/latency.md)")
    p.add_argument("--predictor", choices=("edgent", "paper"), default="edgent", help="what --fit fits")
    p.add_argument("--quick", action="store_true", help="fewer repetitions / a smaller sweep")
    p.add_argument("--sweep-scale", type=float, default=1.0, help="multiplier of the sweep's layers per kind")
    p.set_defaults(func=_cmd)


def _emulation(args: argparse.Namespace):
    from edgent.profile.throttle import real_emulation, role_emulation

    if args.emulate and args.role != "device":
        raise ConfigError("--emulate emulates the weak device: use it with --role device")
    emu = role_emulation(args.role) if args.role == "edge" or args.emulate else real_emulation()
    emu = emu.with_real_part(args.threads, args.cpu_quota)
    if args.slowdown is not None:
        emu = replace(emu, slowdown=args.slowdown)
    return emu


def _cmd(args: argparse.Namespace) -> int:
    progress = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.fit:
        return _fit(args)
    if args.sweep and args.out is None:
        raise ConfigError("--sweep needs --out FILE")
    if args.role is None:
        raise ConfigError("--role device|edge is required with --model and --sweep")
    emu = _emulation(args)
    if emu.cpu_quota:
        from edgent.profile.throttle import check_cgroup_v1_cpu

        check_cgroup_v1_cpu()
    print(f"{args.role} timing: {emu.timed_on()} ({emu.describe()})", file=sys.stderr)
    if (args.device != "cpu" or args.fp16) and not args.model:
        raise ConfigError("--device and --fp16 time a model's units: use them with --model")
    if args.runtime != "torch" and not args.model:
        raise ConfigError("--runtime onnx times a model's units: use it with --model")
    if args.model:
        from edgent.model.zoo import load_model_spec
        from edgent.profile.profiler import load_chain, profile_model, save_profile

        chain = load_chain(args.model)
        own = args.role == "device" and not emu.emulated and args.runtime == "torch"
        out = args.out or _default_profile_path(load_model_spec(args.model), args.role, args.runtime, own)
        timed = None
        if args.runtime == "onnx":
            from edgent.model.onnx_parts import OnnxUnits

            timed = OnnxUnits(chain, threads=emu.threads)
        from edgent.model.placement import Placement, resolve_device

        placement = Placement(resolve_device(args.device), fp16=args.fp16)
        placement.check()
        if placement.device != "cpu":
            print(f"{args.role}: units on {placement.describe()}", file=sys.stderr)
        doc = profile_model(chain, args.role, emu, quick=args.quick, progress=progress, timed=timed,
                            runtime=args.runtime, placement=placement)
        written = []
        if out is not None:
            written.append(save_profile(doc, out))
        if own:  # this machine's own profile: also where `edgent run` looks for it
            from edgent.profile.machine import machine_fingerprint
            from edgent.profile.selfprofile import cached_profile_path

            cached = cached_profile_path(chain, machine_fingerprint(emu.threads), args.quick)
            if not written or cached.resolve() != written[0].resolve():
                written.append(save_profile(doc, cached))
        total = sum(r["ms"] for r in doc["units"] if r["trunk"])
        print(f"{args.model} on {args.role} (timing: {doc['timed_on']}): {len(doc['units'])} units timed, "
              f"main exit {total:.2f} ms (sum of units); written {', '.join(map(str, written))}")
        return 0
    from edgent.profile.sweep import run_sweep, save_sweep

    if args.sweep_scale <= 0:
        raise ConfigError("--sweep-scale must be > 0")
    doc = run_sweep(args.role, emu.without_slowdown(), scale=args.sweep_scale, quick=args.quick, progress=progress)
    doc["emulation_with_slowdown"] = emu.to_json()
    path = save_sweep(doc, args.out)
    print(f"sweep on {args.role}: {len(doc['records'])} layers in {doc['seconds']} s; written {path}")
    return 0


def _default_profile_path(spec, role: str, runtime: str, cached: bool = False) -> str | None:
    """FOLDER/latency/ROLE-RUNTIME.json for a model folder; None for a zoo model whose profile goes to this
    machine's cache only (``cached``); else the error asking for --out."""
    from edgent.model.zoo import WEIGHTS_DIR

    if spec.folder is None or spec.folder == WEIGHTS_DIR:
        if cached:
            return None
        raise ConfigError(f"--out FILE is needed for the zoo model {spec.name} (its folder is the package's)")
    return str(spec.folder / "latency" / f"{role}-{runtime}.json")


def _fit(args: argparse.Namespace) -> int:
    if args.out is None:
        raise ConfigError("--fit needs --out MODEL.json")
    from edgent.latency.fit import fit_predictors
    from edgent.profile.sweep import load_sweep
    from edgent.profile.throttle import DeviceEmulation

    sweep = load_sweep(args.fit)
    emu = DeviceEmulation.from_json(sweep.get("emulation_with_slowdown") or sweep["emulation"])
    if args.slowdown is not None:
        emu = replace(emu, slowdown=args.slowdown)
    pred = fit_predictors(sweep, emu, kinds=(args.predictor,))[args.predictor]
    path = pred.save(args.out)
    print(json.dumps({"predictor": pred.name, "role": pred.role, "emulation": emu.describe(),
                      "quota_factor": pred.quota_factor, "kinds": pred.kinds(), "out": str(path)}, indent=1))
    return 0
