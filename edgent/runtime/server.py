"""The edge server: finishes the DNN for any (exit, partition point) a device asks, for many devices at once.

It loads each model once, reads frames with asyncio, runs decode + ``chain.run_edge`` + encode in a bounded pool
of worker threads, and answers with the logits and its own timings (queueing, decoding, computing, encoding) and
its load, so that a device can tell link time from server time. A full queue answers ``overloaded`` at once
instead of growing; a bad frame from one client is answered and, if the framing is broken, that connection is
closed: nothing a client sends can stop the server.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import signal
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

from edgent.codec import check_shape, get_codec
from edgent.errors import EdgentError
from edgent.model.chain import MultiExitChain
from edgent.model.preprocess import default_preprocess, get_preprocess
from edgent.runtime.protocol import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    Frame,
    MsgType,
    ProtocolError,
    encode_frame,
    error_meta,
    read_frame,
)

log = logging.getLogger("edgent.serve")

DEFAULT_PORT = 8470
MAX_BATCH = 256


@dataclass
class ServerConfig:
    """Settings of an edge server. ``token``: when set, a device's HELLO must carry it (constant-time compare)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_queue: int = 64
    threads: int = 1
    inline_when_idle: bool = True
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_connections: int = 256
    hello_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    body_timeout_s: float = 30.0
    ssl_context: ssl.SSLContext | None = None
    shutdown_grace_s: float = 5.0


