"""Codecs for what crosses the device-edge link: a tensor (or the raw input) turned into bytes and back.

Names (``get_codec(name)``):

- ``uint8``: the raw input pixels as the camera gives them, one byte per value; the edge applies the model's
  input preprocessing (``edgent.model.preprocess``). Payload: ``n`` bytes.
- ``jpeg`` / ``jpegQQ`` (e.g. ``jpeg75``): the raw input as a camera produces it, one JPEG per image (quality 90
  by default). Lossy; its size depends on the content.
- ``jpegQQa`` (e.g. ``jpeg75a``): the same JPEG in the abbreviated format: without the tables and frame header
  both sides derive from the quality and the shape (:class:`JpegAbbreviatedCodec`); the same pixels as
  ``jpegQQ`` in about a third of the bytes for a 32x32 image.
- ``float32``: the tensor as it is. Payload: ``4 n`` bytes, exact.
- ``float16``: half precision. Payload ``2 n`` bytes; relative error at most 2**-11 within float16's range.
- ``int8``: per-tensor affine quantisation ``x = scale * (q - zero_point)`` (the range always holds 0).
  Payload ``n + 8`` bytes: float32 scale and int32 zero point (little-endian), then ``n`` int8 values.

- ``int8c``: per-channel affine quantisation (channel = dimension 1 of a tensor of 3 or more dimensions; one
  group otherwise). Payload ``n + 8 C`` bytes: C float32 scales, C int32 zero points, then ``n`` int8 values.
- ``bneck-<model>``: the learned bottleneck of ``<model>`` at its cut (``edgent.model.bottleneck``): the device's
  encoder, integer symbols bit-packed and zstandard-compressed, the edge's decoder. Valid for that cut's
  tensor shape only; lossy with no error bound (its cost is measured as accuracy in the model card).

Every codec except JPEG and the bottleneck can take a lossless compression suffix ``+zlib`` or ``+zstd``
(e.g. ``int8+zstd``). ``payload_bytes(shape)`` is
exact for the uncompressed fixed-size codecs and an upper bound for the others (``exact_size`` says which).
``shape`` always includes the batch dimension.
"""

from __future__ import annotations

import io
import math
import re
import struct
import sys
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from edgent.errors import ConfigError, InputError

#: Largest number of elements a codec will decode (guards the receiver against absurd shapes): 2**28 values.
MAX_ELEMENTS = 1 << 28
FLOAT16_MAX = 65504.0
_INT8_HEADER = struct.Struct("<fi")


def check_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a tensor shape (with batch) coming from a caller or the network; return it as a tuple.

    Called on every request on both ends, so it stays in plain Python (``math.prod`` on ints, not numpy)."""
    if type(shape) is tuple and shape in _VALID_SHAPES and all(type(d) is int for d in shape):  # noqa: E721
        return shape  # checked before (exact types: True == 1 and numpy ints would match the set too)
    try:
        dims = list(shape)
    except TypeError as exc:
        raise InputError(f"a tensor shape must be a list of integers, got {shape!r}") from exc
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) for d in dims):
        raise InputError(f"a tensor shape must be a list of integers, got {shape!r}")
    out = tuple(int(d) for d in dims)
    if not out or len(out) > 8:
        raise InputError(f"a tensor shape must have 1..8 dimensions, got {len(out)}")
    if any(d <= 0 for d in out):
        raise InputError(f"every dimension of a tensor shape must be a positive integer, got {shape!r}")
    if math.prod(out) > MAX_ELEMENTS:
        raise InputError(f"shape {out} has more than {MAX_ELEMENTS} elements; codecs refuse it")
    if len(_VALID_SHAPES) < _VALID_SHAPES_MAX:
        _VALID_SHAPES.add(out)
    return out


#: shapes already checked (a deployment uses a handful; bounded so that a stream of odd shapes cannot grow it)
_VALID_SHAPES: set[tuple[int, ...]] = set()
_VALID_SHAPES_MAX = 4096


_LITTLE_ENDIAN = sys.byteorder == "little"


def _owned_tensor(data: bytes | bytearray | memoryview, dtype: torch.dtype, np_dtype: str,
                  shape: tuple[int, ...]) -> torch.Tensor:
    """A tensor of ``shape`` over a copy of ``data`` (little-endian values of ``np_dtype``), in as few calls as
    possible: each numpy or torch call costs on a request's path (5-30 us on cold caches)."""
    if _LITTLE_ENDIAN:
        return torch.frombuffer(bytearray(data), dtype=dtype).view(shape)
    return torch.from_numpy(np.frombuffer(data, dtype=np_dtype).astype(np_dtype[1:]).reshape(shape))


