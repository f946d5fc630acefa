"""The frame parser of callback-driven reading (``FrameParser``) and the edge server's connections served from
protocol callbacks: frames split anywhere or sent together, a bad header refused at once, a peer gone mid-frame."""

from __future__ import annotations

import socket

import pytest
import torch

from edgent.runtime import DeviceClient, ServerConfig
from edgent.runtime.local import ThreadedServer
from edgent.runtime.protocol import (HEADER, MAGIC, MAX_HELLO_META_BYTES, FrameParser, MsgType, ProtocolError,
                                     encode_frame, recv_frame)

MODEL = "alexnet-cifar10"


def _frames() -> list[bytes]:
    return [encode_frame(MsgType.INFER, {"id": 1, "shape": [1, 3]}, bytes(range(12))),
            encode_frame(MsgType.HEALTH, {"id": 2}),
            encode_frame(MsgType.PROBE, {}, b"\x00" * 70000),
            encode_frame(MsgType.HEALTH)]


def _drain(p: FrameParser) -> list:
    out = []
    while (f := p.next_frame()) is not None:
        out.append(f)
    return out


def _same(got, frames: list[bytes]) -> None:
    assert len(got) == len(frames)
    for f, raw in zip(got, frames):
        _, _, t, _, meta_len, payload_len = HEADER.unpack_from(raw)
        assert f.type == t and f.wire_bytes == len(raw) and bytes(f.payload) == raw[len(raw) - payload_len:]


def test_frames_fed_byte_by_byte_come_out_whole_and_in_order():
    frames = _frames()
    data = b"".join(frames)
    p = FrameParser(1 << 20)
    got = []
    for i in range(len(data)):
        p.feed(data[i:i + 1])
        got += _drain(p)
    _same(got, frames)
    assert got[0].meta == {"id": 1, "shape": [1, 3]} and got[1].meta == {"id": 2} and got[3].meta == {}
    assert p.buffered == 0


def test_several_frames_in_one_chunk_and_frames_split_across_chunks():
    frames = _frames()
    data = b"".join(frames)
    p = FrameParser(1 << 20)
    p.feed(data)
    got = _drain(p)
    _same(got, frames)
    assert got[2].payload.obj is data  # a frame that arrived in one chunk is a view of it, not a copy
    for cut in (5, 16, 17, 40, len(frames[0]) + 3, len(data) - 1):  # split anywhere: a header, a meta, a payload
        p = FrameParser(1 << 20)
        p.feed(data[:cut])
        first = _drain(p)
        p.feed(data[cut:])
        _same(first + _drain(p), frames)
    # a frame returned earlier keeps its bytes while later chunks arrive
    p = FrameParser(1 << 20)
    p.feed(frames[0] + frames[1][:5])
    f0 = p.next_frame()
    p.feed(frames[1][5:])
    assert p.next_frame().meta == {"id": 2} and bytes(f0.payload) == bytes(range(12))


def test_a_bad_header_is_refused_as_soon_as_it_is_in():
    big = HEADER.pack(MAGIC, 1, int(MsgType.PROBE), 0, 2, 5000)  # declares 5000 bytes, limit 4096
    p = FrameParser(4096)
    p.feed(big[:15])
    assert p.next_frame() is None and p.head_frame_bytes is None
    p.feed(big[15:])  # the header is whole: refused without waiting for (or holding) its body
    with pytest.raises(ProtocolError, match="payload of 5000 bytes exceeds the limit of 4096") as ei:
        p.next_frame()
    assert ei.value.code == "too_large" and ei.value.fatal
    for raw, code in ((b"HTTP" + bytes(12), "bad_magic"), (HEADER.pack(MAGIC, 9, 3, 0, 0, 0), "bad_version"),
                      (HEADER.pack(MAGIC, 1, 99, 0, 0, 0), "bad_type"),
                      (HEADER.pack(MAGIC, 1, 3, 0, 1 << 20, 0), "too_large")):
        p = FrameParser(4096)
        p.feed(raw)
        with pytest.raises(ProtocolError) as ei:
            p.next_frame()
        assert ei.value.code == code and ei.value.fatal


def test_check_header_refuses_from_the_header_and_a_bad_meta_consumes_its_frame():
    from edgent.runtime.server import _check_hello_header

    p = FrameParser(1 << 20, check_header=_check_hello_header)
    p.feed(HEADER.pack(MAGIC, 1, int(MsgType.HELLO), 0, MAX_HELLO_META_BYTES + 1, 0))
    with pytest.raises(ProtocolError) as ei:
        p.next_frame()
    assert ei.value.code == "too_large"
    p = FrameParser(1 << 20)
    bad = HEADER.pack(MAGIC, 1, int(MsgType.HEALTH), 0, 4, 0) + b"[1]x"
    p.feed(bad + encode_frame(MsgType.HEALTH, {"id": 3}))
    with pytest.raises(ProtocolError) as ei:
        p.next_frame()
    assert ei.value.code == "bad_meta" and not ei.value.fatal
    assert p.next_frame().meta == {"id": 3}  # the next frame follows


def test_a_frame_cut_short_stays_pending():
    raw = encode_frame(MsgType.PROBE, {"id": 1}, bytes(1000))
    p = FrameParser(1 << 20)
    p.feed(raw[:600])
    assert p.next_frame() is None and p.buffered == 600 and p.head_frame_bytes == len(raw)


# ------------------------------------------------------------------ the server's callback-driven connections
@pytest.fixture(scope="module")
def server(chain):
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, control_frames_per_s=1e6)) as s:
        yield s


