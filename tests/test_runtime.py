"""The co-inference runtime on loopback: equality with the local forward, token and TLS, fallback and recovery,
concurrency, records, bandwidth estimation, and bad requests answered without harm."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time

import pytest
import torch

from edgent.data.cifar10 import to_model_input
from edgent.errors import ConfigError
from edgent.runtime import (AppLink, BandwidthEstimator, DeviceClient, DeviceRuntime, RemoteError, ServerConfig,
                            client_ssl_context, make_server_ssl_context)
from edgent.runtime.compute import LocalCompute
from edgent.runtime.local import ThreadedServer, free_port, serve_process, stop_process
from edgent.runtime.protocol import HEADER, MAGIC, MsgType, ProtocolError, encode_frame, parse_header, recv_frame

MODEL = "alexnet-cifar10"  # the conftest's ``chain`` fixture: this model with seeded random weights


@pytest.fixture(scope="module")
def server(chain):
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, token="s3cret", threads=2)) as s:
        yield s


@pytest.fixture(scope="module")
def images():
    return torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))


def client_for(server, chain, **kw) -> DeviceClient:
    return DeviceClient("127.0.0.1", server.port, chain, token="s3cret", **kw)


def spread(n_units: int) -> list[int]:
    return sorted({0, 1, n_units // 3, n_units // 2, (2 * n_units) // 3, n_units - 1, n_units})


def test_every_exit_and_spread_of_points_equals_local_forward(server, chain, images):
    x = to_model_input(images)
    with client_for(server, chain) as c, torch.inference_mode():
        for ep in chain.exit_points:
            ref = chain(x, exit=ep.exit)
            for p in spread(ep.num_units):
                for codec in ("float32", "float16", "int8") if p else ("float32", "uint8", "int8+zlib"):
                    r = c.infer(images, ep.exit, p, codec)
                    assert r.where == ("device" if p == ep.num_units else "edge"), (ep.exit, p, codec)
                    assert r.exit == ep.exit and r.classes == ref.argmax(1).tolist() or codec in ("int8", "int8+zlib")
                    err = float((r.logits - ref).abs().max())
                    if codec in ("float32", "uint8") or p == ep.num_units:
                        assert err <= 1e-4, (ep.exit, p, codec, err)
                    else:  # a lossy codec: the error stays small relative to the logits
                        assert err <= 0.05 * float(ref.abs().max()) + 1e-3, (ep.exit, p, codec, err)
                    if r.where == "edge":
                        t = r.server_timings_ms
                        assert {"queue_ms", "decode_ms", "compute_ms", "encode_ms", "server_ms"} <= set(t)
                        assert r.edge_load["workers"] == 2 and r.upload_bytes > 0


def test_health_and_readiness(server, chain):
    t0 = time.perf_counter()
    with client_for(server, chain) as c:
        h = c.health()
        spent_ms = (time.perf_counter() - t0) * 1e3
        assert h["live"] and h["ready"] and h["models"] == [MODEL]
        assert c.estimator.rtt_ms is not None and 0 <= c.estimator.rtt_ms <= spent_ms  # a round trip it timed


def test_wrong_token_is_refused(server, chain):
    c = DeviceClient("127.0.0.1", server.port, chain, token="wrong", device_exit_ms={1: 1.0})
    with pytest.raises(RemoteError, match="unauthorized"):
        c.connect()
    c2 = DeviceClient("127.0.0.1", server.port, chain, device_exit_ms={1: 1.0})
    with pytest.raises(RemoteError, match="unauthorized"):
        c2.connect()


def test_bad_requests_get_clear_errors_and_keep_the_connection(server, chain):
    with client_for(server, chain) as c:
        assert c.connect()
        for meta, payload, msg in [
            ({"model": "nope", "exit": 1, "partition": 0, "shape": [1, 3, 32, 32]}, b"", "unknown model"),
            ({"model": MODEL, "exit": 9, "partition": 0, "shape": [1, 3, 32, 32]}, b"", "exit 9"),
            ({"model": MODEL, "exit": 1, "partition": 12, "shape": [1, 10]}, b"", "device runs everything"),
            ({"model": MODEL, "exit": 1, "partition": 0, "shape": [1, 3, 32, 32], "codec": "x"}, b"", "unknown codec"),
            ({"model": MODEL, "exit": 1, "partition": 0, "shape": [1, 3, 32, 31]}, b"", "does not match"),
            ({"model": MODEL, "exit": 1, "partition": 0, "shape": [1, 3, 32, 32]}, b"12", "does not fit"),
            ({"model": MODEL, "exit": 1, "partition": 2, "shape": [1, 64, 32, 32], "codec": "uint8"}, b"",
             "only partition 0"),
        ]:
            with pytest.raises(RemoteError, match=msg):
                c._exchange(encode_frame(MsgType.INFER, {"id": 1, **meta}, payload), 5)
            assert c.connected  # not fatal
        c.health()
        # the server caches checked requests: a cached exit 1 must not let exit true (== 1 in Python) through
        good = {"model": MODEL, "exit": 1, "partition": 0, "shape": [1, 3, 32, 32], "codec": "uint8"}
        assert c._exchange(encode_frame(MsgType.INFER, {"id": 2, **good}, bytes(3072)), 5).type == MsgType.RESULT
        for field, bad in (("exit", True), ("partition", False), ("shape", [True, 3, 32, 32])):
            with pytest.raises(RemoteError, match="out of range|integers"):
                c._exchange(encode_frame(MsgType.INFER, {"id": 3, **good, field: bad}, bytes(3072)), 5)
        with pytest.raises(RemoteError, match="does not fit"):  # the payload size is checked on every request
            c._exchange(encode_frame(MsgType.INFER, {"id": 4, **good}, bytes(3071)), 5)


def test_protocol_header_checks():
    good = encode_frame(MsgType.HEALTH, {"id": 1})
    assert parse_header(good[:16], 100)[0] == MsgType.HEALTH
    for bad, code in [(b"XXXX" + good[4:16], "bad_magic"), (good[:4] + b"\x09" + good[5:16], "bad_version"),
                      (good[:5] + b"\x63" + good[6:16], "bad_type"),
                      (HEADER.pack(MAGIC, 1, 3, 0, 10, 101), "too_large"),
                      (HEADER.pack(MAGIC, 1, 3, 0, 1 << 20, 0), "too_large")]:
        with pytest.raises(ProtocolError) as ei:
            parse_header(bad, 100)
        assert ei.value.code == code and ei.value.fatal


def test_tls_with_self_signed_certificate(chain, tmp_path, images):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    cfg = ServerConfig(port=0, token="t", ssl_context=make_server_ssl_context(str(cert), str(key)))
    with ThreadedServer({MODEL: chain}, cfg) as s:
        c = DeviceClient("localhost", s.port, chain, token="t", ssl_context=client_ssl_context(str(cert)))
        r = c.infer(images, 2, 3, "float32")
        assert r.where == "edge"
        with torch.inference_mode():
            assert torch.allclose(r.logits, chain(to_model_input(images), exit=2), atol=1e-4)
        c.close()
        plain = DeviceClient("127.0.0.1", s.port, chain, token="t", device_exit_ms={1: 1.0})
        assert not plain.connect()  # a plain-TCP device cannot talk to a TLS edge


def test_fallback_when_edge_unreachable_picks_exit_that_fits(chain, images):
    port = free_port()
    c = DeviceClient("127.0.0.1", port, chain, connect_timeout_s=0.5,
                     device_exit_ms={1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0, 5: 50.0})
    x = to_model_input(images)
    with torch.inference_mode():
        r = c.infer(images, 5, 3, "float32")  # no deadline: the best exit
        assert r.where == "fallback" and "unreachable" in r.fallback_reason and r.exit == 5
        assert torch.allclose(r.logits, chain(x, exit=5), atol=1e-4)
        r = c.infer(images, 5, 3, "float32", deadline_ms=30.0)  # exit 5 (50 ms x 2 images) does not fit
        assert r.where == "fallback" and r.exit == 4
        assert torch.allclose(r.logits, chain(x, exit=4), atol=1e-4)
    with pytest.raises(Exception, match="unreachable"):
        c.infer(images, 5, 3, "float32", fallback=False)


def test_records_and_configurator(server, chain, images, tmp_path):
    seen = []

    def configurator(bw, rtt, load):
        seen.append((bw, rtt, load))
        return (3, 4, "float16")

    path = tmp_path / "records.jsonl"
    with client_for(server, chain) as c, DeviceRuntime(c, configurator, deadline_ms=5000, records=path) as rt:
        for i in range(3):
            rt.infer(images[:1], label=i)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) == 3 and seen[0][0] is None and seen[-1][1] is not None and seen[-1][2] is not None
    rec = lines[-1]
    assert rec["plan"] == {"exit": 3, "partition": 4, "codec": "float16"}
    assert rec["outcome"]["where"] == "edge" and rec["outcome"]["met_deadline"] is True
    assert rec["outcome"]["label"] == 2 and rec["outcome"]["exit_used"] == 3
    m = rec["measured_ms"]
    assert m["total"] >= m["device"] and m["edge_compute"] > 0 and m["network"] > 0
    assert rec["bytes"]["upload"] > 0


def test_bandwidth_estimator_arithmetic():
    e = BandwidthEstimator(window=3)
    e.observe_rtt(2.0)
    e.observe_rtt(1.0)
    assert e.rtt_ms == 1.0
    s = e.observe_request(1000, 250, total_ms=12.0, server_ms=1.0)  # 1250 B in 10 ms = 1 Mbit/s
    assert s is not None and s.rate_bps == pytest.approx(1e6)
    e.add(1250, 5.0)  # 2 Mbit/s
    assert e.rate_bps == pytest.approx(2 / (1 / 1e6 + 1 / 2e6))  # harmonic mean
    assert e.add(10, 0.1) is None  # too short to time
    with pytest.raises(ConfigError):
        BandwidthEstimator(window=0)


def test_emulated_link_measures_its_rate(server, chain, images):
    link = AppLink(delay_ms=4.0, rate_bps=2e6, burst_bytes=1500)
    with client_for(server, chain, link=link) as c:
        for _ in range(4):
            r = c.infer(images, 5, 0, "float32")
        assert r.where == "edge"
        assert c.estimator.rtt_ms >= 4.0
        # the estimate comes from this link, not a unit slip (bytes for bits, s for ms); its arithmetic is tested
        # exactly above, and its precision on a shaped link by the slow namespace-testbed test (test_testbed.py)
        assert 1e6 < c.estimator.rate_bps < 4e6, c.estimator.rate_bps


def test_invalid_client_arguments(chain, images):
    c = DeviceClient("127.0.0.1", 1, chain, device_exit_ms={1: 1.0})
    with pytest.raises(ConfigError, match="partition"):
        c.infer(images, 1, 99)
    with pytest.raises(ConfigError, match="partition 0 only"):
        c.infer(images, 1, 2, "uint8")
    with pytest.raises(Exception, match="uint8"):
        c.infer(to_model_input(images), 1, 0, "uint8")
    r = c.infer(images, 1, chain.exit_point(1).num_units)  # all on the device: no network needed
    assert r.where == "device"


@pytest.mark.slow
def test_killed_server_fallback_and_recovery(chain, images):
    port = free_port()
    proc = serve_process(port)
    try:
        c = DeviceClient("127.0.0.1", port, chain, max_backoff_s=0.2)
        assert c.infer(images, 5, 3).where == "edge"
        stop_process(proc, sig=9)
        r = c.infer(images, 5, 3, deadline_ms=2000)
        assert r.where == "fallback" and r.fallback_reason
        with torch.inference_mode():
            assert torch.allclose(r.logits, chain(to_model_input(images), exit=r.exit), atol=1e-4)
        proc = serve_process(port)
        for _ in range(100):
            r = c.infer(images, 5, 3)
            if r.where == "edge":
                break
            threading.Event().wait(0.05)
        assert r.where == "edge"
    finally:
        stop_process(proc)


@pytest.mark.slow
def test_eight_concurrent_devices(chain, images):
    port = free_port()
    proc = serve_process(port, extra=["--threads", "2"])
    try:
        with torch.inference_mode():
            ref = chain(to_model_input(images), exit=3)
        errors: list[str] = []
        served = [0] * 8

        def device(i: int) -> None:
            try:
                with DeviceClient("127.0.0.1", port, chain, client_name=f"d{i}", device_exit_ms={3: 1.0}) as c:
                    for _ in range(10):
                        r = c.infer(images, 3, 1 + i, "float32")
                        if r.where != "edge" or not torch.allclose(r.logits, ref, atol=1e-4):
                            errors.append(f"device {i}: {r.where} {r.fallback_reason}")
                        served[i] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"device {i}: {exc!r}")

        threads = [threading.Thread(target=device, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors and served == [10] * 8
    finally:
        assert stop_process(proc) == 0  # SIGTERM: graceful shutdown exits 0


@pytest.mark.parametrize("threads,inline_when_idle", [(1, True), (1, False), (0, True)])
def test_hand_off_settings_give_the_same_answers(chain, images, threads, inline_when_idle):
    """An idle edge computes on the event loop (no thread hand-off), a busy one hands requests to the workers,
    and --threads 0 always computes inline: all three must answer alike, also to concurrent devices."""
    with torch.inference_mode():
        ref = chain(to_model_input(images), exit=2)
    cfg = ServerConfig(port=0, threads=threads, inline_when_idle=inline_when_idle)
    with ThreadedServer({MODEL: chain}, cfg) as s:
        results = []

        def device() -> None:
            with DeviceClient("127.0.0.1", s.port, chain) as c:
                results.extend(c.infer(images, 2, p, "float32") for p in (1, 3, 5, 7))

        workers = [threading.Thread(target=device) for _ in range(3)]
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        assert len(results) == 12 and all(r.where == "edge" for r in results)
        assert all(torch.allclose(r.logits, ref, atol=1e-4) for r in results)
        assert s.server.requests_served == 12


def test_overloaded_edge_answers_at_once(chain, images):
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, max_queue=1, threads=1)) as s:
        results = []

        def device() -> None:
            with DeviceClient("127.0.0.1", s.port, chain, device_exit_ms={5: 1.0}) as c:
                for _ in range(5):
                    results.append(c.infer(images.repeat(8, 1, 1, 1), 5, 0, "float32"))

        threads = [threading.Thread(target=device) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 30
        over = [r for r in results if r.where == "fallback"]
        assert all("overloaded" in r.fallback_reason for r in over)
        assert any(r.where == "edge" for r in results)


def test_raw_socket_garbage_does_not_kill_server(server, chain):
    for blob in (b"", b"GET / HTTP/1.0\r\n\r\n", bytes(100), encode_frame(MsgType.INFER, {})):
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(blob)
            s.shutdown(socket.SHUT_WR)
            data = b"".join(iter(lambda: s.recv(4096), b""))
            if data:
                f = recv_frame(_BytesSock(data))
                assert f.type == MsgType.ERROR and f.meta["code"] and f.meta["message"]
    with client_for(server, chain) as c:
        assert c.health()["ready"]


class _BytesSock:
    """A socket-like reader over bytes (for recv_frame)."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def recv_into(self, view, n):
        k = min(n, len(self.data) - self.pos)
        view[:k] = self.data[self.pos : self.pos + k]
        self.pos += k
        return k