@dataclass
class EdgeLoad:
    """What the edge reports about its load with every answer."""

    queue_length: int
    in_service: int
    workers: int
    mean_compute_ms: float | None
    connections: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EdgeServer:
    """Serves the edge part of the chains in ``models`` (name -> chain); see the module docstring."""

    def __init__(self, models: dict[str, MultiExitChain], config: ServerConfig | None = None) -> None:
        if not models:
            raise EdgentError("the edge server needs at least one model")
        self.models = {name: m.eval() for name, m in models.items()}
        self.config = config or ServerConfig()
        if self.config.max_queue < 1 or self.config.threads < 0:
            raise EdgentError("--max-queue must be at least 1 and --threads at least 0 (0: compute inline)")
        self._pool = ThreadPoolExecutor(max(1, self.config.threads), thread_name_prefix="edge-worker")
        self._waiting = 0
        self._in_service = 0
        self._mean_compute_ms: float | None = None
        self._lock = threading.Lock()
        self._jobs: dict[str, dict[str, Any]] = {}
        self._connections: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self._ready = False
        self._closing = False
        self.requests_served = 0
        self.errors_sent = 0

    # ------------------------------------------------------------------ life cycle
    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._server is not None, "start() the server first"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        """Bind and start accepting; warm every model up once so that the first request is not slow."""
        for chain in self.models.values():
            with torch.inference_mode():
                chain(torch.zeros((1, *chain.input_shape)))
        self._server = await asyncio.start_server(
            self._handle, self.config.host, self.config.port, ssl=self.config.ssl_context,
            limit=1 << 16, backlog=512,
        )
        self._ready = True
        log.info("edge server on %s:%d serving %s", self.config.host, self.port, ", ".join(self.models))

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, let requests in service finish (up to the grace time), close."""
        self._closing = True
        self._ready = False
        if self._server is not None:
            self._server.close()
        t_end = time.monotonic() + self.config.shutdown_grace_s
        while (self._in_service or self._waiting) and time.monotonic() < t_end:
            await asyncio.sleep(0.01)
        for w in list(self._connections):
            w.close()
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, TimeoutError):
                pass
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def serve_until_signal(self, ready_file: str | None = None) -> None:
        """Start, then serve until SIGTERM or SIGINT; then shut down gracefully."""
        await self.start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if ready_file:
            with open(ready_file + ".tmp", "w") as f:
                f.write(f"{self.port}\n")
            os.replace(ready_file + ".tmp", ready_file)
        print(f"edgent serve: listening on {self.config.host}:{self.port} "
              f"(models: {', '.join(self.models)}; TLS {'on' if self.config.ssl_context else 'off'}; "
              f"token {'required' if self.config.token else 'not required'})", flush=True)
        await stop.wait()
        print("edgent serve: shutting down", flush=True)
        await self.stop()

    def load(self) -> EdgeLoad:
        """The current load: requests waiting for a worker, in service, and the recent mean compute time."""
        return EdgeLoad(self._waiting, self._in_service, self.config.threads,
                        None if self._mean_compute_ms is None else round(self._mean_compute_ms, 3),
                        len(self._connections))

    # ------------------------------------------------------------------ connections
    async def _send(self, writer: asyncio.StreamWriter, msg_type: MsgType, meta: dict[str, Any],
                    payload: bytes = b"") -> None:
        writer.write(encode_frame(msg_type, meta, payload))
        if writer.transport.get_write_buffer_size() == 0 and not writer.transport.is_closing():
            return  # the kernel took it all: nothing to wait for (the usual case for an answer of logits)
        # a device that stops reading cannot hold a handler forever (asyncio.timeout: no extra task per frame)
        async with asyncio.timeout(self.config.body_timeout_s):
            await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, code: str, message: str, request_id: Any = None) -> None:
        self.errors_sent += 1
        try:
            await asyncio.wait_for(self._send(writer, MsgType.ERROR, error_meta(code, message[:1000], request_id)),
                                   5.0)
        except (OSError, ConnectionError, asyncio.TimeoutError, TimeoutError):
            pass

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            try:
                import socket as _s

                sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
            except OSError:
                pass
        if len(self._connections) >= self.config.max_connections or self._closing:
            code = "shutting_down" if self._closing else "too_many_connections"
            await self._send_error(writer, code, "the edge server is not accepting this connection now")
            writer.close()
            return
        self._connections.add(writer)
        try:
            await self._serve_connection(reader, writer)
        except (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass  # the device stopped reading or went away
        except Exception:  # noqa: BLE001 - a bug in one connection must not stop the server
            log.exception("connection handler failed")
        finally:
            self._connections.discard(writer)
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 1.0)
            except (OSError, ConnectionError, asyncio.TimeoutError, TimeoutError, ssl.SSLError):
                pass

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        welcomed = False
        cfg = self.config
        while not self._closing:
            try:
                frame = await read_frame(reader, cfg.max_payload_bytes, cfg.body_timeout_s,
                                         cfg.idle_timeout_s if welcomed else cfg.hello_timeout_s)
            except ProtocolError as exc:
                await self._send_error(writer, exc.code, str(exc))
                if exc.fatal:
                    return
                continue
            except (asyncio.IncompleteReadError, ConnectionError, OSError, ssl.SSLError):
                return
            except (asyncio.TimeoutError, TimeoutError):
                await self._send_error(writer, "timeout", "no complete frame in time; closing the connection")
                return
            rid = _request_id(frame.meta)
            if not welcomed:
                if frame.type != MsgType.HELLO:
                    await self._send_error(writer, "hello_required", "the first frame must be HELLO", rid)
                    return
                token = frame.meta.get("token")
                if cfg.token is not None and not (
                    isinstance(token, str) and hmac.compare_digest(token.encode(), cfg.token.encode())
                ):
                    await self._send_error(writer, "unauthorized", "wrong or missing token", rid)
                    return
                welcomed = True
                await self._send(writer, MsgType.WELCOME, {
                    "server": "edgent", "models": self._model_info(), "max_payload_bytes": cfg.max_payload_bytes,
                    "load": self.load().to_dict()})
                continue
            if frame.type == MsgType.INFER:
                msg_type, meta, payload = await self._infer(frame)
                if msg_type == MsgType.ERROR:
                    self.errors_sent += 1
                await self._send(writer, msg_type, meta, payload)
            elif frame.type == MsgType.HEALTH:
                await self._send(writer, MsgType.STATUS, {
                    "id": rid, "live": True, "ready": self._ready and not self._closing,
                    "models": list(self.models), "load": self.load().to_dict()})
            elif frame.type == MsgType.PROBE:
                await self._send(writer, MsgType.PROBE_ACK, {"id": rid, "received_bytes": len(frame.payload)})
            elif frame.type == MsgType.HELLO:
                await self._send_error(writer, "bad_request", "HELLO was already received on this connection", rid)
            else:
                await self._send_error(writer, "bad_type", f"a device may not send {frame.type.name} frames", rid)
                return

    def _model_info(self) -> dict[str, Any]:
        return {name: {"input_shape": list(m.input_shape), "num_exits": m.num_exits,
                       "units": [ep.num_units for ep in m.exit_points], "preprocess": default_preprocess(name)}
                for name, m in self.models.items()}

    # ------------------------------------------------------------------ inference
    async def _infer(self, frame: Frame) -> tuple[MsgType, dict[str, Any], bytes]:
        t_recv = time.perf_counter()
        meta = frame.meta
        rid = _request_id(meta)
        try:
            job = self._job(meta, len(frame.payload))
        except EdgentError as exc:
            code = getattr(exc, "code", "bad_request")
            return MsgType.ERROR, error_meta(code, str(exc), rid), b""
        if self._waiting + self._in_service >= self.config.max_queue + max(1, self.config.threads):
            meta_err = error_meta("overloaded", f"the edge queue is full ({self.config.max_queue} waiting)", rid)
            meta_err["load"] = self.load().to_dict()
            return MsgType.ERROR, meta_err, b""
        # Inline when nothing else is queued or in service (and always with --threads 0): with the edge idle no
        # other request can use a worker meanwhile, so the hand-off to it and back would only add latency
        # (measured by `edgent bench runtime`, the always_hand_off setting against the default: docs/runtime.md).
        inline = self.config.threads == 0 or (self.config.inline_when_idle and not self._waiting
                                              and not self._in_service)
        with self._lock:
            self._waiting += 1
        try:
            if inline:
                out = self._work(job, frame.payload, time.perf_counter())
            else:
                out = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._work, job, frame.payload, time.perf_counter())
        except EdgentError as exc:
            return MsgType.ERROR, error_meta(getattr(exc, "code", "bad_request"), str(exc), rid), b""
        except RuntimeError as exc:  # pool shut down, torch failure
            log.exception("edge computation failed")
            return MsgType.ERROR, error_meta("internal", f"the edge could not compute: {exc}", rid), b""
        logits, timings = out
        self.requests_served += 1
        payload = logits.numpy().astype("<f4", copy=False).tobytes()
        timings["server_ms"] = (time.perf_counter() - t_recv) * 1e3
        return MsgType.RESULT, {
            "id": rid, "model": job["model"], "exit": job["exit"], "partition": job["partition"],
            "classes": logits.argmax(dim=1).tolist(), "shape": list(logits.shape), "codec": "float32",
            "timings": {k: round(v, 4) for k, v in timings.items()}, "load": self.load().to_dict(),
        }, payload

    def _job(self, meta: dict[str, Any], payload_len: int) -> dict[str, Any]:
        """The checked job of an INFER request: its fields are validated once per distinct combination (a cache
        keyed on their ``repr``, so that ``True`` and ``1`` stay apart), its payload size on every request."""
        key = repr((meta.get("model"), meta.get("exit"), meta.get("partition"), meta.get("codec", "float32"),
                    meta.get("shape"), meta.get("preprocess")))
        job = self._jobs.get(key)
        if job is None:
            job = self._check_request(meta)
            if len(self._jobs) >= 1024:  # bounded: a client cycling through odd shapes cannot grow it
                self._jobs.clear()
            self._jobs[key] = job
        codec, shape = job["codec"], job["shape"]
        if payload_len > job["payload_bytes"] or (codec.exact_size and payload_len != job["payload_bytes"]):
            raise EdgentError(f"codec {codec.name}: payload of {payload_len} bytes does not fit shape {list(shape)} "
                              f"({job['payload_bytes']} bytes{' at most' if not codec.exact_size else ''})")
        return job

    def _check_request(self, meta: dict[str, Any]) -> dict[str, Any]:
        """Validate an INFER request's fields (all but the payload) before any work is queued."""
        name = meta.get("model")
        if not isinstance(name, str) or name not in self.models:
            raise EdgentError(f"unknown model {name!r}; this edge serves {', '.join(self.models)}")
        chain = self.models[name]
        exit_, point = meta.get("exit"), meta.get("partition")
        if not _is_int(exit_) or not 1 <= exit_ <= chain.num_exits:
            raise EdgentError(f"exit {exit_!r} is out of range 1..{chain.num_exits} for {name}")
        n_units = chain.exit_point(exit_).num_units
        if not _is_int(point) or not 0 <= point < n_units:
            raise EdgentError(f"partition {point!r} is out of range 0..{n_units - 1} for exit {exit_} of {name} "
                              f"(point {n_units} means the device runs everything: do not send it)")
        codec = get_codec(meta.get("codec", "float32"))
        shape = check_shape(meta.get("shape") or [])
        if not 1 <= shape[0] <= MAX_BATCH:
            raise EdgentError(f"batch size {shape[0]} is out of range 1..{MAX_BATCH}")
        expected = chain.unit_input_shape(exit_, point)
        if tuple(shape[1:]) != tuple(expected):
            raise EdgentError(f"shape {list(shape)} does not match the tensor at partition {point} of exit {exit_} "
                              f"(batch, {', '.join(map(str, expected))})")
        preprocess = None
        if codec.kind == "pixels":
            if point != 0:
                raise EdgentError(f"codec {codec.name} carries raw pixels: only partition 0 takes them")
            preprocess = get_preprocess(meta.get("preprocess", default_preprocess(name)))
        return {"model": name, "chain": chain, "exit": exit_, "partition": point, "codec": codec, "shape": shape,
                "preprocess": preprocess, "payload_bytes": codec.payload_bytes(shape)}

    def _work(self, job: dict[str, Any], payload: bytes, t_queued: float) -> tuple[torch.Tensor, dict[str, float]]:
        """Runs in a worker thread: decode, compute the edge part, time each step."""
        t0 = time.perf_counter()
        with self._lock:
            self._waiting -= 1
            self._in_service += 1
        try:
            t = job["codec"].decode(payload, job["shape"])
            t1 = time.perf_counter()
            with torch.inference_mode():  # compute: the model's input preprocessing (raw pixels) and its units,
                if job["preprocess"] is not None:  # as on the device, where device_ms counts both
                    t = job["preprocess"](t)
                logits = job["chain"].run_edge(t, job["exit"], job["partition"])
            t2 = time.perf_counter()
            logits = logits.float().contiguous()
            t3 = time.perf_counter()
        finally:
            with self._lock:
                self._in_service -= 1
        compute_ms = (t2 - t1) * 1e3
        with self._lock:
            m = self._mean_compute_ms
            self._mean_compute_ms = compute_ms if m is None else 0.8 * m + 0.2 * compute_ms
        return logits, {"queue_ms": (t0 - t_queued) * 1e3, "decode_ms": (t1 - t0) * 1e3, "compute_ms": compute_ms,
                        "encode_ms": (t3 - t2) * 1e3}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _request_id(meta: dict[str, Any]) -> Any:
    rid = meta.get("id")
    if _is_int(rid) or (isinstance(rid, str) and len(rid) <= 128):
        return rid
    return None


def make_server_ssl_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS context for the edge from a certificate chain and its private key (PEM files)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as exc:
        raise EdgentError(f"cannot load the TLS certificate {cert_file} / key {key_file}: {exc}") from exc
    return ctx
