"""Fuzzing the edge server: >= 10,000 malformed, truncated, oversized, wrong-version, wrong-type and wrong-token
messages, decompression bombs (JPEG headers claiming 65535 x 65535 pixels, zlib streams inflating past the
shape), compressed payloads with trailing bytes and metadata holding NaN or Infinity, sent one at a time or
pipelined, each answered with a clear ERROR frame or a closed connection, while well-formed devices keep being
served correctly, and without memory growth in the server process."""

from __future__ import annotations

import asyncio
import io
import json
import random
import struct
import threading
import zlib

import pytest
import torch

from edgent.model.zoo import load_for_inference
from edgent.data.cifar10 import to_model_input
from edgent.runtime import DeviceClient
from edgent.runtime.local import free_port, rss_bytes, serve_process, stop_process
from edgent.runtime.protocol import HEADER, HEADER_BYTES, MAGIC, MsgType, encode_frame, parse_meta

MODEL = "alexnet-cifar10"
TOKEN = "fuzz-token"
FATAL = {"bad_magic", "bad_version", "bad_type", "too_large", "unauthorized", "hello_required"}


def _header(version=1, msg_type=3, meta_len=0, payload_len=0, magic=MAGIC) -> bytes:
    return HEADER.pack(magic, version, msg_type, 0, meta_len, payload_len)


def fatal_case(rng: random.Random) -> tuple[bytes, str | None]:
    """A message after which the server must answer an ERROR with this code (or None: just close)."""
    kind = rng.randrange(8)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(16)).replace(b"EDGT", b"EDGX"), "bad_magic"
    if kind == 1:
        return _header(version=rng.choice([0, 2, 3, 255])), "bad_version"
    if kind == 2:
        return _header(msg_type=rng.choice([0, 9, 10, 14, 16, 200])), "bad_type"
    if kind == 3:
        return _header(meta_len=rng.randrange(16 * 1024 + 1, 1 << 32)), "too_large"
    if kind == 4:
        return _header(meta_len=2, payload_len=rng.randrange(64 * 1024 * 1024 + 1, 1 << 32)), "too_large"
    if kind == 5:
        token = rng.choice(["", "x", TOKEN[:-1], TOKEN + "x", "A" * 1000, "\ud800", "\udfff" + TOKEN])
        return encode_frame_raw(MsgType.HELLO, {"token": token} if token else {}), "unauthorized"
    if kind == 6:
        if rng.random() < 0.5:  # a HELLO that declares more than a handshake, before any token check
            return _header(msg_type=1, meta_len=rng.randrange(0, 64), payload_len=rng.randrange(1, 64 << 20)), \
                "too_large"
        return encode_frame(MsgType.INFER, {"model": MODEL, "exit": 1, "partition": 0}), "hello_required"
    # truncated: a header that promises more than is sent, then the device goes away
    frame = encode_frame(MsgType.HELLO, {"token": TOKEN, "pad": "x" * rng.randrange(1, 200)})
    return frame[: rng.randrange(1, len(frame))], None


def encode_frame_raw(msg_type: MsgType, meta: dict) -> bytes:
    """A frame whose meta may hold what ``encode_frame`` refuses (lone surrogates are written as JSON escapes)."""
    body = json.dumps(meta).encode()
    return _header(msg_type=int(msg_type), meta_len=len(body)) + body


