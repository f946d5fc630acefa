"""The dynamic configurator: per request, the configuration the map holds for the current bandwidth state.

It owns an online change detector (BOCPD by default) fed with throughput samples (:meth:`observe`), and a
:class:`~edgent.adapt.config_map.ConfigurationMap`. Per request (:meth:`decide`, or calling the object):

1. the detector's state (mean and spread of log-throughput since the last change point) gives a map cell;
2. **hysteresis**: the configurator stays in its current cell while no change point has been detected and the
   state's mean stays within ``hysteresis`` bin widths of that cell's mean range (and its spread within
   ``hysteresis`` of that cell's spread range), so noise that nudges the running mean across a bin edge does not
   flip the configuration; a detected change point always re-reads the cell;
3. the cell's configuration is returned; when the map has none for the cell (a state the traces never showed),
   the static planner is asked instead, on the state's conservative rate ``exp(mean - z * std)``.

The runtime's device client calls it as ``configurator(bandwidth_bps, rtt_ms, edge_load) -> (exit, partition,
codec)``. ``bandwidth_bps`` is its current estimate: it is used only while the detector has seen no samples (or
when ``samples_from_calls`` is set, in which case each call's estimate is also fed to the detector as a sample);
``rtt_ms`` and ``edge_load`` (the edge's queueing delay in ms, or the runtime's load dict: :func:`edge_queue_ms`)
enter the fallback planning; the map itself was built for the traces' conditions (no edge queue).

With the runtime: after each request, feed its measured throughput sample, e.g.
``if result.bandwidth_sample_bps: configurator.observe(result.bandwidth_sample_bps)``; or build the configurator
with ``samples_from_calls=True`` to feed it the bandwidth estimate passed with each call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgent.adapt.bocpd import BandwidthState
from edgent.adapt.config_map import Candidates, Configuration, ConfigurationMap
from edgent.adapt.detectors import ChangeDetector, make_detector
from edgent.errors import ConfigError
from edgent.plan.load import wait_from_load


@dataclass(frozen=True)
class Decision:
    """One decision: the configuration, where it came from (``map``, ``fallback`` or ``no-samples``), the state
    and the cell it was read for."""

    config: Configuration
    source: str
    state: BandwidthState | None
    cell: int


class DynamicConfigurator:
    """Change detection + map lookup + hysteresis + static fallback (see the module docstring).

    Args:
        config_map: the offline map.
        candidates: the model's configurations and costs (for the static fallback); their model must be the map's.
        detector: an online detector; default: a fresh BOCPD.
        hysteresis: how far (in bin widths) the state may stray past its cell before the cell changes.
        fallback_z: standard deviations below the mean for the fallback's conservative rate.
        samples_from_calls: feed each call's ``bandwidth_bps`` to the detector as a throughput sample.
    """

    def __init__(self, config_map: ConfigurationMap, candidates: Candidates, detector: ChangeDetector | None = None,
                 hysteresis: float = 0.5, fallback_z: float = 1.0, samples_from_calls: bool = False) -> None:
        if candidates.model != config_map.model:
            raise ConfigError(f"the map is for {config_map.model!r} but the candidates are of {candidates.model!r}")
        if hysteresis < 0:
            raise ConfigError(f"hysteresis must be >= 0 bin widths, got {hysteresis}")
        self.map = config_map
        self.candidates = candidates
        self.detector = detector if detector is not None else make_detector("bocpd")
        self.hysteresis = float(hysteresis)
        self.fallback_z = float(fallback_z)
        self.samples_from_calls = samples_from_calls
        self.deadline_ms = config_map.deadline_ms
        self._samples = 0
        self._changed = True
        self._cell = -1
        self.changes = 0
        self.switches = 0
        self._last: Configuration | None = None
        g = config_map.grid
        self._std_bounds = (0.0, *g.std_edges, math.inf)

    @classmethod
    def from_file(cls, map_path: str | Path, **kwargs: Any) -> "DynamicConfigurator":
        """A configurator from a saved map alone (the map carries the latency tables it was built with)."""
        m = ConfigurationMap.load(map_path)
        return cls(m, m.candidates(), **kwargs)

    # -- feeding -----------------------------------------------------------------------------------------------
    def observe(self, rate_bps: float) -> bool:
        """Feed one throughput sample (bit/s); True when it reveals a change point."""
        if not rate_bps >= 0:
            raise ConfigError(f"a throughput sample must be >= 0 bit/s, got {rate_bps!r}")
        self._samples += 1
        changed = self.detector.update(float(rate_bps))
        if changed:
            self._changed = True
            self.changes += 1
        return changed

    def observe_transfer(self, size_bytes: int, duration_s: float) -> bool:
        """Feed the throughput of one finished transfer (its bytes over its duration)."""
        if not duration_s > 0:
            raise ConfigError(f"a transfer duration must be > 0 s, got {duration_s!r}")
        return self.observe(size_bytes * 8 / duration_s)

    # -- deciding ----------------------------------------------------------------------------------------------
    def _sticky_cell(self, state: BandwidthState) -> int:
        """The state's cell, with hysteresis on its (mean, spread) part; the latest-sample part (when the grid has
        one) is always re-read."""
        grid = self.map.grid
        base = grid.base_cell(state)
        if not (self._changed or self._cell < 0 or base == self._cell):
            m, s = divmod(self._cell, grid.n_std)
            lo = grid.mean_min + (m - self.hysteresis) * grid.mean_step
            hi = grid.mean_min + (m + 1 + self.hysteresis) * grid.mean_step
            m_ok = (lo <= state.mean_log_mbps < hi) or (m in (0, grid.n_mean - 1) and base // grid.n_std == m)
            s_lo, s_hi = self._std_bounds[s], self._std_bounds[s + 1]
            width = (s_hi - s_lo) if math.isfinite(s_hi) else s_lo
            s_ok = s_lo - self.hysteresis * width <= state.std_log < s_hi + self.hysteresis * width
            if m_ok and s_ok:
                base = self._cell
        self._cell = base
        return base * grid.n_last + grid.last_bin(state)

    def decide(self, bandwidth_bps: float | None = None, rtt_ms: float = 0.0, edge_load: float = 0.0) -> Decision:
        """The configuration for the next request."""
        if self._samples == 0:
            if bandwidth_bps is None or not bandwidth_bps > 0:
                raise ConfigError("the dynamic configurator has seen no throughput samples and was given no "
                                  "bandwidth estimate; feed it samples with observe() first")
            k = self.candidates.plan_static(bandwidth_bps, self.deadline_ms, rtt_ms, edge_load)
            return self._done(Decision(self.candidates.configs[k], "no-samples", None, -1))
        state = self.detector.state
        cell = self._sticky_cell(state)
        self._changed = False
        cfg = self.map.lookup_cell(cell)
        if cfg is not None:
            return self._done(Decision(cfg, "map", state, cell))
        k = self.candidates.plan_static(state.conservative_rate_bps(self.fallback_z), self.deadline_ms, rtt_ms,
                                        edge_load)
        return self._done(Decision(self.candidates.configs[k], "fallback", state, cell))

    def _done(self, d: Decision) -> Decision:
        if self._last is not None and d.config != self._last:
            self.switches += 1
        self._last = d.config
        return d

    def __call__(self, bandwidth_bps: float | None, rtt_ms: float | None = None,
                 edge_load: float | dict[str, Any] | None = None) -> tuple[int, int, str]:
        """``(bandwidth_bps, rtt_ms, edge_load) -> (exit, partition, codec)``: the runtime's configurator hook
        (:mod:`edgent.runtime.session`). Missing values (None) count as 0 / unknown."""
        if self.samples_from_calls and bandwidth_bps is not None and bandwidth_bps > 0:
            self.observe(bandwidth_bps)
        return self.decide(bandwidth_bps, rtt_ms or 0.0, edge_queue_ms(edge_load)).config.as_tuple()


def edge_queue_ms(edge_load: float | dict[str, Any] | None) -> float:
    """Expected queueing delay (ms) at the edge from what the runtime reports: a number is taken as ms; the
    runtime's load dict gives :func:`edgent.plan.load.wait_from_load` (the one home of the edge's wait)."""
    return wait_from_load(edge_load)


class EwmaEstimator:
    """The static configurator's bandwidth estimate: an exponentially weighted moving average of throughput
    samples (weight ``alpha`` on the newest), the usual estimator of adaptive-streaming clients."""

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ConfigError(f"EWMA alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.rate_bps: float | None = None

    def update(self, rate_bps: float) -> float:
        self.rate_bps = rate_bps if self.rate_bps is None else self.alpha * rate_bps + (1 - self.alpha) * self.rate_bps
        return self.rate_bps


__all__ = ["Decision", "DynamicConfigurator", "EwmaEstimator", "edge_queue_ms"]