# ---------------------------------------------------------------------------------------------- bounds of the edge server
def _hello(token: str | None = "s3cret") -> bytes:
    return encode_frame(MsgType.HELLO, {} if token is None else {"token": token})


def _connect(port: int, greet: bool = True, token: str | None = "s3cret", timeout_s: float = 10.0) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    if greet:
        s.sendall(_hello(token))
        assert recv_frame(s).type == MsgType.WELCOME
    return s


def _error_code(s: socket.socket) -> str | None:
    """The code of the next frame (an ERROR), or None when the connection ends first."""
    try:
        f = recv_frame(s)
    except (ConnectionError, OSError):
        return None
    assert f.type == MsgType.ERROR, f.type
    return f.meta["code"]


def test_server_config_refuses_settings_that_cannot_serve():
    from edgent.runtime.server import EdgeServer

    for bad in ({"max_connections": 0}, {"max_connections": 1}, {"max_payload_bytes": -1}, {"token": ""},
                {"handshake_timeout_s": 0.0}, {"min_rate_bps": float("nan")}, {"port": 70000},
                {"control_frames_per_s": float("inf")}):
        with pytest.raises(ConfigError):
            ServerConfig(**{"port": 0, **bad}).check()
        with pytest.raises(ConfigError):
            EdgeServer({MODEL: torch.nn.Identity()}, ServerConfig(**{"port": 0, **bad}))


