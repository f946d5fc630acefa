"""Profiling a model's units on this host, as one machine role.

:func:`profile_model` times each unit of every exit's sub-model (the trunk units once, then each exit's branch
units) at batch 1, on the tensor that really reaches it, with the role's thread count and (for a role with a
CPU quota) inside the quota's cgroup, in place: inside whole forwards of every exit, interleaved
(:func:`time_units_in_place`); unthrottled by the median on the role's clock (wall time, or the CPU clock a
role is slowed on), under a quota by the mean CPU time times the quota's measured wall/CPU factor. Each record
keeps the paper's variables and the unit's features next to its timing. The emulated slowdown is a multiplicative
factor: ``ms = measured_ms x slowdown``; both are recorded.

:func:`load_profile` reads the file back as a :class:`ModelProfile` whose ``unit_ms[(exit, index)]`` is the
measured per-unit time of the role: the oracle's ground truth and the reference of the predictor checks.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from edgent.jsonio import read_json_file
from edgent.errors import ConfigError, DataError, ModelError
from edgent.model.chain import MultiExitChain
from edgent.model.placement import Placement, device_name, synchronize
from edgent.model.describe import UnitInfo, describe_chain
from edgent.profile.throttle import CPU_CLOCKS, DeviceEmulation
from edgent.profile.timing import TimingStats, clock_name, run_window, stats_from_samples

PROFILE_FORMAT = "edgent-profile"


def load_chain(name: str) -> MultiExitChain:
    """The model ``name`` (zoo name or model folder) with its trained weights if they exist, else random
    weights (timing does not depend on the values)."""
    from edgent.model.zoo import load_model

    try:
        return load_model(name, pretrained=True)
    except ModelError:
        return load_model(name, pretrained=False)


#: what an unthrottled role's unit times are, by the role's clock (wall time otherwise)
_TIMED_ON = {"thread-cpu": "thread CPU time", "steady-cpu": "thread CPU time at the reference speed"}


def _rounds(quick: bool) -> int:
    return 6 if quick else 20


def forwards_per_exit(quick: bool = False) -> int:
    """How many timed forwards of every exit an unthrottled profile runs (:func:`time_units_in_place`)."""
    return _rounds(quick) * (2 if quick else 5)


def time_units_in_place(chain: MultiExitChain, x: torch.Tensor, throttled: bool, quick: bool = False,
                        clock: str = "wall", sync: Callable[[], None] | None = None
                        ) -> dict[tuple[int, int], list[float]]:
    """Per-unit times (ms) of every exit's sub-model, taken inside whole forwards (a timestamp between units),
    the forwards of all exits interleaved in rounds: a unit costs what it costs after the units before it,
    not what it costs repeated alone (its weights and input are not hot). Returns ``{(exit, index): [ms...]}``.

    Unthrottled: wall time, or the thread's CPU time with ``clock="thread-cpu"`` (a role slowed on its CPU
    clock), or that at the host's reference speed with ``clock="steady-cpu"`` (each forward between two runs
    of the reference, :mod:`edgent.profile.hostspeed`). Throttled: the thread's CPU time (a unit is shorter than the quota's period, so its wall time is
    bimodal, run or stopped; the CPU time times the quota's wall/CPU factor is its mean). ``sync``: called after
    every unit, before its timestamp (on a GPU: wait for its kernels, :func:`edgent.model.placement.synchronize`;
    the clock must then be wall time)."""
    clk = time.thread_time if throttled or clock in CPU_CLOCKS else time.perf_counter
    probe = None
    if clock == "steady-cpu" and not throttled:  # each forward's unit times at the reference speed
        from edgent.profile.hostspeed import shared_probe, steady_ms

        probe = shared_probe()
    rounds = _rounds(quick)
    per_round = 1 if throttled else forwards_per_exit(quick) // rounds
    out: dict[tuple[int, int], list[float]] = {}
    exits = [ep.exit for ep in chain.exit_points]
    for e in exits:  # warm-up
        chain.forward(x, e)
    for _ in range(rounds):
        for e in exits:
            units = chain.units(e)
            for _ in range(per_round):
                h = x
                before = probe.cpu_ms() if probe is not None else 0.0
                ms = []
                t_prev = clk()
                if sync is not None:
                    sync()
                    t_prev = clk()
                for unit in units:
                    h = unit(h)
                    if sync is not None:
                        sync()
                    t = clk()
                    ms.append((t - t_prev) * 1e3)
                    t_prev = t
                if probe is not None:
                    after = probe.cpu_ms()
                    ms = [steady_ms(v, before, after) for v in ms]
                for i, v in enumerate(ms):
                    out.setdefault((e, i), []).append(v)
    return out


def quota_wall_per_cpu(fn: Callable[[], Any], quick: bool = False) -> float:
    """Wall time over process CPU time of ``fn`` run back to back for a while (call inside the quota)."""
    fn()
    c0 = time.process_time()
    wall_s, _ = run_window(fn, 0.3 if quick else 1.0)
    return wall_s / max(time.process_time() - c0, 1e-9)


def unit_records(chain: MultiExitChain) -> list[tuple[int, UnitInfo, bool]]:
    """(exit, unit, is_trunk) for each distinct unit: the main exit's trunk units, then every exit's branch
    units. A trunk unit is recorded under the main exit; :class:`ModelProfile` maps it to every exit using it."""
    out = []
    main = chain.exit_points[-1]
    for u in describe_chain(chain, main.exit):
        out.append((main.exit, u, True))
    for ep in chain.exit_points[:-1]:
        for u in describe_chain(chain, ep.exit)[ep.after_trunk_units:]:
            out.append((ep.exit, u, False))
    return out


def profile_model(chain: MultiExitChain, role: str, emulation: DeviceEmulation, quick: bool = False,
                  seed: int = 0, progress: Callable[[str], None] | None = None, timed: Any = None,
                  runtime: str = "torch", placement: Placement | None = None) -> dict[str, Any]:
    """Measure every distinct unit of ``chain`` as ``role`` (see the module docstring); the JSON document.
    ``timed`` is what runs the units when it is not the chain itself (``units(exit)``, ``forward``: e.g.
    :class:`edgent.model.onnx_parts.OnnxUnits`), ``runtime`` its name, recorded. ``placement``: where the units
    run (default the CPU); on a GPU each unit is timed eagerly to the end of its kernels (synchronised wall
    time), in the placement's precision."""
    say = progress or (lambda s: None)
    chain.eval()
    torch.manual_seed(seed)
    x = torch.randn(1, *chain.input_shape)
    placement = placement or Placement()
    sync = None
    if placement.device != "cpu" or placement.fp16:
        if timed is not None:
            raise ConfigError("a GPU profile times the torch units: use --runtime torch with --device cuda")
        if emulation.uses_quota or emulation.clock in CPU_CLOCKS:
            raise ConfigError("a GPU profile is timed on the wall clock without a CPU quota (the GPU's kernels are "
                              "not on the CPU clock): drop --cpu-quota")
        dtype = torch.float16 if placement.fp16 else torch.float32
        chain = copy.deepcopy(chain).to(placement.device, dtype).eval()
        x = x.to(placement.device, dtype)
        sync = partial(synchronize, placement.device)
    records = []
    t_begin = time.perf_counter()
    units = unit_records(chain)
    say(f"profile {chain.name} {role}: timing {len(units)} units in place, in interleaved forwards of every exit")
    with emulation.real_part(), torch.no_grad():
        runner = chain if timed is None else timed
        samples = time_units_in_place(runner, x, emulation.uses_quota, quick, emulation.clock, sync=sync)
        factor = 1.0
        if emulation.uses_quota:
            factor = quota_wall_per_cpu(lambda: runner.forward(x), quick)
        preprocess = _time_preprocess(chain, quick) if not emulation.emulated else None
    for exit, info, trunk in units:
        st = stats_from_samples([v * factor for v in samples[(exit, info.index)]],
                                "in place, thread CPU x quota wall/CPU" if emulation.uses_quota else "in place, per call",
                                figure="mean" if emulation.uses_quota else "median")
        records.append(_record(exit, info, trunk, st, emulation))
    from edgent.profile.machine import machine_fingerprint

    return {
        "format": PROFILE_FORMAT, "model": chain.name, "runtime": runtime,
        "placement": {**placement.to_json(), "device_name": device_name(placement.device)},
        "clock": emulation.timing_clock or clock_name(), "role": role,
        "timed_on": emulation.timed_on(), "emulation": emulation.to_json(),
        "machine": machine_fingerprint(emulation.threads, runtime).to_json(), "preprocess": preprocess,
        "timing": ("in place: mean thread CPU time x the quota's measured wall/CPU factor" if emulation.uses_quota
                   else "in place: median wall time over forwards, each unit to the end of its GPU kernels"
                   if sync is not None
                   else f"in place: median {_TIMED_ON.get(emulation.clock, 'wall time')} over forwards"),
        "quick": quick, "seconds": round(time.perf_counter() - t_begin, 1),
        "exits": [{"exit": ep.exit, "after_trunk_units": ep.after_trunk_units, "num_units": ep.num_units}
                  for ep in chain.exit_points],
        "units": records,
    }