def _le_bytes(t: torch.Tensor, np_dtype: str) -> bytes:
    """The values of a CPU tensor in C order as little-endian ``np_dtype`` (``tobytes`` copies a strided array in
    C order: no ``contiguous()`` first)."""
    arr = t.numpy()
    return arr.tobytes() if _LITTLE_ENDIAN else arr.astype(np_dtype).tobytes()


def numel(shape: Sequence[int]) -> int:
    """Number of elements of ``shape``."""
    return math.prod(check_shape(shape))


def _as_tensor(x: torch.Tensor | np.ndarray, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{what} must be a torch.Tensor or numpy array, got {type(x).__name__}")
    if x.requires_grad:  # (each torch call counts on a request's path: only those that change something)
        x = x.detach()
    return x if x.is_cpu else x.cpu()


class Codec(ABC):
    """Turns one tensor into bytes (``encode``) and back (``decode``); stateless and thread-safe."""

    #: the name that selects it with :func:`get_codec` and travels in requests
    name: str = ""
    #: "tensor" (any float tensor) or "pixels" (uint8 model input, before preprocessing)
    kind: str = "tensor"
    #: whether decode(encode(t)) == t exactly
    lossless: bool = True
    #: whether ``payload_bytes`` is the exact size of every payload (otherwise an upper bound)
    exact_size: bool = True

    @abstractmethod
    def encode(self, tensor: torch.Tensor | np.ndarray) -> bytes:
        """The bytes that carry ``tensor`` over the link."""

    @abstractmethod
    def decode(self, data: bytes | bytearray | memoryview, shape: Sequence[int]) -> torch.Tensor:
        """The tensor of ``shape`` (with batch) carried by ``data``; raises InputError when they disagree."""

    @abstractmethod
    def payload_bytes(self, shape: Sequence[int]) -> int:
        """Size in bytes of the payload for a tensor of ``shape``: exact when ``exact_size``, else a bound."""

    def max_abs_error(self, tensor: torch.Tensor) -> float:
        """Largest absolute error ``decode(encode(tensor))`` can have on ``tensor`` (inf when unbounded)."""
        return 0.0

    def __repr__(self) -> str:
        return f"<codec {self.name}>"

    def _check_size(self, data: bytes | bytearray | memoryview, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_shape(shape)
        expected = self.payload_bytes(shape)
        if len(data) != expected:
            raise InputError(
                f"codec {self.name}: a payload for shape {shape} must be {expected} bytes, got {len(data)}"
            )
        return shape


def _float_tensor(x: torch.Tensor | np.ndarray, codec: str) -> torch.Tensor:
    t = _as_tensor(x, f"the tensor to encode with {codec}")
    if not t.is_floating_point():
        raise InputError(f"codec {codec} encodes floating-point tensors, got dtype {t.dtype}; "
                         "send raw pixels with the uint8 or jpeg codec")
    return t


class Float32Codec(Codec):
    """float32, little-endian, 4 bytes per value: lossless for float32 tensors."""

    name = "float32"

    def encode(self, tensor):
        t = _float_tensor(tensor, self.name)
        if t.dtype != torch.float32:
            t = t.to(torch.float32)
        return _le_bytes(t, "<f4")

    def decode(self, data, shape):
        shape = self._check_size(data, shape)
        return _owned_tensor(data, torch.float32, "<f4", shape)

    def payload_bytes(self, shape):
        return 4 * numel(shape)


class Float16Codec(Codec):
    """IEEE half precision, 2 bytes per value; refuses tensors outside float16's range (+-65504)."""

    name = "float16"
    lossless = False

    def encode(self, tensor):
        t = _float_tensor(tensor, self.name).to(torch.float32)
        if t.numel() and max(-float(t.min()), float(t.max())) > FLOAT16_MAX:
            raise InputError(f"codec float16: the tensor has values beyond +-{FLOAT16_MAX:g}; use float32 or int8")
        return t.to(torch.float16).contiguous().numpy().astype("<f2", copy=False).tobytes()

    def decode(self, data, shape):
        shape = self._check_size(data, shape)
        return torch.from_numpy(np.frombuffer(data, dtype="<f2").astype(np.float32)).view(shape)

    def payload_bytes(self, shape):
        return 2 * numel(shape)

    def max_abs_error(self, tensor):
        t = tensor.detach().float()
        return float(t.abs().max()) * 2.0**-11 + 2.0**-24 if t.numel() else 0.0


class Int8Codec(Codec):
    """Per-tensor affine 8-bit quantisation: ``q = round(x / scale) + zero_point`` in -128..127."""

    name = "int8"
    lossless = False

    @staticmethod
    def params(t: torch.Tensor) -> tuple[float, int]:
        """Scale and zero point for ``t``: its range widened to hold 0, spread over 256 levels."""
        if not t.numel():
            return 1.0, 0
        t_lo, t_hi = torch.aminmax(t)
        lo, hi = min(float(t_lo), 0.0), max(float(t_hi), 0.0)
        scale = (hi - lo) / 255.0
        if not np.isfinite(scale):
            raise InputError("codec int8: the tensor holds NaN or infinity; use float32")
        if scale <= 0.0:
            return 1.0, 0
        # stored as float32: keep it a normal float32 so that 1/scale stays finite for sub-normal ranges
        scale = max(float(np.float32(scale)), float(np.finfo(np.float32).tiny))
        zero_point = int(np.clip(round(-128 - lo / scale), -128, 127))
        return scale, zero_point

    def encode(self, tensor):
        t = _float_tensor(tensor, self.name).to(torch.float32)
        scale, zp = self.params(t)  # NaN or infinity makes the range non-finite: refused there
        q = torch.round(t * (1.0 / scale)).add_(zp).clamp_(-128, 127).to(torch.int8)
        return _INT8_HEADER.pack(scale, zp) + q.contiguous().numpy().tobytes()

    def decode(self, data, shape):
        shape = self._check_size(data, shape)
        scale, zp = _INT8_HEADER.unpack_from(data, 0)
        if not (np.isfinite(scale) and scale > 0) or not -128 <= zp <= 127:
            raise InputError(f"codec int8: bad quantisation parameters scale={scale!r} zero_point={zp}")
        q = torch.from_numpy(np.frombuffer(data, dtype=np.int8, offset=_INT8_HEADER.size).astype(np.float32))
        return q.sub_(zp).mul_(scale).view(shape)

    def payload_bytes(self, shape):
        return numel(shape) + _INT8_HEADER.size

    def max_abs_error(self, tensor):
        scale, _ = self.params(tensor.detach().float())
        return scale / 2.0 * (1 + 1e-5) + 1e-7


def _pixel_tensor(x: torch.Tensor | np.ndarray, codec: str) -> torch.Tensor:
    t = _as_tensor(x, f"the images to encode with {codec}")
    if t.dtype != torch.uint8:
        raise InputError(f"codec {codec} carries raw uint8 pixels, got dtype {t.dtype}; "
                         "use float32/float16/int8 for model inputs or intermediate tensors")
    return t


class Uint8Codec(Codec):
    """Raw uint8 pixels, one byte per value; the edge applies the model's input preprocessing."""

    name = "uint8"
    kind = "pixels"

    def encode(self, tensor):
        return _le_bytes(_pixel_tensor(tensor, self.name), "|u1")

    def decode(self, data, shape):
        shape = self._check_size(data, shape)
        return _owned_tensor(data, torch.uint8, "|u1", shape)

    def payload_bytes(self, shape):
        return numel(shape)


class JpegCodec(Codec):
    """Images (N, C, H, W) uint8 with C = 1 or 3, each as a JPEG file (what a camera sends).

    Payload: uint32 count, ``count`` uint32 lengths, then the JPEG files (little-endian)."""

    kind = "pixels"
    lossless = False
    exact_size = False

    def __init__(self, quality: int = 90) -> None:
        if not 1 <= quality <= 100:
            raise ConfigError(f"JPEG quality must be 1..100, got {quality}")
        self.quality = quality
        self.name = "jpeg" if quality == 90 else f"jpeg{quality}"

    def encode(self, tensor):
        files = self._files(_pixel_tensor(tensor, self.name))
        head = struct.pack(f"<I{len(files)}I", len(files), *(len(f) for f in files))
        return head + b"".join(files)

    def _files(self, t: torch.Tensor) -> list[bytes]:
        """One baseline JPEG file per image of ``t`` (N, C, H, W) uint8, at this codec's quality."""
        from PIL import Image

        if t.dim() != 4 or t.shape[1] not in (1, 3):
            raise InputError(f"codec {self.name} encodes images (N, 1 or 3, H, W), got shape {tuple(t.shape)}")
        files = []
        for img in t.permute(0, 2, 3, 1).contiguous().numpy():
            buf = io.BytesIO()
            Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img).save(buf, format="JPEG",
                                                                              quality=self.quality)
            files.append(buf.getvalue())
        return files

    def decode(self, data, shape):
        shape = check_shape(shape)
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise InputError(f"codec {self.name} decodes images (N, 1 or 3, H, W), got shape {shape}")
        n = shape[0]
        if len(data) < 4 * (n + 1) or struct.unpack_from("<I", data, 0)[0] != n:
            raise InputError(f"codec {self.name}: the payload does not hold {n} images")
        lengths = struct.unpack_from(f"<{n}I", data, 4)
        if 4 * (n + 1) + sum(lengths) != len(data):
            raise InputError(f"codec {self.name}: the image lengths do not add up to the payload size")
        pos = 4 * (n + 1)
        files = []
        for length in lengths:
            files.append(bytes(data[pos:pos + length]))
            pos += length
        return self._images(files, shape)

    def _images(self, files: Sequence[bytes], shape: tuple[int, ...]) -> torch.Tensor:
        """The images (N, C, H, W) uint8 of ``files``, one JPEG file each, checked against ``shape``."""
        from PIL import Image, UnidentifiedImageError

        n = shape[0]
        out = np.empty((n, shape[2], shape[3], shape[1]), dtype=np.uint8)
        mode = "L" if shape[1] == 1 else "RGB"
        for i, f in enumerate(files):
            try:
                # Image.open reads the header only; the size is checked before any pixel is decoded, and a header
                # that claims more pixels than PIL's bomb limit is refused by Image.open itself
                with Image.open(io.BytesIO(f), formats=["JPEG"]) as im:
                    if im.format != "JPEG" or im.size != (shape[3], shape[2]):
                        raise InputError(f"codec {self.name}: image {i} is not a {shape[3]}x{shape[2]} JPEG "
                                         f"(its header says {im.size[0]}x{im.size[1]})")
                    img = np.asarray(im.convert(mode))
            except InputError:
                raise
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError, SyntaxError) as exc:
                raise InputError(f"codec {self.name}: image {i} cannot be decoded: {exc}") from exc
            out[i] = img.reshape(shape[2], shape[3], shape[1])
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()

    def payload_bytes(self, shape):
        """A generous bound: the raw pixels plus JPEG headers (real files are usually far smaller)."""
        shape = check_shape(shape)
        return 4 * (shape[0] + 1) + numel(shape) + shape[0] * 1024

    def max_abs_error(self, tensor):
        return float("inf")


