"""The options of ``edgent bench fleet`` as a typed object, and the methods it compares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgent.errors import ConfigError

#: method -> (agent policy, load-aware, edge batches)
METHODS: dict[str, tuple[str, bool, bool]] = {
    "edgent-load-blind": ("edgent", False, False),  # the paper: plans as if the edge were idle and dedicated
    "edgent-load-aware": ("edgent", True, False),
    "edgent-load-aware-batching": ("edgent", True, True),
    "edge-only": ("edge-only", False, False),
    "device-only": ("rightsize", False, False),  # the most accurate on-device exit that fits
}


@dataclass(frozen=True)
class FleetOptions:
    """How the fleet runs (see :mod:`edgent.bench.fleet`).

    ``devices``: the fleet sizes N; ``rate_per_s``: Poisson arrivals per device; ``duration_s`` of each run,
    the first ``warmup_s`` of which are not counted; ``device_factor``: each device is x this slow on its
    compute thread's CPU time; ``link_rate_bps``/``link_delay_ms``: each device's emulated link; the edge
    (``backend``, ``edge_threads`` worker threads, ``edge_torch_threads``, emulated ``edge_factor`` x slower on
    its computations' thread CPU time, 1: this host's speed) batches with ``batch_window_ms`` and ``max_batch``
    where a method says so. ``device_profile`` / ``edge_profile``: measured profiles (``edgent profile --model M
    --role ...``) the latency tables take instead of the fitted latency models (None: the model's own, else the
    fitted ones; :func:`edgent.plan.sources.table_for_model`). ``capacity``: also measure each edge's capacity,
    the largest fleet in a closed loop (every device sends its next request as soon as the previous is answered,
    the edge-only configuration, no deadline), one by one and batching; ``methods`` may then be empty.
    ``records_dir``: where each device writes its agent's record per request (one JSON line each, in
    ``N{n}-{method}-device{i}.jsonl``; None: no records)."""

    model: str = "alexnet-cifar10"
    devices: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    methods: tuple[str, ...] = tuple(METHODS)
    rate_per_s: float = 8.0
    duration_s: float = 20.0
    warmup_s: float = 4.0
    deadline_ms: float = 100.0
    margin: float = 0.15
    device_factor: float = 10.0
    link_rate_bps: float = 20e6
    link_delay_ms: float = 10.0
    backend: str = "local"
    edge_threads: int = 1
    edge_torch_threads: int = 1
    edge_factor: float = 1.0
    batch_window_ms: float = 5.0
    max_batch: int = 32
    seed: int = 0
    device_profile: str | None = None
    edge_profile: str | None = None
    capacity: bool = False
    records_dir: Path | None = None
    out_dir: Path = field(default=Path("benchmarks/results"))

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ConfigError(f"unknown method(s) {', '.join(unknown)}; methods: {', '.join(METHODS)}")
        if not self.methods and not self.capacity:
            raise ConfigError("nothing to run: give at least one method, or ask for the capacity test (--capacity)")
        for role, path in (("device", self.device_profile), ("edge", self.edge_profile)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"--{role}-profile {path} does not exist; measure one with `edgent profile --model "
                                  f"{self.model} --role {role} --out FILE`, or drop the option")
        if not self.devices or any(n < 1 for n in self.devices):
            raise ConfigError(f"fleet sizes must be integers >= 1, got {self.devices!r}")
        if not self.duration_s > self.warmup_s >= 0:
            raise ConfigError("the run must outlast its warm-up: need duration_s > warmup_s >= 0")
        if not self.edge_factor >= 1.0:
            raise ConfigError(f"edge_factor must be >= 1 (1: this host's speed), got {self.edge_factor!r}")
        for name in ("rate_per_s", "deadline_ms", "device_factor", "link_rate_bps"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