def test_every_socket_counts_against_the_cap_and_a_device_still_gets_in(chain, images):
    """Silent sockets (no TLS, no HELLO) count; when the cap is reached the oldest silent one makes room."""
    cap = 6
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, token="s3cret", max_connections=cap)) as s:
        silent = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(3 * cap)]
        try:
            seen = []
            for _ in range(50):
                seen.append(s.server.open_sockets)
                threading.Event().wait(0.01)
            assert max(seen) <= cap and s.server.connections_evicted >= 2 * cap
            with client_for(s, chain) as c:
                for _ in range(3):
                    assert c.infer(images, 2, 0, "uint8", fallback=False).where == "edge"
            assert s.server.open_sockets <= cap
        finally:
            for x in silent:
                x.close()


def test_nothing_larger_than_a_hello_before_the_token(server):
    from edgent.runtime.protocol import MAX_HELLO_META_BYTES

    for head in (HEADER.pack(MAGIC, 1, int(MsgType.HELLO), 0, 10, 64 * 2**20),
                 HEADER.pack(MAGIC, 1, int(MsgType.HELLO), 0, MAX_HELLO_META_BYTES + 1, 0)):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
            s.sendall(head)
            assert _error_code(s) == "too_large"
            assert _error_code(s) is None


def test_lone_surrogate_token_is_refused_without_a_traceback(server, caplog):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        meta = b'{"token": "\\ud800"}'
        s.sendall(HEADER.pack(MAGIC, 1, int(MsgType.HELLO), 0, len(meta), 0) + meta)
        assert _error_code(s) == "unauthorized"
    assert "connection handler failed" not in caplog.text and "Traceback" not in caplog.text


