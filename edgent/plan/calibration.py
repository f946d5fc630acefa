"""Online calibration of the predicted compute times: the measurement -> re-plan step for the latency model.

The per-layer regressions are fitted once, on one sweep; the host they run on does not keep one speed (on a
shared VM it drifts within a single benchmark run: ``host_drift`` in the results of ``edgent bench
predictor``, docs/latency.md), so an offline prediction is off by whatever the host's speed has done since
the fit, for every layer alike. What stays is the *shape*: the ratio between layers, exits and partition
points.

:class:`ComputeCalibration` learns the present speed from the requests themselves: after every request, the
measured compute time of each side (the device's own ``device_ms``, the edge's reported ``compute_ms``) over
its prediction. The factor for the next request of a configuration (``key``, e.g. its exit and partition
point) is the median of the last ``window`` ratios of that configuration on that side once it has
``min_samples`` of them, else the median of the last ``window`` ratios of the side (any configuration), else
1. Per configuration, because the model's error is not one factor for all parts (a short part such as the
device's preprocessing alone and a whole sub-model can sit on opposite sides of their predictions in the same
run, and one side-wide factor then mis-corrects both; measured in ``edgent bench paper``, docs/planner.md).
Only parts predicted at ``min_predicted_ms`` or more count. A prediction made with it uses only requests that
finished before it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgent.errors import ConfigError

SIDES: tuple[str, ...] = ("device", "edge")


@dataclass
class ComputeCalibration:
    """Per side (device, edge) and configuration, the median measured/predicted compute ratio of the last
    ``window`` requests (see the module docstring)."""

    window: int = 8
    min_samples: int = 3
    min_predicted_ms: float = 1.0
    _ratios: dict[str, deque] = field(default_factory=dict, repr=False)
    _by_key: dict[tuple[str, Any], deque] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if int(self.window) < 1 or int(self.min_samples) < 1 or int(self.min_samples) > int(self.window):
            raise ConfigError(f"calibration: need 1 <= min_samples ({self.min_samples}) <= window ({self.window})")
        if not (math.isfinite(self.min_predicted_ms) and self.min_predicted_ms >= 0):
            raise ConfigError(f"calibration: min_predicted_ms must be a finite number >= 0, "
                              f"got {self.min_predicted_ms!r}")
        self._ratios = {s: deque(maxlen=int(self.window)) for s in SIDES}

    def observe(self, side: str, predicted_ms: float, measured_ms: float, key: Any = None) -> bool:
        """Learn from one finished request's compute on ``side`` (of configuration ``key``, hashable); returns
        whether it counted (a part predicted long enough, and a finite positive measurement)."""
        self._check(side)
        p, m = float(predicted_ms), float(measured_ms)
        if not (math.isfinite(p) and math.isfinite(m)) or p < max(self.min_predicted_ms, 1e-9) or m <= 0:
            return False
        self._ratios[side].append(m / p)
        if key is not None:
            self._by_key.setdefault((side, key), deque(maxlen=int(self.window))).append(m / p)
        return True

    def factor(self, side: str, key: Any = None, quantile: float = 0.5) -> float:
        """What to multiply ``side``'s predicted compute of configuration ``key`` by now: that configuration's
        median ratio, else the side's, else 1 (fewer than ``min_samples`` ratios known). With ``quantile`` above
        0.5, that quantile of the same ratios instead: a factor the next call stays under that often, for a
        decision that wants a margin against the spread of the compute."""
        self._check(side)
        for r in (self._by_key.get((side, key), ()) if key is not None else (), self._ratios[side]):
            if len(r) >= self.min_samples:
                return float(np.median(r)) if quantile == 0.5 else float(np.quantile(r, quantile))
        return 1.0

    def predict_total_ms(self, total_ms: float, device_ms: float, edge_ms: float, key: Any = None) -> float:
        """A breakdown's total with its device and edge compute terms calibrated (for configuration ``key``)."""
        return (float(total_ms) + float(device_ms) * (self.factor("device", key) - 1.0)
                + float(edge_ms) * (self.factor("edge", key) - 1.0))

    def to_json(self) -> dict[str, Any]:
        return {"window": self.window, "min_samples": self.min_samples, "min_predicted_ms": self.min_predicted_ms,
                "factor": {s: self.factor(s) for s in SIDES}, "samples": {s: len(self._ratios[s]) for s in SIDES},
                "configurations": len(self._by_key)}

    def _check(self, side: str) -> None:
        if side not in SIDES:
            raise ConfigError(f"calibration: unknown side {side!r}; sides: {', '.join(SIDES)}")
