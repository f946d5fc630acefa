"""Change detectors that share BOCPD's interface, for comparison, and the factory that names them.

Every detector has ``update(rate_bps) -> bool`` (True when the sample reveals a change), ``state`` (a
:class:`~edgent.adapt.bocpd.BandwidthState` over the samples since the last change) and ``last_change_sample``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from edgent.adapt.bocpd import BandwidthState, Bocpd, BocpdConfig, log_mbps
from edgent.errors import ConfigError


class ChangeDetector(Protocol):
    last_change_sample: int | None

    def update(self, rate_bps: float) -> bool: ...

    @property
    def state(self) -> BandwidthState: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class PageHinkleyConfig:
    """Two-sided Page-Hinkley test on log-throughput: ``delta`` is the drift tolerated (log units per sample),
    ``threshold`` the cumulative deviation that signals a change, ``min_samples`` the samples before a test."""

    delta: float = 0.05
    threshold: float = 1.5
    min_samples: int = 3
    prior_std_log: float = 0.25


class PageHinkley:
    """The Page-Hinkley test (Page, 1954; Hinkley, 1971) on log-throughput, both directions: it accumulates each
    sample's deviation from the running mean of the current state, less ``delta``, and signals a change when the
    cumulative sum rises ``threshold`` above its minimum (or falls below its maximum). On a change it restarts
    from the sample that revealed it."""

    def __init__(self, config: PageHinkleyConfig | None = None) -> None:
        self.config = config or PageHinkleyConfig()
        if self.config.threshold <= 0 or self.config.delta < 0:
            raise ConfigError("Page-Hinkley threshold must be > 0 and delta >= 0")
        self.reset()

    def reset(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._m2 = 0.0
        self._up = self._up_min = 0.0
        self._down = self._down_max = 0.0
        self._seen = 0
        self._last_x = math.nan
        self.last_change_sample: int | None = None

    def update(self, rate_bps: float) -> bool:
        return self.update_log(log_mbps(rate_bps))

    def update_log(self, x: float) -> bool:
        self._seen += 1
        self._last_x = x
        self._n += 1
        d = x - self._mean
        self._mean += d / self._n
        self._m2 += d * (x - self._mean)
        dev = x - self._mean
        self._up += dev - self.config.delta
        self._up_min = min(self._up_min, self._up)
        self._down += dev + self.config.delta
        self._down_max = max(self._down_max, self._down)
        if self._n >= self.config.min_samples and (self._up - self._up_min > self.config.threshold
                                                   or self._down_max - self._down > self.config.threshold):
            self._n, self._mean, self._m2 = 1, x, 0.0
            self._up = self._up_min = self._down = self._down_max = 0.0
            self.last_change_sample = self._seen
            return True
        return False

    @property
    def state(self) -> BandwidthState:
        n = self._n
        # shrink the sample variance toward a prior when few samples are in (one sample has no spread)
        prior_n = 2.0
        var = (self._m2 + prior_n * self.config.prior_std_log ** 2) / (max(n - 1, 0) + prior_n)
        return BandwidthState(self._mean, math.sqrt(var), n, self._seen, self._last_x)


DETECTORS = ("bocpd", "page-hinkley")


def make_detector(name: str, **params: float) -> ChangeDetector:
    """A fresh detector by name: ``bocpd`` (default parameters of :class:`BocpdConfig`) or ``page-hinkley``."""
    if name == "bocpd":
        return Bocpd(BocpdConfig(**params))  # type: ignore[arg-type]
    if name == "page-hinkley":
        return PageHinkley(PageHinkleyConfig(**params))  # type: ignore[arg-type]
    raise ConfigError(f"unknown change detector {name!r}; choose one of {', '.join(DETECTORS)}")