def test_non_finite_meta_is_refused():
    from edgent.runtime.protocol import parse_meta

    for text in (b'{"id": NaN}', b'{"x": Infinity}', b'{"x": [-Infinity]}'):
        with pytest.raises(ProtocolError) as ei:
            parse_meta(text)
        assert ei.value.code == "bad_meta" and not ei.value.fatal
    assert parse_meta(b'{"x": 1e308}') == {"x": 1e308}


def test_timeouts_are_answered_with_the_documented_error(chain):
    cfg = ServerConfig(port=0, handshake_timeout_s=0.3, idle_timeout_s=0.3)
    with ThreadedServer({MODEL: chain}, cfg) as s:
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as a:  # no HELLO at all
            assert _error_code(a) == "timeout"
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as b:  # half a HELLO
            b.sendall(_hello(None)[:10])
            assert _error_code(b) == "timeout"
        with _connect(s.port, token=None) as c:  # authenticated, then idle
            assert _error_code(c) == "timeout" and _error_code(c) is None


def test_a_slow_sender_is_cut_by_the_minimum_rate(chain):
    """A body trickling in at 80 bit/s is cut after the grace, long before the whole-frame timeout (600 s)."""
    cfg = ServerConfig(port=0, min_rate_bps=8000.0, rate_grace_s=0.3, body_timeout_s=600.0)
    with ThreadedServer({MODEL: chain}, cfg) as s, _connect(s.port, token=None, timeout_s=30) as c:
        c.sendall(HEADER.pack(MAGIC, 1, int(MsgType.PROBE), 0, 2, 1000) + b"{}")
        import select

        for _ in range(300):  # a byte every 0.1 s until the server answers (or 30 s pass)
            c.sendall(b"x")
            if select.select([c], [], [], 0.1)[0]:
                break
        assert _error_code(c) == "timeout"