class JpegAbbreviatedCodec(JpegCodec):
    """JPEG in the abbreviated format (ITU-T T.81, B.4): each image's entropy-coded data only, without the
    tables and frame header that every baseline JPEG of one quality and size repeats (623 of the ~930 bytes of
    a 32x32 image at quality 75). Both sides derive that header from the quality and the shape
    (:meth:`tables_header`); the decoded pixels are those of the full file, bit for bit (the ``jpegQQ`` codec's).

    Payload: uint32 count, uint32 CRC-32 of the header (a receiver whose JPEG library writes other tables refuses
    the payload instead of misreading it), ``count`` uint32 lengths, then each image's data after its SOS header
    up to, not including, its EOI marker (little-endian)."""

    _SOS = b"\xff\xda"
    _EOI = b"\xff\xd9"

    def __init__(self, quality: int = 90) -> None:
        super().__init__(quality)
        self.name = f"jpeg{quality}a"
        self._headers: dict[tuple[int, int, int], bytes] = {}

    def tables_header(self, channels: int, height: int, width: int) -> bytes:
        """The bytes every baseline JPEG of this quality and shape starts with, up to the end of its SOS header
        (quantisation and Huffman tables, frame header): from encoding a blank image, once per shape."""
        key = (int(channels), int(height), int(width))
        if key not in self._headers:
            f = self._files(torch.zeros((1, *key), dtype=torch.uint8))[0]
            i = f.find(self._SOS)
            if i < 0:
                raise ConfigError(f"codec {self.name}: this JPEG library wrote no SOS marker")
            self._headers[key] = f[:i + 2 + int.from_bytes(f[i + 2:i + 4], "big")]
        return self._headers[key]

    def encode(self, tensor):
        t = _pixel_tensor(tensor, self.name)
        files = self._files(t)
        head = self.tables_header(*t.shape[1:])
        bodies = []
        for f in files:
            if not f.startswith(head) or not f.endswith(self._EOI):
                raise ConfigError(f"codec {self.name}: this JPEG library writes image-dependent headers; the "
                                  f"abbreviated format needs fixed tables (use jpeg{self.quality})")
            bodies.append(f[len(head):-len(self._EOI)])
        return (struct.pack(f"<II{len(bodies)}I", len(bodies), zlib.crc32(head), *(len(b) for b in bodies))
                + b"".join(bodies))

    def decode(self, data, shape):
        shape = check_shape(shape)
        if len(shape) != 4 or shape[1] not in (1, 3):
            raise InputError(f"codec {self.name} decodes images (N, 1 or 3, H, W), got shape {shape}")
        n = shape[0]
        if len(data) < 4 * (n + 2) or struct.unpack_from("<I", data, 0)[0] != n:
            raise InputError(f"codec {self.name}: the payload does not hold {n} images")
        crc = struct.unpack_from("<I", data, 4)[0]
        lengths = struct.unpack_from(f"<{n}I", data, 8)
        if 4 * (n + 2) + sum(lengths) != len(data):
            raise InputError(f"codec {self.name}: the image lengths do not add up to the payload size")
        head = self.tables_header(*shape[1:])
        if crc != zlib.crc32(head):
            raise InputError(f"codec {self.name}: the sender's JPEG tables differ from this side's (another JPEG "
                             f"library); send jpeg{self.quality} instead")
        pos = 4 * (n + 2)
        files = []
        for length in lengths:
            files.append(head + bytes(data[pos:pos + length]) + self._EOI)
            pos += length
        return self._images(files, shape)

    def payload_bytes(self, shape):
        """A generous bound: the raw pixels (real payloads are far smaller)."""
        shape = check_shape(shape)
        return 4 * (shape[0] + 2) + numel(shape) + shape[0] * 1024


