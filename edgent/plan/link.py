"""The network link between device and edge, as the planner sees it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np

from edgent.errors import ConfigError

BITS_PER_BYTE = 8


#: TCP payload bytes per packet on an Ethernet MTU of 1500 with TCP timestamps (1500 - 20 IP - 32 TCP)
ETHERNET_MSS = 1448
#: bytes a shaper on an Ethernet (veth) device counts per packet beyond the TCP payload: 14 Ethernet + 20 IPv4
#: + 32 TCP with timestamps (a 1448-byte segment is a 1514-byte packet)
ETHERNET_TCP_HEADER_BYTES = 66
#: the smallest bucket of a token-bucket shaper: one full packet and then some (``tc tbf`` needs >= one MTU)
MIN_SHAPER_BURST_BYTES = 1600
#: the bucket beyond its minimum holds this much time of traffic at the shaped rate
SHAPER_BURST_S = 0.002


def shaper_burst_bytes(rate_bps: float) -> int:
    """Bytes edgent's token-bucket shapers (``tc tbf`` on the namespace testbed, the emulated link's bucket)
    let through at once after an idle spell at ``rate_bps``: one packet or :data:`SHAPER_BURST_S` of traffic,
    whichever is more. The one formula for the testbed, the wire model and the sample correction."""
    return max(MIN_SHAPER_BURST_BYTES, int(rate_bps / 8 * SHAPER_BURST_S))


def wire_per_payload(packet_headers_counted: bool) -> float:
    """Bytes a shaper counts per byte of TCP payload: 1 where the rate is enforced on the application's bytes
    (the emulated link), (MSS + headers) / MSS where it counts Ethernet packets (a veth)."""
    return (ETHERNET_MSS + ETHERNET_TCP_HEADER_BYTES) / ETHERNET_MSS if packet_headers_counted else 1.0



@dataclass(frozen=True)
class Link:
    """Uplink (device -> edge) and downlink rates in bit/s, the round-trip time in ms, and the shaper's burst.

    ``burst_bytes`` is what a token-bucket shaper (``tc tbf``'s ``burst``, the emulated link's bucket) lets
    through at line rate after an idle spell, in each direction: a message of ``b`` bytes on the wire then takes
    ``max(b - burst_bytes, 0) * 8 / rate``. It holds when the bucket is full at the start of the message, i.e.
    when the link was idle for ``burst_bytes * 8 / rate`` before it. 0 (the default) is the fluid link of the
    paper's formula, ``b * 8 / rate``.
    """

    uplink_bps: float
    downlink_bps: float
    rtt_ms: float = 0.0
    burst_bytes: float = 0.0

    def __post_init__(self) -> None:
        for name in ("uplink_bps", "downlink_bps"):
            v = getattr(self, name)
            if not (isinstance(v, Real) and not isinstance(v, bool) and 0 < v < math.inf):
                raise ConfigError(f"link {name} must be a positive finite rate in bit/s, got {v!r}")
        for name, unit in (("rtt_ms", "time >= 0 ms"), ("burst_bytes", "size >= 0 bytes")):
            v = getattr(self, name)
            if not (isinstance(v, Real) and not isinstance(v, bool) and 0 <= v < math.inf):
                raise ConfigError(f"link {name} must be a finite {unit}, got {v!r}")

    @classmethod
    def symmetric(cls, rate_bps: float, rtt_ms: float = 0.0, burst_bytes: float = 0.0) -> "Link":
        """A link with the same rate both ways."""
        return cls(rate_bps, rate_bps, rtt_ms, burst_bytes)

    def transfer_ms(self, wire_bytes: Any, rate_bps: float) -> Any:
        """Time (ms) for ``wire_bytes`` (a number or an array) to cross one direction running at ``rate_bps``,
        the burst going at once."""
        shaped = np.maximum(np.asarray(wire_bytes, dtype=float) - self.burst_bytes, 0.0)
        out = shaped * BITS_PER_BYTE * 1000.0 / rate_bps
        return float(out) if out.ndim == 0 else out

    def idle_to_refill_s(self) -> float:
        """How long the link must stay idle for a full bucket in each direction (0 for a fluid link)."""
        return BITS_PER_BYTE * self.burst_bytes / min(self.uplink_bps, self.downlink_bps)

    def to_json(self) -> dict[str, float]:
        out = {"uplink_bps": float(self.uplink_bps), "downlink_bps": float(self.downlink_bps),
               "rtt_ms": float(self.rtt_ms)}
        if self.burst_bytes:
            out["burst_bytes"] = float(self.burst_bytes)
        return out