def test_a_device_that_stops_reading_is_closed(chain):
    cfg = ServerConfig(port=0, write_timeout_s=0.5, write_buffer_bytes=4096, control_frames_per_s=1e6)
    with ThreadedServer({MODEL: chain}, cfg) as s:
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.settimeout(10)
        c.connect(("127.0.0.1", s.port))
        c.sendall(_hello(None))
        assert recv_frame(c).type == MsgType.WELCOME
        frames = encode_frame(MsgType.HEALTH, {"id": 1}) * 256
        closed = False
        for _ in range(2000):  # keeps asking, never reads: the server's answers pile up until it gives up
            try:
                c.sendall(frames)
            except OSError:
                closed = True
                break
            if s.server.open_sockets == 0:
                closed = True
                break
        c.close()
        assert closed
        for _ in range(200):
            if s.server.open_sockets == 0:
                break
            threading.Event().wait(0.01)
        assert s.server.open_sockets == 0


def test_a_pipelining_client_does_not_starve_another(chain, images):
    """One client keeps 64 HEALTH frames in flight; another device's requests are answered meanwhile and every
    HEALTH gets its STATUS, in order."""
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, control_frames_per_s=1e6)) as s:
        stop = threading.Event()
        answered: list[int] = []
        errors: list[str] = []

        def pipeline() -> None:
            with _connect(s.port, token=None) as p:
                next_id, want = 0, 0
                for _ in range(64):
                    p.sendall(encode_frame(MsgType.HEALTH, {"id": next_id}))
                    next_id += 1
                while not stop.is_set():
                    f = recv_frame(p)
                    if f.type != MsgType.STATUS or f.meta["id"] != want:
                        errors.append(f"{f.type} {f.meta}")
                        return
                    want += 1
                    answered.append(want)
                    p.sendall(encode_frame(MsgType.HEALTH, {"id": next_id}))
                    next_id += 1

        t = threading.Thread(target=pipeline, daemon=True)
        t.start()
        try:
            with DeviceClient("127.0.0.1", s.port, chain, timeout_s=10, device_exit_ms={2: 1.0}) as c:
                results = [c.infer(images, 2, 0, "uint8", fallback=False) for _ in range(10)]
            for _ in range(1000):  # and the pipelining client keeps being answered too
                if len(answered) >= 200 or errors:
                    break
                threading.Event().wait(0.01)
        finally:
            stop.set()
            t.join(10)
        assert all(r.where == "edge" for r in results) and not errors and len(answered) >= 200


