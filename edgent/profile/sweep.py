"""The synthetic-layer sweep: training data for the latency regressions.

Every layer kind the zoo and torchvision's classic CNNs use is built over wide ranges of its parameters
(random draws from a fixed seed: convolutions incl. depthwise and grouped with kernels 1-11 and strides 1-2 on
2x2..224x224 maps with 3..1024 channels, fully connected up to 25088x4096, pooling incl. adaptive/global,
LRN, batch norm, ReLU/ReLU6 and other activations, dropout, element-wise add/mul, cat, flatten, identity) and
timed at batch 1 on this host with the role's thread count. The sweep also measures:

- model loading time against model size (safetensors files written and loaded with
  :func:`edgent.model.weights.load_weights`);
- the constant overheads of calling a multi-layer unit and a ``run_device``/``run_edge`` part;
- for a role with a CPU quota, the quota's factor from CPU time to wall time (``quota_factor``), measured on
  a subset of the sweep layers run under the quota (:func:`calibrate_quota`).

Cases are timed in interleaved rounds over chunks of :data:`SWEEP_CHUNK` cases
(:func:`edgent.profile.timing.time_interleaved`). The sweep itself runs without the quota (a quota of a
fraction ``q`` would make it ``1/q`` times slower); predictors multiply by ``quota_factor``. Per-call times are
on the role's clock (:func:`sweep_clock`): for a role slowed on a CPU clock (the device role) that clock, the
one its slowdown multiplies; for one thread under a quota the thread's CPU time (``time.thread_time``), since
a quota turns CPU time into wall time at a fixed rate and CPU time does not count the waits for a core that a
busy host adds to wall time; else wall time. Under a quota the work runs in slices separated by idle gaps, and
on a virtual machine work after a gap runs on cold caches; so for such a role each timed call follows an idle
gap (:func:`sweep_before`).
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import fx, nn

from edgent.jsonio import read_json_file
from edgent.errors import DataError
from edgent.model.describe import LayerInfo, describe_layers
from edgent.profile.throttle import DeviceEmulation, shortest_period_us
from edgent.profile.timing import clock_name, idle_gap, run_window, time_interleaved, time_per_call

SWEEP_FORMAT = "edgent-sweep"
#: Sweep cases timed together in interleaved rounds (all of them built at once: this bounds the memory).
SWEEP_CHUNK = 40
MAX_ELEMENTS = 3_300_000  # 64 x 224 x 224: the largest activation of the ImageNet CNNs
MAX_CONV_FLOPS = 4.0e9    # about VGG-11's largest convolution
SPATIAL = [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 160, 224]


@dataclass
class SweepCase:
    """One synthetic layer: ``build()`` makes it (module and input) and returns its :class:`LayerInfo` and a
    callable that runs it once. Built lazily, one at a time, to keep memory small."""

    label: str
    build: Callable[[], tuple[LayerInfo, Callable[[], Any]]]


def _loguniform_int(rng: np.random.Generator, lo: float, hi: float) -> int:
    return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))


def _pick_spatial(rng: np.random.Generator, channels: int, lo: int = 1) -> int:
    options = [s for s in SPATIAL if s >= lo and channels * s * s <= MAX_ELEMENTS]
    return int(rng.choice(options)) if options else lo


def _module_case(make: Callable[[], nn.Module], shape: tuple[int, ...], label: str, seed: int = 0) -> SweepCase:
    def build():
        torch.manual_seed(seed)
        module = make().eval()
        x = torch.randn(1, *shape)
        if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):  # non-trivial running statistics
            with torch.no_grad():
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
        layers = describe_layers(module, x)
        if len(layers) != 1:
            raise DataError(f"sweep case {label}: expected one layer, described {len(layers)}")

        def fn(m=module, x=x):
            return m(x)

        return layers[0], fn

    return SweepCase(label, build)


def _function_case(kind: str, shape: tuple[int, ...], out: tuple[int, ...], op: Callable, label: str) -> SweepCase:
    def build():
        a, b = torch.randn(1, *shape), torch.randn(1, *shape)
        inputs = 1 if kind == "flatten" else 2
        return LayerInfo(kind, shape, out, detail=f"inputs={inputs}"), (lambda: op(a, b))

    return SweepCase(label, build)


def _conv_cases(rng: np.random.Generator, n: int) -> Iterator[SweepCase]:
    made = 0
    while made < n:
        kind = rng.random()
        k = int(rng.choice([1, 3, 3, 3, 5, 7, 11], p=[0.25, 0.2, 0.15, 0.15, 0.12, 0.08, 0.05]))
        stride = int(rng.choice([1, 2, 4], p=[0.65, 0.3, 0.05])) if k > 1 else int(rng.choice([1, 2], p=[0.8, 0.2]))
        if kind < 0.2:  # depthwise (MobileNet)
            c = _loguniform_int(rng, 8, 1024)
            c_in, c_out, groups = c, c, c
            k = int(rng.choice([3, 5]))
        else:
            c_in = 3 if rng.random() < 0.1 else _loguniform_int(rng, 4, 1024)
            c_out = max(4, min(2048, int(round(c_in * math.exp(rng.uniform(math.log(0.2), math.log(8)))))))
            groups = 1
            if kind < 0.27:
                groups = int(rng.choice([2, 4, 8]))
                c_in = max(groups, c_in // groups * groups)
                c_out = max(groups, c_out // groups * groups)
        h = _pick_spatial(rng, max(c_in, c_out), lo=max(2, k // 2 + 1))
        out_h = (h + 2 * (k // 2) - k) // stride + 1
        if out_h < 1:
            continue
        flops = 2 * c_in // groups * c_out * k * k * out_h * out_h
        if flops > MAX_CONV_FLOPS or c_out * out_h * out_h > MAX_ELEMENTS:
            continue
        bias = bool(rng.random() < 0.8)
        yield _module_case(lambda a=(c_in, c_out, k, stride, k // 2, 1, groups, bias): nn.Conv2d(*a), (c_in, h, h),
                           f"conv {c_in}->{c_out} k{k} s{stride} g{groups} {h}x{h}")
        made += 1


def _fc_cases(rng: np.random.Generator, n: int) -> Iterator[SweepCase]:
    for i in range(n):
        f_in = _loguniform_int(rng, 16, 25088)
        f_out = _loguniform_int(rng, 10, 4096)
        if i < 3:  # the classic classifiers' big layers
            f_in, f_out = [(25088, 4096), (4096, 4096), (9216, 4096)][i]
        yield _module_case(lambda a=(f_in, f_out): nn.Linear(*a), (f_in,), f"fc {f_in}->{f_out}")


def _activation_shape(rng: np.random.Generator) -> tuple[int, ...]:
    if rng.random() < 0.2:
        return (_loguniform_int(rng, 10, 25088),)
    c = _loguniform_int(rng, 3, 1024)
    h = _pick_spatial(rng, c)
    return (c, h, h)


def _elementwise_cases(rng: np.random.Generator, n: int) -> Iterator[SweepCase]:
    makers: dict[str, list[Callable[[tuple[int, ...]], nn.Module]]] = {
        "relu": [lambda s: nn.ReLU(), lambda s: nn.ReLU(inplace=True), lambda s: nn.ReLU6(inplace=True),
                 lambda s: nn.ReLU6()],
        "act": [lambda s: nn.SiLU(), lambda s: nn.Hardswish(), lambda s: nn.Sigmoid(), lambda s: nn.GELU(),
                lambda s: nn.Tanh(), lambda s: nn.Hardsigmoid()],
        "dropout": [lambda s: nn.Dropout(0.5)],
        "identity": [lambda s: nn.Identity()],
        "bn": [lambda s: nn.BatchNorm2d(s[0]) if len(s) == 3 else nn.BatchNorm1d(s[0])],
        "lrn": [lambda s: nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0), lambda s: nn.LocalResponseNorm(3)],
    }
    for kind, options in makers.items():
        for i in range(n):
            shape = _activation_shape(rng)
            if kind == "lrn" and len(shape) == 1:
                shape = (shape[0] // 64 + 3, 8, 8)
            make = options[i % len(options)]
            yield _module_case(lambda make=make, shape=shape: make(shape), shape, f"{kind} #{i % len(options)} {shape}")
    # Functions of traced graphs: flatten, add, mul, cat.
    for i in range(n):
        shape = _activation_shape(rng)
        n_el = int(np.prod(shape))
        yield _function_case("add", shape, shape, torch.add, f"add {shape}")
        yield _function_case("mul", shape, shape, torch.mul, f"mul {shape}")
        yield _function_case("flatten", shape, (n_el,), lambda a, b: torch.flatten(a, 1), f"flatten {shape}")
        if len(shape) == 3:
            yield _function_case("cat", shape, (2 * shape[0], *shape[1:]), lambda a, b: torch.cat([a, b], 1),
                                 f"cat {shape}")


def _pool_cases(rng: np.random.Generator, n: int) -> Iterator[SweepCase]:
    for i in range(n):
        c = _loguniform_int(rng, 3, 1024)
        h = _pick_spatial(rng, c, lo=2)
        choice = (0, 3, 4, 1, 5, 2)[i % 6]  # max, avg, global avg, max, adaptive avg, avg
        if choice == 4:
            make: Callable[[], nn.Module] = lambda: nn.AdaptiveAvgPool2d(1)  # noqa: E731
            what = "global avgpool"
        elif choice == 5:
            o = int(rng.choice([1, 2, 4, 6, 7]))
            make = lambda o=o: nn.AdaptiveAvgPool2d(o)  # noqa: E731
            what = f"adaptive avgpool {o}"
        else:
            k = int(rng.choice([2, 3]))
            s = int(rng.choice([1, 2])) if k == 3 else 2
            pad = k // 2 if k == 3 else 0
            h = max(h, k)
            cls = nn.MaxPool2d if choice < 3 else nn.AvgPool2d
            make = lambda cls=cls, a=(k, s, pad): cls(*a)  # noqa: E731
            what = f"{cls.__name__} k{k} s{s}"
        yield _module_case(make, (c, h, h), f"{what} {c}x{h}x{h}")


def sweep_cases(scale: float = 1.0, seed: int = 0) -> list[SweepCase]:
    """All synthetic layers of the sweep; ``scale`` multiplies the number of draws per kind (1 = full)."""
    rng = np.random.default_rng(seed)
    count = lambda n: max(3, int(round(n * scale)))  # noqa: E731
    cases: list[SweepCase] = []
    cases += list(_conv_cases(rng, count(260)))
    cases += list(_fc_cases(rng, count(40)))
    cases += list(_pool_cases(rng, count(60)))
    cases += list(_elementwise_cases(rng, count(24)))
    return cases


# ---------------------------------------------------------------------------------------------------- overheads
def measure_overheads(clock: str | None = None) -> dict[str, float]:
    """Constant overheads (ms): calling a traced multi-layer unit, and a one-unit ``run_device`` part,
    beyond the time of the layers inside."""
    from edgent.model.chain import MultiExitChain

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Identity(), nn.Identity()

        def forward(self, x):
            return self.b(self.a(x))

    x = torch.randn(1, 8)
    ident = nn.Identity()
    gm = fx.symbolic_trace(Two())
    chain = MultiExitChain("overhead-probe", [("id", nn.Identity())], [], (8,), 8).eval()
    with torch.no_grad():
        t_id = time_per_call(lambda: ident(x), reps=400, min_total_s=0.05, clock=clock).median_ms
        t_gm = time_per_call(lambda: gm(x), reps=400, min_total_s=0.05, clock=clock).median_ms
        t_part = time_per_call(lambda: chain.run_device(x, None, 1), reps=400, min_total_s=0.05, clock=clock).median_ms
    return {"identity_ms": t_id, "unit_overhead_ms": max(t_gm - 2 * t_id, 0.0),
            "part_overhead_ms": max(t_part - t_id, 0.0)}


def measure_loading(sizes_mb: tuple[float, ...] = (0.25, 1, 4, 16, 64), reps: int = 3) -> list[dict[str, float]]:
    """Model loading time (ms, median of ``reps``) against the weights' size: a stack of linear layers of the
    given total size is saved as safetensors and loaded into a fresh model with ``load_weights``."""
    from edgent.model.weights import load_weights, save_weights

    out = []
    with tempfile.TemporaryDirectory(prefix="edgent-load-") as tmp:
        for mb in sizes_mb:
            width = max(8, int(math.sqrt(mb * 1e6 / 4 / 4)))
            model = nn.Sequential(*[nn.Linear(width, width) for _ in range(4)])
            path = Path(tmp) / f"m{mb}.safetensors"
            save_weights(model, path)
            size = path.stat().st_size
            times = []
            for _ in range(reps):
                fresh = nn.Sequential(*[nn.Linear(width, width) for _ in range(4)])
                t0 = time.perf_counter()
                load_weights(fresh, path)
                times.append((time.perf_counter() - t0) * 1e3)
            out.append({"size_bytes": int(size), "ms": float(np.median(times))})
    return out


# ---------------------------------------------------------------------------------------------------- chains
class _FlattenFC(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.flatten(x, 1))


def synthetic_chain(rng: np.random.Generator, index: int):
    """A random CNN-like chain (conv/relu/pool/lrn/bn/dropout units, then a flatten+fc head) as a
    :class:`MultiExitChain`, for measuring what running layers back to back costs beyond running them alone."""
    from edgent.model.chain import MultiExitChain

    c = int(rng.choice([3, 16, 32, 64]))
    h = int(rng.choice([8, 16, 32, 56]))
    c0, h0 = c, h
    units: list[tuple[str, nn.Module]] = []
    for i in range(int(rng.integers(4, 12))):
        r = rng.random()
        if r < 0.35 or not units:
            c_out = int(min(256, max(8, c * float(rng.choice([1, 1.5, 2])))) if c > 3 else rng.choice([32, 64]))
            k = int(rng.choice([1, 3, 3, 5]))
            units.append((f"conv{i}", nn.Conv2d(c, c_out, k, padding=k // 2)))
            c = c_out
        elif r < 0.6:
            units.append((f"relu{i}", nn.ReLU()))
        elif r < 0.75 and h >= 4:
            units.append((f"pool{i}", nn.MaxPool2d(3, 2, 1)))
            h = (h + 1) // 2
        elif r < 0.85:
            units.append((f"lrn{i}", nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)))
        elif r < 0.93:
            units.append((f"bn{i}", nn.BatchNorm2d(c)))
        else:
            units.append((f"dropout{i}", nn.Dropout(0.5)))
    units.append(("fc", _FlattenFC(c * h * h, int(rng.choice([10, 256, 512])))))
    return MultiExitChain(f"synthetic-{index}", units, [], (c0, h0, h0), 10).eval()


#: idle time before each timed whole call (chains, preprocessing): a part runs once per request, after the
#: device or the edge has been idle (the runtime's requests come at least 50 ms apart in the benchmarks)
CALL_IDLE_S = 0.05


def after_idle_timing(quick: bool) -> dict[str, Any]:
    """``time_interleaved`` settings for timing whole calls as the runtime makes them: one call after
    :data:`CALL_IDLE_S` of idle, in a few rounds."""
    return {"before": lambda: idle_gap(CALL_IDLE_S), "rounds": 4 if quick else 8, "calls": 1}


def measure_chains(n: int = 24, quick: bool = False, seed: int = 0, clock: str | None = None
                   ) -> list[dict[str, Any]]:
    """Device and edge parts of ``n`` random chains, each timed as one ``run_device``/``run_edge`` call after an
    idle spell (:data:`CALL_IDLE_S`), with their unit descriptions: the data for the predictor's chain
    correction, whose constant term is then what a cold call costs beyond its layers (run with the role's
    threads, unthrottled; see :func:`edgent.latency.fit.fit_predictors` for roles with a quota)."""
    from edgent.model.describe import describe_chain

    rng = np.random.default_rng(seed + 7)
    out: list[dict[str, Any]] = []
    fns: list[Callable[[], Any]] = []
    parts: list[dict[str, Any]] = []
    with torch.no_grad():
        for i in range(n):
            chain = synthetic_chain(rng, i)
            units = describe_chain(chain)
            x = torch.randn(1, *chain.input_shape)
            n_units = len(units)
            for p in sorted({n_units, max(1, n_units // 2), int(rng.integers(1, n_units + 1))}):
                fns.append(lambda c=chain, x=x, p=p: c.run_device(x, None, p))
                parts.append({"side": "device", "units": [u.to_json() for u in units[:p]]})
                if p < n_units:
                    t = chain.run_device(x, None, p)
                    fns.append(lambda c=chain, t=t, p=p: c.run_edge(t, None, p))
                    parts.append({"side": "edge", "units": [u.to_json() for u in units[p:]]})
        for part, st in zip(parts, time_interleaved(fns, throttled=False, quick=quick, clock=clock,
                                                    **after_idle_timing(quick))):
            out.append({**part, "ms": st.median_ms})
    return out


#: input shapes the preprocessing is timed at
PREPROCESS_SHAPES: tuple[tuple[int, int, int], ...] = ((3, 32, 32), (3, 64, 64), (3, 128, 128), (3, 224, 224))


def measure_preprocess(quick: bool = False, clock: str | None = None) -> list[dict[str, Any]]:
    """Every input preprocessing of :mod:`edgent.model.preprocess` on one uint8 input of each of
    :data:`PREPROCESS_SHAPES`, timed as the runtime calls it: once per request, after an idle spell. The real
    function costs far more than its elementwise passes (conversions, small-tensor dispatch, a cold start)."""
    from edgent.model.preprocess import PREPROCESSORS

    gen = torch.Generator().manual_seed(3)
    fns, rows = [], []
    for name, fn in sorted(PREPROCESSORS.items()):
        for shape in PREPROCESS_SHAPES:
            x = torch.randint(0, 256, (1, *shape), dtype=torch.uint8, generator=gen)
            fns.append(lambda fn=fn, x=x: fn(x))
            rows.append({"name": name, "shape": list(shape), "numel": math.prod(shape)})
    with torch.inference_mode():
        stats = time_interleaved(fns, throttled=False, quick=quick, clock=clock, **after_idle_timing(quick))
    return [{**r, "ms": st.median_ms} for r, st in zip(rows, stats)]


# ---------------------------------------------------------------------------------------------------- the sweep
def run_sweep(role: str, emulation: DeviceEmulation, scale: float = 1.0, quick: bool = False, seed: int = 0,
              calibrate_layers: int = 32, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every sweep case with the role's threads (no quota), then the overheads, model loading and (for a
    role with a quota) the quota's slowdown. Returns the JSON-able sweep document."""
    cases = sweep_cases(scale, seed)
    say = progress or (lambda s: None)
    clock = sweep_clock(emulation)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(emulation.threads)
    t_begin = time.perf_counter()
    records = []
    before = sweep_before(emulation)
    # after an idle gap every call is as cold as the first: fewer calls suffice (and each costs a gap)
    rounds = {"rounds": 4 if quick else 8, "calls": 3} if before is not None else {}
    try:
        with torch.no_grad():
            for start in range(0, len(cases), SWEEP_CHUNK):  # interleaved rounds over a chunk of cases
                chunk = cases[start:start + SWEEP_CHUNK]
                built = [case.build() for case in chunk]
                stats = time_interleaved([fn for _, fn in built], throttled=False, quick=quick, clock=clock,
                                         before=before, **rounds)
                for case, (layer, _), st in zip(chunk, built, stats):
                    records.append({"label": case.label, "layer": asdict(layer), "ms": st.median_ms,
                                    "stats": st.to_json()})
                del built
                say(f"sweep {role}: {start + len(chunk)}/{len(cases)} ({chunk[-1].label}: "
                    f"{stats[-1].median_ms:.3f} ms)")
            overheads = measure_overheads(clock)
            # the chain correction is fitted for roles without a quota only (edgent.latency.fit)
            chains = [] if emulation.cpu_quota else measure_chains(8 if quick else 24, quick, seed, clock)
            say(f"sweep {role}: preprocessing")
            preprocess = measure_preprocess(quick, clock)
            loading = measure_loading((0.25, 1, 4) if quick else (0.25, 1, 4, 16, 64))
        calibration = None
        if emulation.cpu_quota:
            calibration = calibrate_quota(cases, emulation, calibrate_layers, quick, seed, clock)
            say(f"sweep {role}: quota factor {calibration['quota_factor']:.2f}")
    finally:
        torch.set_num_threads(old_threads)
    return {"format": SWEEP_FORMAT, "role": role, "clock": clock, "emulation": emulation.to_json(),
            "measured_without_quota": True, "seed": seed, "scale": scale, "quick": quick,
            "seconds": round(time.perf_counter() - t_begin, 1), "records": records, "overheads": overheads,
            "chains": chains, "preprocess": preprocess,
            "loading": loading, "quota_calibration": calibration}


