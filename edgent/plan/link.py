"""The network link between device and edge, as the planner sees it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

from edgent.errors import ConfigError


@dataclass(frozen=True)
class Link:
    """Uplink (device -> edge) and downlink rates in bit/s, and the round-trip time in ms."""

    uplink_bps: float
    downlink_bps: float
    rtt_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("uplink_bps", "downlink_bps"):
            v = getattr(self, name)
            if not (isinstance(v, Real) and not isinstance(v, bool) and 0 < v < math.inf):
                raise ConfigError(f"link {name} must be a positive finite rate in bit/s, got {v!r}")
        v = self.rtt_ms
        if not (isinstance(v, Real) and not isinstance(v, bool) and 0 <= v < math.inf):
            raise ConfigError(f"link rtt_ms must be a finite time >= 0 ms, got {v!r}")

    @classmethod
    def symmetric(cls, rate_bps: float, rtt_ms: float = 0.0) -> "Link":
        """A link with the same rate both ways."""
        return cls(rate_bps, rate_bps, rtt_ms)

    def to_json(self) -> dict[str, float]:
        return {"uplink_bps": float(self.uplink_bps), "downlink_bps": float(self.downlink_bps),
                "rtt_ms": float(self.rtt_ms)}