def test_jpeg_bomb_and_zlib_trailing_bytes_get_an_error_reply(server, chain):
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (32, 32)).save(buf, format="JPEG")
    jpeg = bytearray(buf.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5: sof + 9] = b"\xff\xff\xff\xff"  # the frame header claims 65535 x 65535 pixels
    bomb = struct.pack("<II", 1, len(jpeg)) + bytes(jpeg)
    x = torch.zeros(1, 3, 32, 32)
    trailing = zlib.compress(x.numpy().tobytes()) + b"garbage"
    with client_for(server, chain) as c:
        assert c.connect()
        for codec, payload, msg in (("jpeg", bomb, "cannot be decoded|is not a 32x32"),
                                    ("float32+zlib", trailing, "follow the end of the zlib stream")):
            meta = {"id": 7, "model": MODEL, "exit": 1, "partition": 0, "codec": codec, "shape": [1, 3, 32, 32]}
            with pytest.raises(RemoteError, match=msg):
                c._exchange(encode_frame(MsgType.INFER, meta, payload), 10)
            assert c.connected
        assert c.health()["ready"]


def test_emulated_link_never_sleeps_past_the_request():
    link = AppLink(rate_bps=1e-294)  # 8000 bytes would take ~1e298 s: an OverflowError in time.sleep before
    with pytest.raises(TimeoutError):
        link.pace_upload(8000, max_wait_s=0.01)
    link.set_rate(1e9)
    link.pace_upload(1000, max_wait_s=0.0)  # the refused bytes were not charged to the bucket: no wait now
    for bad in (float("nan"), float("inf"), 0.0, -1.0):
        with pytest.raises(ConfigError):
            AppLink(rate_bps=bad)


def test_the_overhead_breakdown_adds_up_to_the_overhead(server, chain):
    """`edgent bench runtime` splits each request's framework overhead into parts that add up to it, from a real
    answer's timings (client, edge decode/encode/rest, transport)."""
    from edgent.bench.runtime import OVERHEAD_PARTS, overhead_row

    client = client_for(server, chain)
    r = client.infer(torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8), 1, 0, "uint8")
    client.close()
    row = overhead_row(r, wire_ms=0.01)
    assert sum(row[k] for k in OVERHEAD_PARTS) == pytest.approx(row["overhead"], abs=1e-9)
    assert row["overhead"] == pytest.approx(r.total_ms - r.device_ms - r.server_timings_ms["compute_ms"] - 0.01)
    assert row["client"] > 0 and row["edge_decode"] >= 0 and row["edge_rest"] >= 0