class CompressedCodec(Codec):
    """Lossless compression (zlib, level 1 by default) on top of another codec's payload."""

    exact_size = False

    def __init__(self, inner: Codec, level: int = 1) -> None:
        if isinstance(inner, JpegCodec):
            raise ConfigError("JPEG is already compressed; use 'jpeg' without a compression suffix")
        self.inner = inner
        self.level = level
        self.name = f"{inner.name}+zlib"
        self.kind = inner.kind
        self.lossless = inner.lossless

    def encode(self, tensor):
        return zlib.compress(self.inner.encode(tensor), self.level)

    def decode(self, data, shape):
        limit = self.inner.payload_bytes(shape)
        d = zlib.decompressobj()
        try:
            raw = d.decompress(data, limit)
            if d.unconsumed_tail or not d.eof:
                raise InputError(f"codec {self.name}: the payload is truncated or inflates beyond {limit} bytes")
            if d.unused_data:
                raise InputError(f"codec {self.name}: {len(d.unused_data)} bytes follow the end of the zlib stream")
        except zlib.error as exc:
            raise InputError(f"codec {self.name}: the payload is not valid zlib data: {exc}") from exc
        return self.inner.decode(raw, shape)

    def payload_bytes(self, shape):
        n = self.inner.payload_bytes(shape)
        return n + n // 1000 + 64  # zlib's worst case for incompressible data

    def max_abs_error(self, tensor):
        return self.inner.max_abs_error(tensor)


