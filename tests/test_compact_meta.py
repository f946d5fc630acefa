"""The compact meta of INFER and RESULT frames: its layout round-trips, bad bytes are refused without losing the
connection, an edge announces it and a device uses it only then, and both metas give the same answers."""

from __future__ import annotations

import math
import struct

import pytest
import torch

from edgent.runtime import DeviceClient, ServerConfig
from edgent.runtime.local import ThreadedServer
from edgent.runtime.protocol import (COMPACT_META_VERSION, FLAG_COMPACT, HEADER, LOAD_COUNT_KEYS, LOAD_MS_KEYS,
                                     MAGIC, VERSION, CompactMeta,
                                     FrameParser, MsgType, ProtocolError, decode_infer_meta, decode_result_meta,
                                     encode_frame, encode_frame_json, encode_infer_meta, encode_meta,
                                     encode_result_meta, recv_frame)

MODEL = "alexnet-cifar10"  # the conftest's ``chain`` fixture
PLAN = encode_meta({"model": MODEL, "exit": 1, "partition": 0, "codec": "uint8", "shape": [1, 3, 32, 32],
                    "preprocess": "cifar10"})


def _load(counts: tuple, ms: tuple) -> dict:
    return {**dict(zip(LOAD_COUNT_KEYS, counts)), **dict(zip(LOAD_MS_KEYS, ms))}


def test_infer_meta_round_trips_with_and_without_a_deadline():
    assert decode_infer_meta(encode_infer_meta(7, 81.25, PLAN)) == (7, 81.25, PLAN)
    assert decode_infer_meta(encode_infer_meta(2**64 - 1, None, PLAN)) == (2**64 - 1, None, PLAN)
    raw = encode_infer_meta(1, 5.0, b"")
    with pytest.raises(ProtocolError, match="at least") as e:
        decode_infer_meta(raw[:-1])
    assert e.value.code == "bad_meta"
    with pytest.raises(ProtocolError, match="marker must be 0 or 1"):
        decode_infer_meta(raw[:8] + b"\x02" + raw[9:])


def test_result_meta_round_trips_timings_load_classes_and_extra_fields():
    timings = {"queue_ms": 0.5, "decode_ms": 0.01, "compute_ms": 3.25, "encode_ms": 0.002, "server_ms": 3.9,
               "batch_size": 4, "replica_queue_ms": 1.5}
    raw = encode_result_meta(9, [3, 0], 10, timings, _load((2, 1, 1, 5), (3.1, None, 5.0, float("nan"))))
    assert type(raw) is CompactMeta
    meta = decode_result_meta(bytes(raw))
    assert meta["id"] == 9 and meta["shape"] == [2, 10] and meta["classes"] == [3, 0]
    assert meta["timings"] == timings  # the fixed ones exactly (f64), the others through the JSON that follows
    assert meta["load"] == {"queue_length": 2, "in_service": 1, "workers": 1, "connections": 5,
                            "mean_compute_ms": 3.1, "mean_service_ms": None, "batch_window_ms": 5.0,
                            "in_service_left_ms": None}
    # a timing the edge did not measure is left out, not sent as a number; no batch size when not batched
    meta = decode_result_meta(encode_result_meta(1, [2], 10, {"compute_ms": 1.0, "server_ms": 2.0},
                                                 _load((0, 0, 1, 1), (None, None, 0.0, None))))
    assert meta["timings"] == {"compute_ms": 1.0, "server_ms": 2.0}
    bare = bytes(encode_result_meta(1, [2, 5], 10, {}, _load((0, 0, 1, 1), (None,) * 4)))
    for cut in (bare[:20], bare[:-1]):  # the fixed fields, then the classes of its rows
        with pytest.raises(ProtocolError, match="at least") as e:
            decode_result_meta(cut)
        assert e.value.code == "bad_meta"
    with pytest.raises(ProtocolError) as e:
        decode_result_meta(bare + b"[1]")  # what follows must be a JSON object
    assert e.value.code == "bad_meta"


def test_the_parser_keeps_a_compact_meta_as_bytes_and_refuses_other_flags_but_goes_on():
    compact = encode_frame_json(MsgType.INFER, encode_infer_meta(3, None, PLAN), b"\x01\x02", FLAG_COMPACT)
    on_health = encode_frame_json(MsgType.HEALTH, b"\x00" * 17, b"", FLAG_COMPACT)
    other_flag = encode_frame_json(MsgType.INFER, encode_meta({"id": 4}), b"", 0x0002)
    after = encode_frame(MsgType.HEALTH, {"id": 5})
    p = FrameParser(1 << 20)
    p.feed(compact + on_health + other_flag + after)
    f = p.next_frame()
    assert f.type == MsgType.INFER and f.meta == {} and decode_infer_meta(f.compact) == (3, None, PLAN)
    assert bytes(f.payload) == b"\x01\x02"
    for _ in range(2):
        with pytest.raises(ProtocolError, match="flags") as e:
            p.next_frame()
        assert e.value.code == "bad_meta" and not e.value.fatal
    f = p.next_frame()
    assert f.type == MsgType.HEALTH and f.meta == {"id": 5} and f.compact is None


@pytest.fixture(scope="module")
def server(chain):
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as s:
        yield s


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))