def sweep_before(emulation: DeviceEmulation) -> Callable[[], None] | None:
    """What runs (untimed) before each timed sweep call: for a role under a CPU quota an idle gap as long as
    the quota's throttled stretch (capped at 4 ms: longer gaps measured the same), since under the quota
    every slice of work starts after one (:func:`edgent.profile.timing.idle_gap`); else nothing."""
    if not emulation.cpu_quota:
        return None
    period_us = emulation.period_us or shortest_period_us(emulation.cpu_quota)
    gap_s = min(0.004, period_us * (1.0 - float(emulation.cpu_quota)) / 1e6)
    return lambda: idle_gap(gap_s)


def sweep_clock(emulation: DeviceEmulation) -> str:
    """The clock of the sweep's per-call times: the role's own CPU clock for a role slowed on one, thread CPU
    time for one thread under a quota, else the default (:func:`edgent.profile.timing.clock_name`, wall
    time); see :attr:`~edgent.profile.throttle.DeviceEmulation.timing_clock`."""
    return emulation.timing_clock or clock_name()


def calibrate_quota(cases: list[SweepCase], emulation: DeviceEmulation, n: int = 16, quick: bool = False,
                    seed: int = 0, clock: str | None = None) -> dict[str, Any]:
    """The quota's factor from CPU time to wall time: ``n`` sweep layers (spread over sizes) run back to back
    under the quota for a window each (in interleaved rounds), with the wall time and the process's CPU time
    of every window; the factor is total wall over total CPU (1/fraction if the kernel is exact).

    For the record, each layer's throttled window mean is also set against its sweep figure (the CPU time
    after an idle gap, :func:`sweep_before`): single layers repeated back to back keep their data warm within
    a slice, so these ratios scatter around the factor; the chain correction (fitted on chains timed under the
    quota) carries what throttling adds to layers running one after the other."""
    rng = np.random.default_rng(seed + 1)
    idx = sorted(rng.choice(len(cases), size=min(n, len(cases)), replace=False).tolist())
    window = 0.03 if quick else 0.06
    rounds = 3 if quick else 6
    with torch.no_grad():
        built = [cases[i].build()[1] for i in idx]
        old = torch.get_num_threads()
        torch.set_num_threads(emulation.threads)
        try:
            free = time_interleaved(built, throttled=False, quick=quick, clock=clock, before=sweep_before(emulation),
                                    rounds=rounds, calls=3)
        finally:
            torch.set_num_threads(old)
        wall = [0.0] * len(built)
        cpu = [0.0] * len(built)
        calls = [0] * len(built)
        with emulation.real_part():
            for fn in built:
                fn()
            for _ in range(rounds):
                for i, fn in enumerate(built):
                    c0 = time.process_time()
                    el, n = run_window(fn, window)
                    wall[i] += el
                    cpu[i] += time.process_time() - c0
                    calls[i] += n
    factor = sum(wall) / max(sum(cpu), 1e-9)
    rows = [{"label": cases[i].label, "free_ms": f.median_ms, "quota_ms": w / c * 1e3,
             "wall_over_cpu": w / max(cp, 1e-9)} for i, f, w, cp, c in zip(idx, free, wall, cpu, calls)]
    ratios = [r["quota_ms"] / r["free_ms"] for r in rows if r["free_ms"] > 0]
    return {"quota_factor": float(factor), "nominal_factor": emulation.real_quota_factor,
            "ratios_p10_p90": [float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))],
            "layers": rows,
            "method": "total wall time / total process CPU time of {} layers run under the quota in interleaved "
                      "windows of >= {:.0f} ms ({} rounds); per layer, quota_ms / free_ms sets the throttled "
                      "window mean against the sweep figure ({} clock after an idle gap)".format(
                          len(rows), window * 1e3, rounds, clock or clock_name())}


def save_sweep(doc: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc) + "\n")
    return path


def load_sweep(path: str | Path) -> dict[str, Any]:
    """Read a sweep written by ``edgent profile --sweep``."""
    doc = read_json_file(path, "sweep file", "make one with `edgent profile --sweep`")
    if doc.get("format") != SWEEP_FORMAT:
        raise DataError(f"{path} is not an edgent sweep (format {doc.get('format')!r})")
    return doc