def _time_preprocess(chain: MultiExitChain, quick: bool) -> dict[str, Any]:
    """The model's input preprocessing (uint8 pixels of one input to the model's input) on the wall clock: its
    median over calls, ms. Timed only for a machine profiled as it is; an emulated role's preprocessing is priced
    by the role's fitted predictor (its timing follows the emulation's clock)."""
    from edgent.model.preprocess import default_preprocess, get_preprocess

    name = default_preprocess(chain.name)
    fn = get_preprocess(name)
    pixels = torch.randint(0, 256, (1, *chain.input_shape), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    fn(pixels)
    ms = []
    for _ in range(20 if quick else 100):
        t = time.perf_counter()
        fn(pixels)
        ms.append((time.perf_counter() - t) * 1e3)
    return {"name": name, "numel": int(pixels.numel()), "ms": float(np.median(ms)), "clock": "wall"}


def _record(exit: int, info: UnitInfo, trunk: bool, st: TimingStats, emulation: DeviceEmulation) -> dict[str, Any]:
    return {"exit": exit, "index": info.index, "name": info.name, "trunk": trunk, "kind": info.kind,
            "ms": st.median_ms * emulation.slowdown, "measured_ms": st.median_ms, "stats": st.to_json(),
            "flops": info.flops, "params": info.params,
            "input_bytes": _numel(info.input_shape) * 4, "output_bytes": info.output_bytes, "unit": info.to_json()}


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


@dataclass
class ModelProfile:
    """A measured profile: ``unit_ms[(exit, index)]`` is the role's time (ms, emulated slowdown included) of
    unit ``index`` of the sub-model to ``exit``, for every exit and unit (trunk units repeated per exit)."""

    model: str
    role: str
    emulation: DeviceEmulation
    unit_ms: dict[tuple[int, int], float]
    units: dict[tuple[int, int], UnitInfo] = field(default_factory=dict)
    num_units: dict[int, int] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: tuple[int, int]) -> float:
        return self.unit_ms[key]

    def part_ms(self, exit: int, start: int, stop: int) -> float:
        """Sum of the measured unit times of units ``[start, stop)`` of exit ``exit`` (ms)."""
        return sum(self.unit_ms[(exit, i)] for i in range(start, stop))