def test_a_device_uses_the_compact_meta_only_when_the_edge_announces_it(server, chain, images):
    with DeviceClient("127.0.0.1", server.port, chain) as c:
        assert c.connect() and c.welcome["compact_meta"] == COMPACT_META_VERSION and c.compact
        sent = []
        exchange = c._exchange
        c._exchange = lambda frame, timeout_s: sent.append(frame) or exchange(frame, timeout_s)
        assert c.infer(images, 1, 0, "uint8").where == "edge"
        _, _, _, flags, _, _ = HEADER.unpack_from(sent[-1])
        assert flags == FLAG_COMPACT
        c.close()
        # an edge of the previous protocol says nothing of it: the device sends JSON
        version = server.server._welcome.pop("compact_meta")
        try:
            assert c.connect() and not c.compact
        finally:
            server.server._welcome["compact_meta"] = version
        assert c.infer(images, 1, 0, "uint8").where == "edge"
        assert HEADER.unpack_from(sent[-1])[3] == 0


def test_compact_and_json_metas_give_the_same_answers(server, chain, images):
    with DeviceClient("127.0.0.1", server.port, chain) as compact, \
            DeviceClient("127.0.0.1", server.port, chain) as plain:
        assert compact.connect() and plain.connect()
        plain.compact = False
        for ep in chain.exit_points:
            for p, codec in ((0, "uint8"), (ep.num_units // 2, "float32"), (ep.num_units - 1, "int8")):
                a = compact.infer(images, ep.exit, p, codec, deadline_ms=5000)
                b = plain.infer(images, ep.exit, p, codec, deadline_ms=5000)
                assert a.where == b.where == "edge", (a.fallback_reason, b.fallback_reason)
                assert torch.equal(a.logits, b.logits) and a.classes == b.classes == a.logits.argmax(1).tolist()
                assert set(a.server_timings_ms) == set(b.server_timings_ms)
                assert set(a.edge_load) == set(b.edge_load) and a.edge_load["workers"] == 1
                assert all(math.isfinite(v) for v in a.server_timings_ms.values())


def _raw_client(port: int):
    import socket

    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(encode_frame(MsgType.HELLO, {}))
    assert recv_frame(s).type == MsgType.WELCOME
    return s


def _infer(s, meta: bytes, payload: bytes):
    s.sendall(encode_frame_json(MsgType.INFER, meta, payload, FLAG_COMPACT))
    return recv_frame(s)


def test_the_edge_refuses_bad_compact_requests_and_keeps_the_connection(server):
    s = _raw_client(server.port)
    try:
        pixels = bytes(3072)
        for meta, code, msg in [
            (b"\x00" * 5, "bad_meta", "at least"),
            (struct.pack("!QBd", 1, 7, 1.0) + PLAN, "bad_meta", "marker"),
            (encode_infer_meta(2, None, b"{not json"), "bad_meta", "JSON"),
            (encode_infer_meta(3, None, b"[1,2]"), "bad_meta", "object"),
            (encode_infer_meta(4, None, PLAN.replace(b'"exit":1', b'"exit":9')), "bad_request", "exit 9"),
            (encode_infer_meta(5, float("nan"), PLAN), "bad_request", "deadline_ms"),
            (encode_infer_meta(6, -3.0, PLAN), "bad_request", "deadline_ms"),
            (encode_infer_meta(7, math.inf, PLAN), "bad_request", "deadline_ms"),
        ]:
            f = _infer(s, meta, pixels)
            assert f.type == MsgType.ERROR and f.meta["code"] == code and msg in f.meta["message"], f.meta
            assert not f.meta["fatal"]
        f = _infer(s, encode_infer_meta(8, None, PLAN), pixels[:-1])  # the payload is checked on every request
        assert f.type == MsgType.ERROR and "does not fit" in f.meta["message"] and f.meta["id"] == 8
        f = _infer(s, encode_infer_meta(9, 50.0, PLAN), pixels)  # the connection still serves
        assert f.type == MsgType.RESULT and f.compact is not None and decode_result_meta(f.compact)["id"] == 9
    finally:
        s.close()


def test_a_bad_compact_answer_is_a_protocol_error_and_the_device_falls_back(chain, images, monkeypatch):
    import edgent.runtime.server as server_module

    def broken(*args, **kwargs):
        return CompactMeta(b"\x00" * 3)

    monkeypatch.setattr(server_module, "encode_result_meta", broken)
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1)) as s, \
            DeviceClient("127.0.0.1", s.port, chain) as c:
        assert c.connect() and c.compact
        r = c.infer(images, 1, 0, "uint8", deadline_ms=10_000)
        assert r.where == "fallback" and "compact RESULT meta" in r.fallback_reason
        with pytest.raises(ProtocolError):
            c.infer(images, 1, 0, "uint8", fallback=False)


def test_a_compact_frame_keeps_the_header_of_version_1():
    raw = encode_frame_json(MsgType.INFER, encode_infer_meta(1, None, PLAN), b"", FLAG_COMPACT)
    magic, version, t, flags, meta_len, payload_len = HEADER.unpack_from(raw)
    assert (magic, version, t, flags, meta_len, payload_len) == (MAGIC, VERSION, MsgType.INFER, FLAG_COMPACT,
                                                                 17 + len(PLAN), 0)
