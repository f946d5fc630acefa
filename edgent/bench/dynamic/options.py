"""The options of ``edgent bench dynamic`` as one typed object (the command line builds it; nothing below the
command sees an ``argparse.Namespace``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgent.bench.record import BenchOptions


@dataclass(frozen=True)
class DynamicOptions:
    """See ``edgent bench dynamic --help`` for each option; rates in bit/s, times with their unit in the name."""

    traces: str
    scale: float = 1.0
    model: str = "alexnet-cifar10"
    deadline_ms: float = 300.0
    period_ms: float = 500.0
    rtt_ms: float = 20.0
    warmup_s: float = 5.0
    table_source: str = "auto"
    device_slowdown: float = 10.0
    accuracies: list[float] | None = None
    codecs: tuple[str, ...] = ("float32",)
    #: further codecs every method may choose (``edgent.plan.sources.with_codecs``): "none", "card" or names
    codec_variants: str = "none"
    train_every: int = 2
    max_files: int = 0
    bin_width: float = 0.1
    last_edges: tuple[float, ...] = ()
    met_target: float = 0.995
    smooth_bins: int = 1
    w_min: float = 1.0
    hysteresis: float = 0.5
    name: str = ""
    testbed_seconds: float = 0.0
    emulate: bool = False
    common: BenchOptions = field(default_factory=BenchOptions)

    @property
    def result_name(self) -> str:
        """The results' file stem: ``--name`` or ``dynamic-<traces folder>``."""
        return self.name or f"dynamic-{Path(self.traces).name}"
