"""What ``edgent demo`` is asked to do (:class:`DemoOptions`) and what it has seen so far (:class:`RunState`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODEL = "alexnet-cifar10"


@dataclass
class DemoOptions:
    """The command's options (see ``edgent demo --help``)."""

    duration_s: float = 60.0
    deadline_ms: float = 300.0
    trace: str | None = None
    scale: float = 1.0
    trace_start_s: float = 0.0
    period_ms: float = 300.0
    rtt_ms: float = 20.0
    seed: int = 0
    emulate: bool = False
    out_dir: str | None = None
    accuracies: list[float] | None = None
    random_weights: bool = False
    synthetic_inputs: bool = False
    live: bool | None = None
    synthetic_map: bool = False
    port: int = 8470
    #: codecs the configurator may choose besides float32 (``edgent.plan.sources.with_codecs``)
    codecs: str = "card"


@dataclass
class RunState:
    """What the live view shows and the report plots, request by request."""

    t0: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    change_times_s: list[float] = field(default_factory=list)
    correct: int = 0
    labelled: int = 0
    met: int = 0
    fallbacks: int = 0
    card_acc_sum: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    probes: int = 0
    last_sample_bps: float | None = None
    edge_exit_note: str | None = None
    replay_note: str | None = None


@dataclass
class DemoContext:
    """What one demo run is made of, once set up: its options, the scenario (latency tables, accuracies, maps),
    the replayed trace, what the link, device and inputs were, and the messages said along the way. The report
    and the summary read it; nothing below the command line sees an ``argparse.Namespace``."""

    opts: DemoOptions
    scenario: Any
    trace: Any
    duration_s: float
    input_source: str = ""
    testbed_kind: str = "?"
    testbed_description: str = ""
    device_description: str = ""
    notes: list[str] = field(default_factory=list)
