"""What the demo runs on: the bandwidth trace, the accuracies, the latency tables and the configuration maps.

- The built-in trace (:func:`default_trace`) is a seeded synthetic piecewise-stationary trace in the paper's
  range (about 0.05-2 Mbit/s, log-normal noise within each state); ``--trace FILE`` loads any file
  :func:`edgent.adapt.traces.load_trace` reads, optionally scaled.
- The maps are built here, in about a second, from *other* traces than the one replayed: seeded synthetic traces
  of random piecewise states in the same range and, with ``--trace FILE``, the other trace files of FILE's folder
  (same ``--scale``). The replayed trace is never used to build the maps.
- Latency tables come from the fitted latency models (``edgent.latency.default_predictor("device"|"edge")``):
  the device is the "device" role of :mod:`edgent.profile.throttle` (1 thread, 10% CPU quota, x7 emulated
  slowdown), which :class:`edgent.profile.device.DeviceThrottle` reproduces while the demo runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edgent.adapt.config_map import Candidates, ConfigurationMap, MapReward, StateGrid, build_config_map
from edgent.adapt.detectors import make_detector
from edgent.adapt.traces import BandwidthTrace, load_trace, synthetic_trace
from edgent.errors import ConfigError, DataError
from edgent.plan.table import LatencyTable

#: the built-in trace: (mean Mbit/s, seconds) per state; the paper's range, with states where the input's upload
#: alone breaks a 200 ms deadline (0.06-0.09 Mbit/s) and states where the edge is clearly best
DEFAULT_STATES_MBPS_S: tuple[tuple[float, int], ...] = (
    (1.2, 8), (0.07, 8), (0.5, 7), (0.12, 7), (2.0, 7), (0.06, 8), (0.3, 8), (0.09, 7),
)
DEFAULT_LOG_STD = 0.15


def default_trace(duration_s: float, seed: int = 0) -> BandwidthTrace:
    """The built-in trace: :data:`DEFAULT_STATES_MBPS_S` (repeated as needed) stretched or cut to
    ``duration_s``, one sample per second, seeded log-normal noise of std :data:`DEFAULT_LOG_STD` per state."""
    if not duration_s > 0:
        raise ConfigError(f"--duration must be > 0 s, got {duration_s}")
    total = sum(s for _, s in DEFAULT_STATES_MBPS_S)
    factor = max(duration_s / total, 0.15)
    means, lens = [], []
    for mbps, s in DEFAULT_STATES_MBPS_S:
        means.append(mbps * 1e6)
        lens.append(max(1, int(round(s * factor))))
    while sum(lens) < duration_s:  # --duration longer than the built-in cycle: repeat it
        means += means[: len(DEFAULT_STATES_MBPS_S)]
        lens += lens[: len(DEFAULT_STATES_MBPS_S)]
    syn = synthetic_trace(means, lens, DEFAULT_LOG_STD, 1.0, seed, name=f"built-in synthetic (seed {seed})")
    return syn.trace


def file_trace(path: str | Path, scale: float, duration_s: float, start_s: float = 0.0) -> BandwidthTrace:
    """``--trace FILE`` (any format :func:`load_trace` reads), times ``scale``, the window
    ``[start_s, start_s + duration_s)`` (shifted to start at 0)."""
    tr = load_trace(path)
    if scale != 1.0:
        tr = tr.scaled(scale)
    if start_s > 0 or tr.end_s > start_s + duration_s:
        if start_s >= tr.end_s:
            raise DataError(f"--trace-start {start_s} s is beyond the end of {path} ({tr.end_s:g} s)")
        tr = tr.sliced(start_s, min(tr.end_s, start_s + duration_s))
    return tr


def training_traces(seed: int, n_synthetic: int = 24, trace_file: str | Path | None = None,
                    scale: float = 1.0) -> tuple[list[BandwidthTrace], str]:
    """Traces to build the maps from (never the replayed one): synthetic traces of random states in
    0.04-2.5 Mbit/s (seeds ``seed + 1000 + i``), plus, when ``trace_file`` is given, every other trace file of
    its folder times ``scale``."""
    from edgent.adapt.training import synthetic_training_traces

    out = synthetic_training_traces(seed, n_synthetic)
    what = f"{n_synthetic} synthetic traces (random states 0.04-2.5 Mbit/s, seeds {seed + 1000}..)"
    if trace_file is not None:
        folder, own = Path(trace_file).resolve().parent, Path(trace_file).resolve()
        real, skipped = [], 0
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.resolve() == own or p.name.startswith("."):
                continue
            try:
                t = load_trace(p)
            except DataError:
                skipped += 1
                continue
            real.append(t.scaled(scale) if scale != 1.0 else t)
        out += real
        what += (f" + the {len(real)} other trace files of {folder}" + (f" x{scale:g}" if scale != 1.0 else "")
                 + (f" ({skipped} files there are not traces and were skipped)" if skipped else ""))
    return out, what


@dataclass
class Scenario:
    """Everything the configurators and the simulation share."""

    tables: list[LatencyTable]
    candidates: Candidates
    maps: dict[str, ConfigurationMap]
    accuracies: list[float]
    accuracy_source: str
    training: str
    map_build_s: float


def build_scenario(model: str, accuracies: Sequence[float], accuracy_source: str, deadline_ms: float,
                   rtt_ms: float, seed: int, codecs: Sequence[str] = ("float32",),
                   trace_file: str | Path | None = None, scale: float = 1.0, synthetic_only: bool = False,
                   period_s: float = 0.5, codec_variants: str = "none") -> Scenario:
    """Latency tables (fitted predictors; with ``codec_variants`` the further codecs of
    :func:`edgent.plan.sources.with_codecs` on the first), candidates, and the BOCPD and Page-Hinkley maps for
    ``deadline_ms``."""
    import time

    from edgent.plan.sources import table_for_model

    tables = [table_for_model(model, codec=c, accuracies=list(accuracies)) for c in codecs]
    if codec_variants != "none":
        from edgent.plan.sources import with_codecs

        tables[0] = with_codecs(tables[0], codec_variants if codec_variants == "card" else codec_variants.split(","))
    cands = Candidates(tables)
    train, what = training_traces(seed, trace_file=None if synthetic_only else trace_file, scale=scale)
    t0 = time.perf_counter()
    maps = {det: build_config_map(train, cands, deadline_ms, lambda det=det: make_detector(det), StateGrid(),
                                  MapReward(), period_s, rtt_ms, 2.0, {"detector": det, "built_by": "edgent demo"},
                                  smooth_bins=1)
            for det in ("bocpd", "page-hinkley")}
    return Scenario(tables, cands, maps, list(accuracies), accuracy_source, what, time.perf_counter() - t0)