def test_the_runtime_bench_compares_with_the_previous_code(tmp_path):
    """`edgent bench runtime --baseline-src DIR`: a folder without an edgent source tree is refused before anything
    starts; the comparison is the default's median over the previous default's, with both breakdowns."""
    from edgent.bench.runtime import BASELINE, loopback_overhead, versus_previous

    with pytest.raises(ConfigError, match="holds no edgent source tree"):
        loopback_overhead(1, MODEL, True, baseline_src=tmp_path)
    parts = {"client": 0.1, "edge_decode": 0.0, "edge_encode": 0.0, "edge_rest": 0.1, "transport": 0.2}
    overhead = {"default": {"overhead_ms": {"median": 0.4}, "overhead_breakdown_median_ms": parts},
                BASELINE: {"overhead_ms": {"median": 0.8}, "overhead_breakdown_median_ms": parts,
                           "source": str(tmp_path), "source_commit": "abc1234"}}
    vs = versus_previous(overhead)
    assert vs["ratio_default_over_previous"] == 0.5 and vs["previous_commit"] == "abc1234"
    assert versus_previous({"default": overhead["default"]}) is None


@pytest.mark.slow
def test_the_floor_is_measured_beside_the_default():
    """`edgent bench runtime --floor`: the same plans with no framework answer from the edge, their overhead is
    split like the default's, and the comparison gives what edgent adds to the floor."""
    from edgent.bench.runtime import FLOOR, OVERHEAD_PARTS, SERVER_VARIANTS, loopback_overhead, versus_floor

    out = loopback_overhead(4, MODEL, True, {"default": SERVER_VARIANTS["default"]}, floor=True)
    assert set(out) == {"default", FLOOR}
    for o in out.values():
        assert o["requests"] == 4 and set(o["overhead_breakdown_median_ms"]) == set(OVERHEAD_PARTS)
        assert o["median_ms"]["edge_compute"] > 0 and o["median_ms"]["total"] > o["overhead_ms"]["median"]
    vf = versus_floor(out)
    assert vf["framework_ms"] == pytest.approx(out["default"]["overhead_ms"]["median"]
                                               - out[FLOOR]["overhead_ms"]["median"], abs=1e-3)
    assert versus_floor({"default": out["default"]}) is None



class _WhereComputed(LocalCompute):
    """A local engine (one worker, inline when idle) that notes the thread of each computation and holds each
    one ``hold_s`` first (a slow edge)."""

    def __init__(self, models, hold_s: float = 0.0) -> None:
        super().__init__(models, threads=1, inline_when_idle=True)
        self.hold_s = hold_s
        self.threads_seen: list[str] = []

    def _work(self, job, payload, t_queued, t_deadline=None):
        self.threads_seen.append(threading.current_thread().name)
        time.sleep(self.hold_s)
        return super()._work(job, payload, t_queued, t_deadline)


def test_an_idle_edge_computes_inline_only_while_one_device_is_connected(chain, images):
    """Alone, a device's requests are computed on the event loop (no hand-off); with a second device connected
    the idle edge hands off, so that the second device's request, sent during the first one's computation, is
    read at once and waits in the engine's queue, where the load and its queue_ms show it (computed inline, it
    would wait unseen in its socket and report no queue)."""
    hold_s = 0.3
    engine = _WhereComputed({MODEL: chain}, hold_s)
    with ThreadedServer({MODEL: chain}, ServerConfig(port=0, threads=1), compute=engine) as s:
        with DeviceClient("127.0.0.1", s.port, chain) as a:
            assert a.infer(images[:1], 2, 3, "float32").where == "edge"
            assert engine.threads_seen and not engine.threads_seen[-1].startswith("edge-worker")
            with DeviceClient("127.0.0.1", s.port, chain) as b:
                b.connect(force=True)
                out: dict[str, object] = {}
                first = threading.Thread(target=lambda: out.setdefault("a", a.infer(images[:1], 2, 3, "float32")))
                first.start()
                time.sleep(0.1)  # a's computation holds the worker now
                late = b.infer(images[:1], 2, 3, "float32")
                first.join(30)
        assert out["a"].where == "edge" and late.where == "edge"
        assert all(t.startswith("edge-worker") for t in engine.threads_seen[1:]), engine.threads_seen
        # b's request waited behind a's in the engine's queue: about hold_s - 0.1 s, where the edge saw it
        assert late.server_timings_ms["queue_ms"] > 100.0, late.server_timings_ms
