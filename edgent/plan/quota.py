"""The device's compute time for one call under a CFS CPU quota, as the runtime calls it: after idle.

A per-unit latency model prices throttled work by the quota's *time-averaged* factor (wall over CPU time of long
stretches of work, ~9.5 for 10 % of a CPU): ``linear_ms = cpu_ms x wall_per_cpu x slowdown``. One request after
an idle spell is different. The quota's budget (``quota_ms`` per ``period_ms``) is full when the call starts, so
the call runs at full speed until the budget is spent or the period ends, waits for the next period, and so on;
the period boundaries fall at a phase the call does not choose (they are fixed on the kernel's clock). For work
of ``c`` ms of CPU starting ``b`` ms before a boundary::

    W(c, b) = c                                         if c <= min(q, b)
            = b + (m - 1) P + (r - (m - 1) q)           otherwise, r = c - min(q, b), m = ceil(r / q)

and the expected wall time is its mean over a uniform phase, ``b`` in ``(0, P]``. The device's emulated
slowdown multiplies the wall time. Short calls (the input's preprocessing, an early exit) thus cost far less
than the linear model says (a 0.2 ms call: ~0.2 ms, not 1.9 ms), long ones a little less (a call of ``c`` ms
saves about ``(P - q) / 2`` against ``c x P / q``). Measured on the testbed: ``docs/planner.md``.

Not modelled: the scheduler notices an overrun only at its next tick (4 ms at HZ=250), so a call may overrun its
budget and pay later; and the phase makes single calls spread widely around this mean (ad hoc: a 2.5 ms call
measured 10-30 ms at one fixed phase, docs/planner.md), which no single prediction can follow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgent.errors import ConfigError

#: phases averaged over (uniform in the period)
PHASES = 64


@dataclass(frozen=True)
class QuotaModel:
    """A device role under a CPU quota: ``quota_ms`` of CPU per ``period_ms``, the time-averaged wall/CPU factor
    its latency model was scaled by (``wall_per_cpu``), and the emulated ``slowdown`` on top."""

    quota_ms: float
    period_ms: float
    wall_per_cpu: float
    slowdown: float = 1.0

    def __post_init__(self) -> None:
        for name in ("quota_ms", "period_ms", "wall_per_cpu", "slowdown"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"quota model: {name} is {v!r}; it must be a finite number > 0")
        if self.quota_ms > self.period_ms:
            raise ConfigError(f"quota model: quota {self.quota_ms} ms exceeds its period {self.period_ms} ms")

    @classmethod
    def from_predictor(cls, predictor: Any) -> "QuotaModel | None":
        """The quota model of a fitted device predictor (None when its role has no real quota)."""
        emu = getattr(predictor, "emulation", None)
        if emu is None or not getattr(emu, "cpu_quota", None):
            return None
        from edgent.profile.throttle import shortest_period_us

        period_us = emu.period_us or shortest_period_us(emu.cpu_quota, emu.threads)
        quota_ms = max(1.0, float(emu.cpu_quota) * period_us * emu.threads / 1000.0)  # the kernel's 1 ms floor
        return cls(quota_ms=quota_ms, period_ms=period_us / 1000.0,
                   wall_per_cpu=float(getattr(predictor, "quota_factor", 1.0)), slowdown=float(emu.slowdown))

    def wall_ms(self, cpu_ms: np.ndarray | float, before_boundary_ms: np.ndarray | float) -> np.ndarray:
        """``W(c, b)``: wall time of ``cpu_ms`` of work starting ``before_boundary_ms`` before a period boundary
        with a full budget (no slowdown)."""
        c = np.asarray(cpu_ms, dtype=float)
        b = np.asarray(before_boundary_ms, dtype=float)
        q, p = self.quota_ms, self.period_ms
        first = np.minimum(q, b)
        r = np.maximum(c - first, 0.0)
        m = np.ceil(r / q - 1e-12)
        later = b + (m - 1.0) * p + (r - (m - 1.0) * q)
        return np.where(c <= first, c, later)

    def expected_wall_ms(self, cpu_ms: np.ndarray | float) -> np.ndarray:
        """Mean of ``W(c, b)`` over a uniform phase (midpoints of ``PHASES`` equal slices of the period)."""
        c = np.asarray(cpu_ms, dtype=float)
        b = (np.arange(PHASES) + 0.5) / PHASES * self.period_ms
        return self.wall_ms(c[..., None], b).mean(axis=-1)

    def call_ms(self, linear_ms: np.ndarray | float) -> np.ndarray:
        """Expected time of one call that the linear model prices at ``linear_ms`` (= CPU x wall_per_cpu x
        slowdown): back to CPU time, through the quota, times the slowdown. 0 stays 0."""
        lin = np.asarray(linear_ms, dtype=float)
        cpu = lin / (self.wall_per_cpu * self.slowdown)
        return np.where(lin > 0, self.slowdown * self.expected_wall_ms(cpu), 0.0)

    def to_json(self) -> dict[str, float]:
        return {"quota_ms": self.quota_ms, "period_ms": self.period_ms, "wall_per_cpu": self.wall_per_cpu,
                "slowdown": self.slowdown}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> "QuotaModel | None":
        if d is None:
            return None
        return cls(float(d["quota_ms"]), float(d["period_ms"]), float(d["wall_per_cpu"]), float(d["slowdown"]))
