"""How many bytes cross the link at a partition point, per codec.

One function, :func:`payload_bytes`, is the single source of these sizes: the planner's tables use it, and the
runtime's codecs produce exactly these sizes (per sample, without framing).
"""

from __future__ import annotations

from math import prod
from typing import Sequence

from edgent.errors import ConfigError

#: Codecs for intermediate tensors and their size per element (int8 adds a float32 scale and an int32 zero point).
CODECS: tuple[str, ...] = ("float32", "float16", "int8")
INT8_HEADER_BYTES = 8


def check_codec(codec: str) -> str:
    """Return ``codec`` if edgent knows it, else raise a :class:`ConfigError` naming the known ones."""
    if codec not in CODECS:
        raise ConfigError(f"unknown codec {codec!r}; known codecs: {', '.join(CODECS)}")
    return codec


def payload_bytes(shape: Sequence[int], codec: str = "float32") -> int:
    """Bytes of one sample of an intermediate tensor of ``shape`` (without batch) encoded with ``codec``:
    float32 ``4n``, float16 ``2n``, int8 ``n + 8`` (one float32 scale and one int32 zero point)."""
    check_codec(codec)
    n = int(prod(int(d) for d in shape))
    if n < 0:
        raise ConfigError(f"tensor shape {tuple(shape)} has a negative dimension")
    if codec == "float32":
        return 4 * n
    if codec == "float16":
        return 2 * n
    return n + INT8_HEADER_BYTES


def raw_input_bytes(input_shape: Sequence[int], bytes_per_element: int = 1) -> int:
    """Bytes of one raw input as a device really sends it at point 0 (default: uint8 pixels, 1 byte each)."""
    return int(prod(int(d) for d in input_shape)) * int(bytes_per_element)


def wire_codec(codec: str, partition: int, num_units: int, raw_input: bool = True) -> str | None:
    """The codec a configuration is priced with and must be sent with: at point 0 an input codec as planned
    (``uint8`` pixels, ``jpegQQ``), or the raw uint8 pixels when the plan names a tensor codec there and the table
    priced the raw input (:func:`raw_input_bytes`); ``codec`` for an intermediate tensor; None at ``num_units``
    (nothing crosses the link). The one translation from a planned (exit, partition, codec) to what the runtime
    sends, so that the plan is priced as run."""
    if partition >= num_units:
        return None
    if partition == 0 and raw_input:
        return codec if codec == "uint8" or codec.startswith("jpeg") else "uint8"
    return check_codec(codec)
