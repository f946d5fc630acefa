"""The cost of turning a tensor into bytes and back, which the paper's latency formula leaves out.

Every message that crosses the link (the payload device -> edge and the result edge -> device) is encoded by its
sender and decoded by its receiver. :class:`OverheadModel` charges a constant per message plus a cost per byte;
:func:`measure_overhead` measures both on this machine for float32 tensors (numpy ``tobytes`` on one side,
``torch.frombuffer`` on the other, what edgent's float32 codec does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from edgent.errors import ConfigError


@dataclass(frozen=True)
class OverheadModel:
    """(De)serialization cost: ``fixed_ms_per_message`` for each message plus ``per_byte_ms`` per byte sent.

    The defaults were measured on the development machine with :func:`measure_overhead` (float32 tensors of
    64 B to 4 MiB, encode + decode: about 0.002 ms per message and 0.056 ns per byte, i.e. ~18 GB/s); both are
    negligible next to the link at wireless rates, which is the point: they are counted, not assumed away.
    """

    fixed_ms_per_message: float = 0.002
    per_byte_ms: float = 5.6e-8

    def __post_init__(self) -> None:
        if not (self.fixed_ms_per_message >= 0 and self.per_byte_ms >= 0):
            raise ConfigError(f"overhead costs must be >= 0, got {self}")

    def scaled(self, factor: float) -> "OverheadModel":
        """The same model on a machine ``factor`` times slower (e.g. a throttled device)."""
        return OverheadModel(self.fixed_ms_per_message * factor, self.per_byte_ms * factor)


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