def _jpeg_bomb(rng: random.Random) -> bytes:
    """A JPEG payload (the jpeg codec's layout) for one 32 x 32 image whose header claims a huge size."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), tuple(rng.randrange(256) for _ in range(3))).save(buf, format="JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    side = rng.choice([65535, 40000, 20000, 33])
    jpeg[sof + 5: sof + 9] = struct.pack(">HH", side, side)
    return struct.pack("<II", 1, len(jpeg)) + bytes(jpeg)


def soft_case(rng: random.Random) -> tuple[bytes, str]:
    """A well-framed but bad request on an authenticated connection: ERROR, connection stays open."""
    kind = rng.randrange(9)
    if kind == 0:  # meta that is not JSON / not an object
        meta = rng.choice([b"{", b"[1,2]", b"\xff\xfe", b"null", b"{'a':1}",
                           bytes(rng.getrandbits(8) for _ in range(20))])
        return _header(msg_type=3, meta_len=len(meta)) + meta, "bad_meta"
    if kind == 6:  # non-finite numbers, which JSON does not have (Python's json module reads them)
        meta = rng.choice([b'{"id": NaN}', b'{"id": 1, "exit": Infinity}', b'{"shape": [1, -Infinity]}'])
        return _header(msg_type=rng.choice([3, 5, 7]), meta_len=len(meta)) + meta, "bad_meta"
    meta = {"id": rng.randrange(1 << 30), "model": MODEL, "exit": rng.randrange(1, 6), "partition": 0,
            "codec": "float32", "shape": [1, 3, 32, 32]}
    payload = b""
    if kind == 1:
        meta[rng.choice(["model", "exit", "partition", "codec", "shape"])] = rng.choice(
            [None, -1, 10**9, "x", [1, 2], {"a": 1}, 1.5, True, [0, 3, 32, 32], [10**6] * 8])
    elif kind == 2:
        payload = bytes(rng.randrange(0, 5000))  # wrong size for the shape
    elif kind == 3:
        meta["codec"] = rng.choice(["int8", "float16+zlib", "jpeg", "uint8+zlib"])
        payload = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))  # undecodable
    elif kind == 4:
        meta["shape"] = [rng.randrange(257, 100000), 3, 32, 32]  # batch too large
    elif kind == 7:  # decompression bombs: a JPEG header claiming a huge image, zlib inflating past the shape
        if rng.random() < 0.5:
            meta["codec"], payload = "jpeg", _jpeg_bomb(rng)
        else:
            meta["codec"], payload = "uint8+zlib", zlib.compress(bytes(3072 * rng.randrange(2, 64)), 9)
    elif kind == 8:  # a valid compressed payload followed by trailing bytes
        meta["codec"] = rng.choice(["float32+zlib", "uint8+zlib"])
        raw = bytes(3072 * (4 if meta["codec"] == "float32+zlib" else 1))
        payload = zlib.compress(raw) + bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 32)))
    else:
        return encode_frame(MsgType.HELLO, {"token": TOKEN}), "bad_request"  # a second HELLO
    return encode_frame(MsgType.INFER, meta, payload), "bad_request"


async def _read_reply(reader: asyncio.StreamReader) -> dict | None:
    """The ERROR meta of the next frame, or None when the server closed the connection."""
    try:
        head = await asyncio.wait_for(reader.readexactly(HEADER_BYTES), 10)
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    _, version, msg_type, _, meta_len, payload_len = HEADER.unpack(head)
    body = await reader.readexactly(meta_len + payload_len)
    assert msg_type == MsgType.ERROR, f"expected an ERROR frame, got type {msg_type}"
    return parse_meta(body[:meta_len])


async def _fuzz(port: int, n_fatal: int, n_soft: int, seed: int, concurrency: int = 8) -> dict[str, int]:
    rng = random.Random(seed)
    counts: dict[str, int] = {}
    fatal_cases = [fatal_case(rng) for _ in range(n_fatal)]
    soft_cases = [soft_case(rng) for _ in range(n_soft)]
    sem = asyncio.Semaphore(concurrency)

    async def one_fatal(data: bytes, code: str | None) -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(data)
                await writer.drain()
                if code is None:
                    writer.close()
                    counts["truncated"] = counts.get("truncated", 0) + 1
                    return
                err = await _read_reply(reader)
                assert err is not None and err["code"] == code and err["fatal"] and err["message"], (code, err)
                assert await _read_reply(reader) is None  # and the connection is closed
                counts[code] = counts.get(code, 0) + 1
            finally:
                writer.close()

    async def soft_batch(batch: list[tuple[bytes, str]], pipelined: bool) -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(encode_frame(MsgType.HELLO, {"token": TOKEN}))
            await writer.drain()
            head = await reader.readexactly(HEADER_BYTES)
            await reader.readexactly(sum(HEADER.unpack(head)[4:6]))
            if pipelined:  # every frame at once, then the answers, in order
                writer.write(b"".join(data for data, _ in batch))
                await writer.drain()
            for data, code in batch:
                if not pipelined:
                    writer.write(data)
                    await writer.drain()
                err = await _read_reply(reader)
                assert err is not None and err["code"] == code and not err["fatal"] and err["message"], (code, err)
                counts[code] = counts.get(code, 0) + 1
            mode = "_pipelined_batches" if pipelined else "_one_by_one_batches"
            counts[mode] = counts.get(mode, 0) + 1
            writer.close()

    tasks = [one_fatal(d, c) for d, c in fatal_cases]
    tasks += [soft_batch(soft_cases[i : i + 50], pipelined=(i // 50) % 2 == 1) for i in range(0, len(soft_cases), 50)]
    rng.shuffle(tasks)
    await asyncio.gather(*tasks)
    return counts


@pytest.mark.slow
def test_fuzz_ten_thousand_bad_messages():
    chain = load_for_inference(MODEL, random_weights=True, seed=0)
    images = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(9))
    with torch.inference_mode():
        ref = chain(to_model_input(images), exit=5)
    port = free_port()
    proc = serve_process(port, extra=["--token", TOKEN, "--threads", "1"])
    stop = threading.Event()
    good = {"served": 0, "bad": []}

    def well_formed_device() -> None:
        with DeviceClient("127.0.0.1", port, chain, token=TOKEN, device_exit_ms={5: 1.0}) as c:
            while not stop.is_set():
                r = c.infer(images, 5, 2, "float32", fallback=False)
                if not torch.allclose(r.logits, ref, atol=1e-4):
                    good["bad"].append("wrong logits")
                good["served"] += 1

    dev = threading.Thread(target=well_formed_device)
    try:
        dev.start()
        warm = asyncio.run(_fuzz(port, 1000, 1000, seed=1))  # warm up allocator pools and caches
        rss_before = rss_bytes(proc.pid)
        served_before = good["served"]
        counts = asyncio.run(_fuzz(port, 5000, 5000, seed=2))
        rss_after = rss_bytes(proc.pid)
        stop.set()
        dev.join(30)
        batches = {k: counts.pop(k) for k in list(counts) if k.startswith("_")}
        total = sum(counts.values()) + sum(v for k, v in warm.items() if not k.startswith("_"))
        assert total >= 12000 and sum(counts.values()) == 10000
        assert set(counts) >= FATAL | {"bad_meta", "bad_request", "truncated"}, counts
        assert batches["_pipelined_batches"] >= 50 and batches["_one_by_one_batches"] >= 50, batches
        assert not good["bad"] and good["served"] > served_before + 10, good
        growth_mb = (rss_after - rss_before) / 2**20
        assert growth_mb < 8, f"server memory grew by {growth_mb:.1f} MiB over 10,000 bad messages"
        print(json.dumps({"counts": counts, "rss_growth_mib": round(growth_mb, 2), "served": good["served"]}))
        assert proc.poll() is None  # still alive
    finally:
        stop.set()
        dev.join(30)
        assert stop_process(proc) == 0