def save_profile(doc: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def profile_from_json(doc: dict[str, Any]) -> ModelProfile:
    """A :class:`ModelProfile` from a profile document."""
    from edgent.model.describe import unit_from_json

    if doc.get("format") != PROFILE_FORMAT:
        raise DataError(f"not an edgent profile (format {doc.get('format')!r}, expected {PROFILE_FORMAT!r})")
    trunk = {r["index"]: r for r in doc["units"] if r["trunk"]}
    unit_ms: dict[tuple[int, int], float] = {}
    units: dict[tuple[int, int], UnitInfo] = {}
    num_units: dict[int, int] = {}
    for ep in doc["exits"]:
        e, after = int(ep["exit"]), int(ep["after_trunk_units"])
        num_units[e] = int(ep["num_units"])
        for i in range(after):
            unit_ms[(e, i)] = float(trunk[i]["ms"])
            units[(e, i)] = unit_from_json(trunk[i]["unit"])
    for r in doc["units"]:
        if not r["trunk"]:
            unit_ms[(int(r["exit"]), int(r["index"]))] = float(r["ms"])
            units[(int(r["exit"]), int(r["index"]))] = unit_from_json(r["unit"])
    missing = [(e, i) for e, n in num_units.items() for i in range(n) if (e, i) not in unit_ms]
    if missing:
        raise DataError(f"profile of {doc.get('model')} lacks units {missing[:5]}")
    return ModelProfile(doc["model"], doc["role"], DeviceEmulation.from_json(doc["emulation"]), unit_ms, units,
                        num_units, doc)


def load_profile(path: str | Path) -> ModelProfile:
    """Read a profile written by ``edgent profile --model M --role R --out FILE``."""
    doc = read_json_file(path, "profile", "make it with `edgent profile --model M --role R`")
    try:
        return profile_from_json(doc)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"profile {path} is malformed: {exc}") from exc


def measure_unit_ms(chain: Any, repeats: int = 7) -> tuple[list[list[float]], list[list[float]]]:
    """Median time (ms, batch 1, this CPU, current torch threads) of every unit of every exit's sub-model.
    Trunk units are timed once and shared between exits. Returns per exit the unit times (twice: device layout and
    edge layout are the same measurement)."""
    import torch

    def timed(unit: Any, x: Any) -> tuple[float, Any]:
        with torch.no_grad():
            out = unit(x)
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                unit(x)
                ts.append((time.perf_counter() - t) * 1e3)
        return float(np.median(ts)), out

    x = torch.randn(1, *chain.input_shape)
    trunk_ms: list[float] = []
    trunk_in: list[Any] = []
    h = x
    for unit in chain.trunk:
        trunk_in.append(h)
        ms, h = timed(unit, h)
        trunk_ms.append(ms)
    per_exit = []
    for ep in chain.exit_points:
        times = trunk_ms[:ep.after_trunk_units]
        units = chain.units(ep.exit)[ep.after_trunk_units:]
        h = x
        with torch.no_grad():
            for unit in chain.trunk[:ep.after_trunk_units]:
                h = unit(h)
        for unit in units:
            ms, h = timed(unit, h)
            times = times + [ms]
        per_exit.append(times)
    return per_exit, per_exit