class Int8ChannelCodec(Codec):
    """Per-channel affine 8-bit quantisation (channel = dimension 1 when the tensor has 3 or more dimensions,
    else one group): each channel's range, widened to hold 0, is spread over 256 levels."""

    name = "int8c"
    lossless = False

    @staticmethod
    def channels(shape: Sequence[int]) -> int:
        shape = check_shape(shape)
        return shape[1] if len(shape) >= 3 else 1

    def _grouped(self, t: torch.Tensor) -> torch.Tensor:
        c = self.channels(tuple(t.shape))
        return t.reshape(t.shape[0], c, -1).transpose(0, 1).reshape(c, -1) if c > 1 else t.reshape(1, -1)

    def params(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel scales (float32) and zero points (int32) of ``t``."""
        g = self._grouped(t.float())
        lo = torch.clamp(g.amin(dim=1), max=0.0)
        hi = torch.clamp(g.amax(dim=1), min=0.0)
        if not (torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise InputError("codec int8c: the tensor holds NaN or infinity; use float32")
        scale = ((hi - lo) / 255.0).to(torch.float32)
        scale = torch.where(scale > 0, scale.clamp_min(float(np.finfo(np.float32).tiny)), torch.ones_like(scale))
        zp = torch.round(-128 - lo / scale).clamp(-128, 127).to(torch.int32)
        return scale, zp

    def encode(self, tensor):
        t = _float_tensor(tensor, self.name).to(torch.float32)
        scale, zp = self.params(t)
        c = scale.numel()
        view = (1, c) + (1,) * (t.dim() - 2) if c > 1 else (1,) * t.dim()
        q = torch.round(t / scale.view(view)).add_(zp.view(view).float()).clamp_(-128, 127).to(torch.int8)
        return (scale.numpy().astype("<f4").tobytes() + zp.numpy().astype("<i4").tobytes()
                + q.contiguous().numpy().tobytes())

    def decode(self, data, shape):
        shape = self._check_size(data, shape)
        c = self.channels(shape)
        scale = np.frombuffer(data, dtype="<f4", count=c).astype(np.float32)
        zp = np.frombuffer(data, dtype="<i4", count=c, offset=4 * c)
        if not (np.isfinite(scale).all() and (scale > 0).all()) or (zp < -128).any() or (zp > 127).any():
            raise InputError("codec int8c: bad quantisation parameters")
        q = torch.from_numpy(np.frombuffer(data, dtype=np.int8, offset=8 * c).astype(np.float32)).view(shape)
        view = (1, c) + (1,) * (len(shape) - 2) if c > 1 else (1,) * len(shape)
        return q.sub_(torch.from_numpy(zp.astype(np.float32)).view(view)).mul_(torch.from_numpy(scale).view(view))

    def payload_bytes(self, shape):
        return numel(shape) + 8 * self.channels(shape)

    def max_abs_error(self, tensor):
        scale, _ = self.params(tensor.detach().float())
        return float(scale.max()) / 2.0 * (1 + 1e-5) + 1e-7


def _zstd():
    try:
        import zstandard
    except ImportError as exc:  # a declared dependency; say so rather than fail obscurely
        raise ConfigError("the zstd codecs need the package zstandard (pip install zstandard)") from exc
    return zstandard


def bit_pack(symbols: np.ndarray, bits: int) -> bytes:
    """Pack integer ``symbols`` (each ``< 2**bits``) at ``bits`` bits each, most significant bit first."""
    s = np.ascontiguousarray(symbols, dtype=np.uint8).reshape(-1)
    planes = (s[:, None] >> np.arange(bits - 1, -1, -1, dtype=np.uint8)) & 1
    return np.packbits(planes.reshape(-1)).tobytes()


def bit_unpack(data: bytes | bytearray | memoryview, count: int, bits: int) -> np.ndarray:
    """The ``count`` symbols of :func:`bit_pack`."""
    flat = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * bits]
    if flat.size != count * bits:
        raise InputError(f"a bit-packed payload holds fewer than {count} symbols of {bits} bits")
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint16)
    return (flat.reshape(count, bits).astype(np.uint16) @ weights).astype(np.uint8)


class BottleneckCodec(Codec):
    """A learned bottleneck (:class:`edgent.model.bottleneck.Bottleneck`) as a codec: ``encode`` runs its encoder
    (on the device), ``decode`` its decoder (on the edge). Payload: one flag byte (0: bit-packed symbols, 1: the
    same zstandard-compressed, whichever is smaller), then the symbols of the batch."""

    kind = "tensor"
    lossless = False
    exact_size = False

    def __init__(self, neck) -> None:
        self.neck = neck.eval()
        self.spec = neck.spec
        self.name = self.spec.name
        self.point = self.spec.point

    def _check_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        shape = check_shape(shape)
        if tuple(shape[1:]) != tuple(self.spec.in_shape):
            raise InputError(f"codec {self.name} carries the tensor after {self.spec.after_unit} "
                             f"(batch, {', '.join(map(str, self.spec.in_shape))}) only, got {list(shape)}")
        return shape

    def encode(self, tensor):
        t = _float_tensor(tensor, self.name).to(torch.float32)
        self._check_shape(tuple(t.shape))
        with torch.inference_mode():
            q = self.neck.encode_symbols(t)
        packed = bit_pack(q.numpy(), self.spec.bits_per_symbol)
        z = _zstd().ZstdCompressor(level=19, write_content_size=True).compress(packed)
        return b"\x01" + z if len(z) < len(packed) else b"\x00" + packed

    def _packed_bytes(self, shape: Sequence[int]) -> tuple[int, int]:
        count = shape[0] * math.prod(self.spec.code_shape)
        return count, (count * self.spec.bits_per_symbol + 7) // 8

    def decode(self, data, shape):
        shape = self._check_shape(shape)
        count, packed_len = self._packed_bytes(shape)
        if not len(data) or data[0] not in (0, 1):
            raise InputError(f"codec {self.name}: the payload does not start with a valid flag byte")
        body = bytes(data[1:])
        if data[0] == 1:
            try:
                body = _zstd().ZstdDecompressor().decompress(body, max_output_size=packed_len)
            except _zstd().ZstdError as exc:
                raise InputError(f"codec {self.name}: the payload is not valid zstd data: {exc}") from exc
        if len(body) != packed_len:
            raise InputError(f"codec {self.name}: {len(body)} bytes of symbols, expected {packed_len}")
        q = bit_unpack(body, count, self.spec.bits_per_symbol)
        if int(q.max(initial=0)) >= self.spec.levels:
            raise InputError(f"codec {self.name}: a symbol is beyond the code's {self.spec.levels} levels")
        sym = torch.from_numpy(q.copy()).view(shape[0], *self.spec.code_shape)
        with torch.inference_mode():
            return self.neck.decode_symbols(sym).clone()

    def payload_bytes(self, shape):
        """A bound: the flag byte and the bit-packed symbols (compression is used only when smaller)."""
        _, packed_len = self._packed_bytes(self._check_shape(shape))
        return 1 + packed_len

    def max_abs_error(self, tensor):
        return float("inf")


class CompressedZstdCodec(Codec):
    """Lossless zstandard compression (level 3) on top of another codec's payload."""

    exact_size = False

    def __init__(self, inner: Codec, level: int = 3) -> None:
        if isinstance(inner, (JpegCodec, BottleneckCodec)):
            raise ConfigError(f"{inner.name} is already compressed; use it without a compression suffix")
        self.inner = inner
        self.level = level
        self.name = f"{inner.name}+zstd"
        self.kind = inner.kind
        self.lossless = inner.lossless

    def encode(self, tensor):
        return _zstd().ZstdCompressor(level=self.level, write_content_size=True).compress(self.inner.encode(tensor))

    def decode(self, data, shape):
        limit = self.inner.payload_bytes(shape)
        try:
            raw = _zstd().ZstdDecompressor().decompress(bytes(data), max_output_size=limit)
        except _zstd().ZstdError as exc:
            raise InputError(f"codec {self.name}: the payload is not valid zstd data within {limit} bytes: "
                             f"{exc}") from exc
        return self.inner.decode(raw, shape)

    def payload_bytes(self, shape):
        n = self.inner.payload_bytes(shape)
        return n + n // 128 + 64  # zstd's worst case for incompressible data, with its frame header

    def max_abs_error(self, tensor):
        return self.inner.max_abs_error(tensor)


_BASE: dict[str, type[Codec]] = {"float32": Float32Codec, "float16": Float16Codec, "int8": Int8Codec,
                                  "int8c": Int8ChannelCodec, "uint8": Uint8Codec}
_COMPRESSORS = ("zlib", "zstd")
_CACHE: dict[str, Codec] = {}
_REGISTERED: dict[str, Codec] = {}


def register_codec(codec: Codec) -> Codec:
    """Make ``codec`` (e.g. a :class:`BottleneckCodec` of weights not in the package) selectable by its name in
    this process, ahead of the package's own; returns it."""
    _REGISTERED[codec.name] = codec
    _CACHE.pop(codec.name, None)
    return codec


def unregister_codec(name: str) -> None:
    """Undo :func:`register_codec`."""
    _REGISTERED.pop(name, None)
    _CACHE.pop(name, None)


def _bottleneck_codec(model: str) -> Codec:
    from edgent.model.bottleneck import bottleneck_path, load_bottleneck

    return BottleneckCodec(load_bottleneck(bottleneck_path(model)))


def codec_names(compressed: bool = True) -> list[str]:
    """The codec names :func:`get_codec` accepts (JPEG qualities other than 90 are also accepted: ``jpeg75``)."""
    base = list(_BASE) + ["jpeg"]
    if compressed:
        base += [f"{b}+{c}" for b in _BASE for c in _COMPRESSORS]
    return base


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (see the module docstring); a clear ConfigError for unknown names."""
    if not isinstance(name, str):
        raise ConfigError(f"a codec name must be a string, got {type(name).__name__}")
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _CACHE:
        return _CACHE[name]
    if name.startswith("bneck-"):
        codec_b = _bottleneck_codec(name[len("bneck-"):])
        _CACHE[name] = codec_b
        return codec_b
    base, _, comp = name.partition("+")
    m = re.fullmatch(r"jpeg(\d{1,3})?(a)?", base)
    if m and (m.group(1) or not m.group(2)):
        q = int(m.group(1)) if m.group(1) else 90
        codec: Codec = JpegAbbreviatedCodec(q) if m.group(2) else JpegCodec(q)
    elif base in _BASE:
        codec = _BASE[base]()
    else:
        raise ConfigError(f"unknown codec {name!r}; known: {', '.join(codec_names())} (and jpegQQ, jpegQQa, e.g. jpeg75, jpeg75a)")
    if comp:
        if comp not in _COMPRESSORS:
            raise ConfigError(f"unknown compression {comp!r} in codec {name!r}; known: {', '.join(_COMPRESSORS)}")
        codec = CompressedCodec(codec) if comp == "zlib" else CompressedZstdCodec(codec)
    if len(_CACHE) < 256:
        _CACHE[name] = codec
    return codec


__all__ = ["Codec", "Float32Codec", "Float16Codec", "Int8Codec", "Int8ChannelCodec", "Uint8Codec", "JpegCodec",
           "JpegAbbreviatedCodec",
           "CompressedCodec", "CompressedZstdCodec", "BottleneckCodec", "register_codec", "unregister_codec",
           "bit_pack", "bit_unpack",
           "get_codec", "codec_names", "check_shape", "numel", "MAX_ELEMENTS",
           "CodecThroughput", "measure_throughput"]


@dataclass(frozen=True)
class CodecThroughput:
    """Encode and decode speed of one codec on one tensor, in bytes of float32 input per second."""

    codec: str
    tensor_bytes: int
    payload_bytes: int
    encode_bytes_per_s: float
    decode_bytes_per_s: float


def measure_throughput(name: str, tensor: torch.Tensor, min_time_s: float = 0.2) -> CodecThroughput:
    """Time ``encode`` and ``decode`` of codec ``name`` on ``tensor`` (repeated for at least ``min_time_s``).

    Throughput counts the tensor's in-memory size (4 bytes per value for float inputs, 1 for pixels) per
    second, so that codecs compare on the same work."""
    import time

    codec = get_codec(name)
    data = codec.encode(tensor)
    shape = tuple(tensor.shape)
    size = tensor.numel() * tensor.element_size()

    def rate(fn) -> float:
        reps, elapsed = 0, 0.0
        best = float("inf")
        while elapsed < min_time_s or reps < 3:
            t0 = time.perf_counter()
            fn()
            dt = time.perf_counter() - t0
            best = min(best, dt)
            elapsed += dt
            reps += 1
        return size / best

    enc = rate(lambda: codec.encode(tensor))
    dec = rate(lambda: codec.decode(data, shape))
    return CodecThroughput(name, size, len(data), enc, dec)