def _hello() -> bytes:
    return encode_frame(MsgType.HELLO, {"client": "test"})


def test_frames_split_byte_by_byte_and_pipelined_in_one_send_are_answered_in_order(server, chain):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(_hello())
        assert recv_frame(s).type == MsgType.WELCOME
        x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
        infer = encode_frame(MsgType.INFER, {"id": 10, "model": MODEL, "exit": 1, "partition": 0, "codec": "uint8",
                                             "shape": [1, 3, 32, 32]}, x.numpy().tobytes())
        for i in range(0, len(infer), 97):  # in pieces, the last ones one byte at a time
            s.sendall(infer[i:i + 97])
        r = recv_frame(s)
        assert r.type == MsgType.RESULT and r.meta["id"] == 10
        s.sendall(b"".join(encode_frame(MsgType.HEALTH, {"id": i}) for i in range(20)) + infer)
        ids = [recv_frame(s).meta["id"] for _ in range(21)]
        assert ids == list(range(20)) + [10]


def test_a_peer_gone_mid_frame_frees_its_slot_and_others_are_served(server, chain):
    before = server.server.open_sockets
    for cut in (3, 16, 40):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(_hello())
            assert recv_frame(s).type == MsgType.WELCOME
            s.sendall(encode_frame(MsgType.PROBE, {"id": 1}, bytes(1000))[:cut])
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:  # closed half-way: nothing back
        s.sendall(_hello())
        assert recv_frame(s).type == MsgType.WELCOME
        s.sendall(encode_frame(MsgType.PROBE, {"id": 1}, bytes(1000))[:500])
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    for _ in range(200):
        if server.server.open_sockets <= before:
            break
        threading_wait(0.01)
    assert server.server.open_sockets <= before
    with DeviceClient("127.0.0.1", server.port, chain, device_exit_ms={1: 1.0}) as c:
        assert c.health()["ready"]


def test_frames_sent_before_closing_are_still_answered(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(_hello() + encode_frame(MsgType.HEALTH, {"id": 5}) + encode_frame(MsgType.PROBE, {"id": 6}, b"ab"))
        s.shutdown(socket.SHUT_WR)
        assert recv_frame(s).type == MsgType.WELCOME
        assert recv_frame(s).meta["id"] == 5
        f = recv_frame(s)
        assert f.type == MsgType.PROBE_ACK and f.meta == {"id": 6, "received_bytes": 2}


def test_advertisement_and_bad_hello_on_the_callback_path(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(encode_frame(MsgType.HELLO, {"advertise": True}))
        w = recv_frame(s)
        assert w.type == MsgType.WELCOME and w.meta["advertisement_bytes"] == len(w.payload) > 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(encode_frame(MsgType.HEALTH, {"id": 1}))
        f = recv_frame(s)
        assert f.type == MsgType.ERROR and f.meta["code"] == "hello_required"


def test_reading_pauses_beyond_the_read_buffer(chain):
    """A client that pipelines far more than the read buffer is held back by TCP, not by the edge's memory: the
    edge stops reading once more than ``read_buffer_bytes`` wait behind the frame in flight (what it holds then is
    that bound plus at most one read of the event loop, 256 KiB), and every frame is still answered in order."""
    import edgent.runtime.server as srv

    held, paused = [], []
    orig = srv._FrameProtocol.data_received

    def spy(self, data):
        orig(self, data)
        held.append(self.parser.buffered)
        paused.append(self.read_paused)

    cfg = ServerConfig(port=0, read_buffer_bytes=8192, control_frames_per_s=1e6)
    srv._FrameProtocol.data_received = spy
    try:
        with ThreadedServer({MODEL: chain}, cfg) as s, socket.create_connection(("127.0.0.1", s.port), timeout=20) as c:
            c.sendall(_hello())
            assert recv_frame(c).type == MsgType.WELCOME
            frames = b"".join(encode_frame(MsgType.PROBE, {"id": i}, bytes(4000)) for i in range(500))
            c.sendall(frames)
            for i in range(500):
                assert recv_frame(c).meta["id"] == i
    finally:
        srv._FrameProtocol.data_received = orig
    assert any(paused) and max(held) <= cfg.read_buffer_bytes + 256 * 1024 + 4100


def threading_wait(s: float) -> None:
    import threading

    threading.Event().wait(s)


def test_the_client_infer_meta_is_the_json_of_its_fields(chain):
    """The INFER meta the device encodes once per plan (then only its id and deadline change) parses to the
    same object as the fields encoded whole."""
    from edgent.codec import get_codec
    from edgent.runtime.protocol import parse_meta

    c = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={1: 1.0})
    for request_id, codec, deadline in ((1, "uint8", None), (2, "float32", 12.5), (3, "uint8", 0.001)):
        cod = get_codec(codec)
        shape = (1, 3, 32, 32)
        want = {"id": request_id, "model": MODEL, "exit": 2, "partition": 0, "codec": codec, "shape": list(shape)}
        if deadline is not None:
            want["deadline_ms"] = deadline
        if codec == "uint8":
            want["preprocess"] = c.preprocess_name
        for _ in range(2):  # encoded, then from the cache
            assert parse_meta(c._infer_meta(request_id, 2, 0, cod, shape, deadline)) == want


def test_the_answer_load_is_the_edge_load(server):
    """Every answer's ``load`` (built without the dataclass) holds the same fields and values as EdgeLoad."""
    assert server.server.load_dict() == server.server.load().to_dict()
