"""Codecs: exact sizes, round trips within each codec's stated error bound, and clear errors for bad input."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from edgent.codec import codec_names, get_codec, measure_throughput
from edgent.errors import ConfigError, InputError

FLOAT_CODECS = ["float32", "float16", "int8", "float32+zlib", "float16+zlib", "int8+zlib"]


@pytest.mark.parametrize("name", FLOAT_CODECS)
@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (2, 64, 8, 8), (4, 10), (1, 1)])
def test_float_round_trip_within_bound(name, shape):
    g = torch.Generator().manual_seed(1)
    t = torch.randn(shape, generator=g) * 3
    c = get_codec(name)
    data = c.encode(t)
    out = c.decode(data, shape)
    assert out.dtype == torch.float32 and tuple(out.shape) == shape
    err = float((out - t).abs().max())
    assert err <= c.max_abs_error(t)
    if name.startswith("float32"):
        assert torch.equal(out, t)
    elif t.numel() > 1:
        assert err > 0  # lossy codecs do lose something on random data: the bound is not vacuous


@pytest.mark.parametrize("name,per_value,extra", [("float32", 4, 0), ("float16", 2, 0), ("int8", 1, 8),
                                                  ("uint8", 1, 0)])
def test_payload_bytes_exact(name, per_value, extra):
    shape = (2, 16, 5, 7)
    n = int(np.prod(shape))
    c = get_codec(name)
    assert c.exact_size and c.payload_bytes(shape) == per_value * n + extra
    t = torch.randint(0, 256, shape, dtype=torch.uint8) if name == "uint8" else torch.randn(shape)
    assert len(c.encode(t)) == c.payload_bytes(shape)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=300))
def test_int8_error_bound_property(values):
    t = torch.tensor(values, dtype=torch.float32).view(1, -1)
    c = get_codec("int8")
    out = c.decode(c.encode(t), t.shape)
    assert float((out - t).abs().max()) <= c.max_abs_error(t)


def test_int8_constant_and_zero_tensors():
    c = get_codec("int8")
    for v in (0.0, 5.0, -2.5):
        t = torch.full((1, 4, 4), v)
        out = c.decode(c.encode(t), t.shape)
        assert float((out - t).abs().max()) <= c.max_abs_error(t)


def test_pixels_uint8_and_jpeg():
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8, generator=g)
    assert torch.equal(get_codec("uint8").decode(get_codec("uint8").encode(img), img.shape), img)
    assert torch.equal(get_codec("uint8+zlib").decode(get_codec("uint8+zlib").encode(img), img.shape), img)
    smooth = torch.arange(32).view(1, 1, 1, 32).expand(2, 3, 32, 32).to(torch.uint8).mul(8).contiguous()
    for name in ("jpeg", "jpeg50"):
        c = get_codec(name)
        data = c.encode(smooth)
        out = c.decode(data, smooth.shape)
        assert out.dtype == torch.uint8 and out.shape == smooth.shape
        assert len(data) < smooth.numel()  # a smooth image compresses
        assert float((out.float() - smooth.float()).abs().mean()) < 8


@pytest.mark.parametrize("quality", [90, 75, 25])
@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (3, 3, 32, 32), (2, 1, 24, 40)])
def test_abbreviated_jpeg_decodes_to_the_full_jpeg_pixels_in_fewer_bytes(quality, shape):
    """jpegQQa drops only the tables and frame header both sides derive: the same pixels as jpegQQ, bit for bit,
    each image smaller by the header's size; a payload with other tables, or lengths that do not add up, is
    refused."""
    g = torch.Generator().manual_seed(quality + shape[0])
    img = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    img = (img.float().cumsum(-1) / torch.arange(1, shape[-1] + 1)).to(torch.uint8)  # smoother, photo-like
    full, abbr = get_codec(f"jpeg{quality}"), get_codec(f"jpeg{quality}a")
    assert abbr.name == f"jpeg{quality}a" and abbr.kind == "pixels"
    data = abbr.encode(img)
    assert torch.equal(abbr.decode(data, img.shape), full.decode(full.encode(img), img.shape))
    head = abbr.tables_header(*shape[1:])
    assert len(data) == len(full.encode(img)) - shape[0] * (len(head) + 2) + 4
    bad_tables = data[:4] + struct.pack("<I", (struct.unpack_from("<I", data, 4)[0] + 1) % 2**32) + data[8:]
    with pytest.raises(InputError, match="tables differ"):
        abbr.decode(bad_tables, img.shape)
    with pytest.raises(InputError, match="add up"):
        abbr.decode(data[:-1], img.shape)
    with pytest.raises(InputError, match="holds|hold"):
        abbr.decode(data, (shape[0] + 1, *shape[1:]))
    with pytest.raises(ConfigError, match="unknown codec"):
        get_codec("jpega")


def test_compression_shrinks_sparse_tensors():
    t = torch.relu(torch.randn(1, 64, 16, 16) - 1.0)  # mostly zeros, like a ReLU output
    assert len(get_codec("float32+zlib").encode(t)) < 0.6 * len(get_codec("float32").encode(t))


def test_clear_errors():
    with pytest.raises(ConfigError, match="unknown codec"):
        get_codec("float64")
    with pytest.raises(ConfigError, match="unknown compression"):
        get_codec("int8+brotli")
    with pytest.raises(ConfigError, match="already compressed"):
        get_codec("jpeg+zlib")
    with pytest.raises(InputError, match="must be 40 bytes"):
        get_codec("float32").decode(b"\0" * 39, (1, 10))
    with pytest.raises(InputError, match="floating-point"):
        get_codec("float32").encode(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(InputError, match="uint8 pixels"):
        get_codec("uint8").encode(torch.zeros(1, 3, 2, 2))
    with pytest.raises(InputError, match="NaN"):
        get_codec("int8").encode(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(InputError, match="float16"):
        get_codec("float16").encode(torch.tensor([[1e6]]))
    with pytest.raises(InputError, match="positive"):
        get_codec("float32").decode(b"", (0, 3))
    with pytest.raises(InputError, match="integers"):
        get_codec("float32").decode(b"", ("a",))
    get_codec("float32").decode(b"\0" * 40, (1, 10))  # a checked shape is cached: lookalikes must still fail
    for lookalike in ((True, 10), (np.int64(1), 10.0), [1, 10.0]):
        with pytest.raises(InputError, match="integers"):
            get_codec("float32").decode(b"\0" * 40, lookalike)
    with pytest.raises(InputError, match="more than"):
        get_codec("float32").decode(b"", (1 << 20, 1 << 20))
    with pytest.raises(InputError, match="quantisation"):
        get_codec("int8").decode(b"\0" * 8 + b"\1", (1, 1))  # scale 0
    with pytest.raises(InputError, match="not valid zlib"):
        get_codec("float32+zlib").decode(b"garbage!", (1, 2))
    with pytest.raises(InputError, match="inflates beyond"):  # a decompression bomb stops at the bound
        get_codec("float32+zlib").decode(zlib.compress(bytes(1 << 20)), (1, 2))
    with pytest.raises(InputError, match="cannot be decoded|not a"):
        get_codec("jpeg").decode(b"\1\0\0\0\4\0\0\0abcd", (1, 3, 8, 8))


def test_codec_names_all_resolve():
    for name in codec_names():
        assert get_codec(name).name == name


def test_throughput_measurement_is_real():
    r = measure_throughput("float32", torch.randn(1, 64, 32, 32), min_time_s=0.02)
    assert r.tensor_bytes == 4 * 64 * 32 * 32 and r.payload_bytes == r.tensor_bytes
    assert r.encode_bytes_per_s > 1e8 and r.decode_bytes_per_s > 1e8


def test_zlib_payload_with_trailing_bytes_is_refused():
    import zlib

    codec = get_codec("float32+zlib")
    t = torch.arange(12, dtype=torch.float32).view(1, 12)
    data = codec.encode(t)
    assert torch.equal(codec.decode(data, (1, 12)), t)
    with pytest.raises(InputError, match="follow the end of the zlib stream"):
        codec.decode(data + b"\x00", (1, 12))
    with pytest.raises(InputError, match="follow the end"):
        codec.decode(data + zlib.compress(b"more"), (1, 12))


@pytest.mark.parametrize("side", [65535, 20000, 33])
def test_jpeg_header_claiming_another_size_is_refused_before_decoding(side):
    import io
    import struct

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", side, side)
    payload = struct.pack("<II", 1, len(jpeg)) + bytes(jpeg)
    with pytest.raises(InputError, match="cannot be decoded|is not a 32x32 JPEG"):
        get_codec("jpeg").decode(payload, (1, 3, 32, 32))
