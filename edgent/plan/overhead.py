"""What a message costs beyond its payload, which the paper's latency formula leaves out.

Every message that crosses the link (the payload device -> edge and the result edge -> device) is encoded by its
sender and decoded by its receiver. :class:`OverheadModel` charges a constant per message plus a cost per byte;
:func:`measure_overhead` measures both on this machine for float32 tensors (numpy ``tobytes`` on one side,
``torch.frombuffer`` on the other, what edgent's float32 codec does).

It also holds the bytes the transport adds on the wire (:class:`WireFraming`): the runtime's frame header and
JSON metadata per message, and the TCP/IP/Ethernet headers per packet that a shaper counts. By default none are
counted (the paper's formula: payload bytes / rate); :meth:`WireFraming.edgent` gives edgent's.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgent.errors import ConfigError
from edgent.plan.link import ETHERNET_MSS, ETHERNET_TCP_HEADER_BYTES



@dataclass(frozen=True)
class WireFraming:
    """Bytes on the wire beyond a message's payload.

    Attributes:
        request_bytes: per request (device -> edge): edgent's 16-byte frame header plus its JSON metadata.
        response_bytes: per answer (edge -> device), on top of the result's bytes.
        segment_bytes: payload bytes per packet (the TCP MSS).
        packet_header_bytes: bytes counted per packet beyond its payload (0 where the rate is enforced on the
            application's bytes, as on edgent's emulated link; :data:`ETHERNET_TCP_HEADER_BYTES` on a veth).
    """

    request_bytes: int = 0
    response_bytes: int = 0
    segment_bytes: int = ETHERNET_MSS
    packet_header_bytes: int = 0

    def __post_init__(self) -> None:
        if min(self.request_bytes, self.response_bytes, self.packet_header_bytes) < 0 or self.segment_bytes < 1:
            raise ConfigError(f"wire framing sizes must be >= 0 (segment >= 1 byte), got {self}")

    @property
    def counted(self) -> bool:
        """Whether any byte beyond the payload is counted (False: the paper's formula)."""
        return bool(self.request_bytes or self.response_bytes or self.packet_header_bytes)

    def wire_bytes(self, payload_bytes: Any, message_bytes: int) -> Any:
        """Bytes on the wire of a message of ``payload_bytes`` (a number or an array) plus ``message_bytes`` of
        framing, with the per-packet headers of ``ceil(bytes / segment_bytes)`` packets."""
        b = np.asarray(payload_bytes, dtype=float) + float(message_bytes)
        if self.packet_header_bytes:
            b = b + self.packet_header_bytes * np.ceil(b / self.segment_bytes)
        return float(b) if b.ndim == 0 else b

    @classmethod
    def edgent(cls, request_bytes: int, response_bytes: int, ethernet: bool = True,
               segment_bytes: int = ETHERNET_MSS) -> "WireFraming":
        """edgent's wire protocol over TCP: the measured (or computed) frame + metadata sizes of a request and an
        answer, and, when the shaper sits on an Ethernet device (the namespace testbed's veth), the headers of
        every packet."""
        return cls(int(request_bytes), int(response_bytes), int(segment_bytes),
                   ETHERNET_TCP_HEADER_BYTES if ethernet else 0)

    def to_json(self) -> dict[str, int]:
        return {"request_bytes": self.request_bytes, "response_bytes": self.response_bytes,
                "segment_bytes": self.segment_bytes, "packet_header_bytes": self.packet_header_bytes}


@dataclass(frozen=True)
class OverheadModel:
    """(De)serialization cost: ``fixed_ms_per_message`` for each message plus ``per_byte_ms`` per byte sent.

    The defaults are what :func:`measure_overhead` gave on the development machine (float32 tensors of 64 B to
    4 MiB, encode + decode; the figures and how they were taken: docs/planner.md, "What a configuration costs");
    both are negligible next to the link at wireless rates, which is the point: they are counted, not assumed
    away.
    ``framing`` says which bytes beyond the payloads cross the link (none by default).
    """

    fixed_ms_per_message: float = 0.002
    per_byte_ms: float = 5.6e-8
    framing: WireFraming = field(default_factory=WireFraming)

    def __post_init__(self) -> None:
        if not (self.fixed_ms_per_message >= 0 and self.per_byte_ms >= 0):
            raise ConfigError(f"overhead costs must be >= 0, got {self}")

    def scaled(self, factor: float) -> "OverheadModel":
        """The same model on a machine ``factor`` times slower (e.g. a throttled device); framing unchanged."""
        return OverheadModel(self.fixed_ms_per_message * factor, self.per_byte_ms * factor, self.framing)

    def with_framing(self, framing: WireFraming) -> "OverheadModel":
        """The same costs with ``framing`` counted on the wire."""
        return replace(self, framing=framing)


def measure_overhead(sizes_bytes: tuple[int, ...] = (64, 1024, 16384, 65536, 262144, 1048576, 4194304),
                     repeats: int = 100) -> OverheadModel:
    """Measure float32 encode + decode time per message and per byte on this machine (median per size, then a
    least-squares line through the medians)."""
    import numpy as np
    import torch

    xs, ys = [], []
    for size in sizes_bytes:
        n = max(1, size // 4)
        t = torch.randn(1, n)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            blob = t.numpy().tobytes()
            torch.frombuffer(bytearray(blob), dtype=torch.float32).reshape(1, n)
            times.append(time.perf_counter() - start)
        xs.append(4 * n)
        ys.append(float(np.median(times)) * 1e3)
    slope, intercept = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return OverheadModel(fixed_ms_per_message=max(0.0, float(intercept)), per_byte_ms=max(0.0, float(slope)))
