"""The edge server: finishes the DNN for any (exit, partition point) a device asks, for many devices at once.

It loads each model once, reads frames with asyncio, checks each request, hands it to its compute engine
(:mod:`edgent.runtime.compute`: by default decode + ``chain.run_edge`` + encode in a bounded pool of worker
threads), and answers with the logits and its own timings (queueing, decoding, computing, encoding) and
its load, so that a device can tell link time from server time. A full queue answers ``overloaded`` at once
instead of growing; a bad frame from one client is answered and, if the framing is broken, that connection is
closed: nothing a client sends can stop the server.

[Note: bounds and fairness] No client, authenticated or not, may take the edge from the others
(``docs/runtime.md``, "Bounds"). The server accepts sockets itself, so that every open socket counts against
``max_connections`` from the moment it is accepted: one whose first message has not arrived, one in its TLS
handshake, one that has not said HELLO yet and one being turned away alike. Until its first message (a TLS
ClientHello, or a HELLO frame without TLS) has fully arrived a connection has no transport and no task: the server
only looks at its pending bytes now and then, so that a flood of connections that never finish their first message
costs little; without TLS a valid HELLO is answered straight from the socket and the connection waits the same way
until its next frame. A socket must be authenticated (TLS done and a valid HELLO answered) within
``handshake_timeout_s`` of its accept; before that it may send nothing but a HELLO of at most
``MAX_HELLO_META_BYTES``. The last slots of the cap are kept for making room (:meth:`EdgeServer._admit`): once they
would be taken, each newcomer frees one (:meth:`EdgeServer._victim`: one slow or stalled in its handshake first,
else the one whose last progress is oldest; none while all are busy: the newcomer is told
``too_many_connections``). Each connection has at most one frame in flight (its next frame is read once its answer
is written), buffers at most ``read_buffer_bytes`` ahead of the frame being read, one frame of at most
``max_payload_bytes``, and ``write_buffer_bytes`` of answers: a peer that stops reading is closed after
``write_timeout_s``. A sender slower than ``min_rate_bps`` (after ``rate_grace_s`` of a frame) is cut. Between two
frames of a connection the loop serves every other connection once, so a client that pipelines frames gets its turn
like everyone else and no more; frames that ask for no computation (HEALTH, PROBE, refused ones) are also held to
``control_frames_per_s`` per connection. Without TLS a connection is served from the event loop's callbacks
(:class:`_FrameProtocol`: a frame is answered, and an idle edge's computation done, in the callback that completed
it); with TLS by a stream reader (:func:`~edgent.runtime.protocol.read_frame` in :meth:`EdgeServer.
_serve_connection`). Both keep every bound above.
"""

from __future__ import annotations

import asyncio
import gc
import hmac
import json
import logging
import math
import os
import signal
import socket
import ssl
import time
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from edgent.codec import check_shape, get_codec
from edgent.errors import ConfigError, EdgentError
from edgent.model.chain import MultiExitChain
from edgent.model.preprocess import default_preprocess, get_preprocess
from edgent.runtime.compute import BatchingCompute, EdgeCompute, EdgeJob, LocalCompute
from edgent.runtime.protocol import (
    COMPACT_META_VERSION,
    DEFAULT_MAX_PAYLOAD_BYTES,
    HANDSHAKE_VERSION,
    HEADER,
    HEADER_BYTES,
    MAGIC,
    MAX_HELLO_META_BYTES,
    VERSION,
    CompactMeta,
    Frame,
    MsgType,
    FrameParser,
    ProtocolError,
    decode_infer_meta,
    encode_frame,
    encode_result_meta,
    error_meta,
    parse_meta,
    read_frame,
)

if TYPE_CHECKING:
    import torch


log = logging.getLogger("edgent.serve")

DEFAULT_PORT = 8470
MAX_BATCH = 256
#: the most of a connection's first message looked at before it is handed to TLS or the framing (a TLS record
#: of a ClientHello is at most 16 KiB + 5 bytes; a HELLO frame at most 16 + 4 KiB)
_GREETING_PEEK_BYTES = 16 * 1024 + 5
#: how often a first message that stopped short is looked at again (a ClientHello or a HELLO comes in one piece)
_STALLED_POLL_S = 0.05


@dataclass
class ServerConfig:
    """Settings of an edge server (see the module's note on bounds; ``docs/runtime.md`` lists the defaults).

    ``token``: when set, a device's HELLO must carry it (constant-time compare); it may not be empty.
    ``max_connections``: open sockets at most, counting those in their TLS handshake and before HELLO.
    ``handshake_timeout_s``: from accept to an answered HELLO, TLS handshake included.
    ``idle_timeout_s``: an authenticated connection with no frame for this long is closed.
    ``body_timeout_s``: a frame must arrive whole within this time of its first byte.
    ``min_rate_bps`` / ``rate_grace_s``: after the grace, a frame must keep arriving at this rate (bit/s).
    ``write_timeout_s``: an answer that cannot be handed to the kernel within this time closes the connection.
    ``control_frames_per_s``: frames per connection and second that are not answered with a RESULT (HEALTH,
    PROBE, refused requests); beyond it (after a burst of as many) the connection's next frame waits.
    ``read_buffer_bytes`` / ``write_buffer_bytes``: per-connection buffers ahead of the frame being read and of
    answers not yet taken by the kernel.
    ``batch_window_ms``: when set, requests of the same (model, exit, partition, codec, shape) arriving within
    this window are computed as one batch of at most ``max_batch`` (:class:`~edgent.runtime.compute.
    BatchingCompute`; no request held past the point where its deadline would be missed).
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    max_queue: int = 64
    threads: int = 1
    inline_when_idle: bool = True
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_connections: int = 256
    handshake_timeout_s: float = 5.0
    idle_timeout_s: float = 300.0
    body_timeout_s: float = 30.0
    min_rate_bps: float = 8000.0
    rate_grace_s: float = 2.0
    write_timeout_s: float = 10.0
    control_frames_per_s: float = 20.0
    read_buffer_bytes: int = 64 * 1024
    write_buffer_bytes: int = 256 * 1024
    ssl_context: ssl.SSLContext | None = None
    shutdown_grace_s: float = 5.0
    latency_model: str | None = None
    batch_window_ms: float | None = None
    max_batch: int = 32
    slowdown: float = 1.0

    def check(self) -> None:
        """Raise ConfigError (naming the ``edgent serve`` option) for a setting with which no device can be served."""
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise ConfigError("the token is empty: give a non-empty --token / --token-file, or none to admit any "
                              "device")
        ints = {"max_queue": (1, "--max-queue"), "threads": (0, "--threads"),
                "max_payload_bytes": (1, "--max-payload-mb"), "max_connections": (2, "--max-connections"),
                "read_buffer_bytes": (1024, "--read-buffer-kb"), "write_buffer_bytes": (1024, "--write-buffer-kb")}
        for name, (low, option) in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ConfigError(f"{option} must be an integer of at least {low} (as bytes for the sizes), "
                                  f"got {v!r}")
        if self.batch_window_ms is not None and (
                isinstance(self.batch_window_ms, bool) or not isinstance(self.batch_window_ms, (int, float))
                or not math.isfinite(self.batch_window_ms) or self.batch_window_ms < 0):
            raise ConfigError(f"--batch-window-ms must be a finite number >= 0, got {self.batch_window_ms!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, int) or self.max_batch < 1:
            raise ConfigError(f"--max-batch must be an integer of at least 1, got {self.max_batch!r}")
        if isinstance(self.slowdown, bool) or not isinstance(self.slowdown, (int, float)) or not (
                math.isfinite(self.slowdown) and self.slowdown >= 1.0):
            raise ConfigError(f"--slowdown must be a number >= 1 (1: this host's speed), got {self.slowdown!r}")
        if self.batch_window_ms is not None and self.threads < 1:
            raise ConfigError("batching (--batch-window-ms) needs worker threads: give --threads 1 or more")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be 0..65535 (0: any free port), got {self.port}")
        for f in fields(self):
            if f.name.endswith("_s") or f.name in ("min_rate_bps", "control_frames_per_s"):
                v = getattr(self, f.name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0 or (
                        v == 0 and f.name != "shutdown_grace_s" and f.name != "rate_grace_s"):
                    raise ConfigError(f"--{f.name.replace('_', '-')} must be a finite positive number, got {v!r}")


@dataclass
class EdgeLoad:
    """What the edge reports about its load with every answer."""

    queue_length: int
    in_service: int
    workers: int
    mean_compute_ms: float | None
    connections: int
    mean_service_ms: float | None = None
    batch_window_ms: float = 0.0
    in_service_left_ms: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Connection:
    """One accepted socket and where it stands (see the module's note on bounds).

    ``greeting``: no transport and no task yet, only a look at its pending bytes now and then: its first message
    (a TLS ClientHello, or a HELLO frame without TLS) has not fully arrived, or (``authenticated``) its HELLO was
    answered straight from the socket and its next frame has not arrived; so that a flood of connections that
    never finish their first message, or say HELLO and then nothing, costs the server little."""

    __slots__ = ("sock", "transport", "raw_transport", "accepted_at", "idle_since", "authenticated", "busy",
                 "evicted", "greeting", "watching", "poll_handle", "deadline_handle", "stalled")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.transport: asyncio.BaseTransport | None = None
        self.raw_transport: asyncio.BaseTransport | None = None  # under TLS, the socket's own transport
        self.accepted_at = now
        self.idle_since = now
        self.authenticated = False
        self.busy = False
        self.evicted = False
        self.greeting = False
        self.watching = False
        self.poll_handle: asyncio.TimerHandle | None = None
        self.deadline_handle: asyncio.TimerHandle | None = None
        self.stalled = False  # its first message stopped short


class _Refusal(Exception):
    """An INFER request answered without a computation (``answer``: the ERROR frame's type, meta and payload)."""

    def __init__(self, answer: tuple[MsgType, dict[str, Any], bytes]) -> None:
        super().__init__(answer[1].get("code"))
        self.answer = answer


class _FrameBudget:
    """A token bucket of frames per second (burst: one second's worth, at least one)."""

    __slots__ = ("rate", "burst", "tokens", "t_last")

    def __init__(self, rate_per_s: float, now: float) -> None:
        self.rate = rate_per_s
        self.burst = max(1.0, rate_per_s)
        self.tokens = self.burst
        self.t_last = now

    def wait_s(self, now: float) -> float:
        """Take one frame's token; how long to wait before the next frame may be read (0: at once)."""
        self.tokens = min(self.burst, self.tokens + (now - self.t_last) * self.rate) - 1.0
        self.t_last = now
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class EdgeServer:
    """Serves the edge part of the chains in ``models`` (name -> chain); see the module docstring."""

    def __init__(self, models: dict[str, MultiExitChain], config: ServerConfig | None = None,
                 compute: EdgeCompute | None = None) -> None:
        """``compute``: the engine that runs the checked requests (default: :class:`LocalCompute` with the
        config's ``threads`` and ``inline_when_idle``)."""
        if not models:
            raise EdgentError("the edge server needs at least one model")
        self.models = {name: m.eval() for name, m in models.items()}
        self.config = config or ServerConfig()
        self.config.check()
        self._welcome = {"server": "edgent", "handshake": HANDSHAKE_VERSION, "models": self._model_info(),
                         "max_payload_bytes": self.config.max_payload_bytes, "compact_meta": COMPACT_META_VERSION}
        self._advertisement: bytes | None = None
        self._token = None if self.config.token is None else self.config.token.encode("utf-8", "surrogatepass")
        self.compute = compute or local_compute(self.models, self.config)
        self._jobs: dict[str, EdgeJob] = {}
        #: the jobs of compact INFER frames, by the bytes of their plan's JSON (see _compact_job)
        self._plan_jobs: dict[bytes, EdgeJob] = {}
        self._connections: set[_Connection] = set()
        # an idle engine computes on the event loop only while one connection is open (EdgeCompute.connections)
        self.compute.connections = self._connections.__len__
        #: connections not authenticated yet, in the order they were accepted
        self._unauth: dict[_Connection, None] = {}
        #: authenticated connections with nothing in flight, least recently answered first
        self._idle: dict[_Connection, None] = {}
        self._open_sockets = 0
        self._evicting = 0  # evicted sockets whose descriptor is not closed yet
        #: slots kept for making room (see _admit)
        self._headroom = max(1, min(16, self.config.max_connections // 16))
        self._slot_freed: asyncio.Event | None = None
        self._listeners: list[socket.socket] = []
        self._accept_tasks: list[asyncio.Task] = []
        self._tasks: set[asyncio.Task] = set()
        self._ready = False
        self._closing = False
        self.requests_served = 0
        self.errors_sent = 0
        self.connections_evicted = 0
        self.connections_turned_away = 0
        self._closed_since_trim = 0
        self._trim_task: asyncio.Task | None = None

    # ------------------------------------------------------------------ life cycle
    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._listeners, "start() the server first"
        return self._listeners[0].getsockname()[1]

    @property
    def open_sockets(self) -> int:
        """Accepted sockets not closed yet (at most ``max_connections``)."""
        return self._open_sockets

    async def start(self) -> None:
        """Start the compute engine (which warms the models up), then bind and start accepting."""
        await self.compute.start()
        self._slot_freed = asyncio.Event()
        self._listeners = _listen(self.config.host, self.config.port)
        loop = asyncio.get_running_loop()
        self._accept_tasks = [loop.create_task(self._accept(s)) for s in self._listeners]
        self._ready = True
        log.info("edge server on %s:%d serving %s", self.config.host, self.port, ", ".join(self.models))

    async def stop(self) -> None:
        """Graceful shutdown: stop accepting, let requests in service finish (up to the grace time), close."""
        self._closing = True
        self._ready = False
        for t in self._accept_tasks:
            t.cancel()
        for s in self._listeners:
            s.close()
        t_end = time.monotonic() + self.config.shutdown_grace_s
        while self.compute.busy() and time.monotonic() < t_end:
            await asyncio.sleep(0.01)
        for c in list(self._connections):
            if c.greeting:
                self._drop_greeting(c)
            elif c.transport is not None:
                c.transport.close()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=1.5)
            for t in pending:
                t.cancel()
        if self._trim_task is not None:
            self._trim_task.cancel()
        await self.compute.stop()

    async def serve_until_signal(self, ready_file: str | None = None) -> None:
        """Start, then serve until SIGTERM or SIGINT; then shut down gracefully."""
        await self.start()
        gc.collect()
        gc.freeze()  # the models and libraries stay: later collections look only at what serving creates
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
              f"token {'required' if self.config.token else 'not required'}; "
              f"at most {self.config.max_connections} connections)", flush=True)
        print(f"edgent serve: engine {self.compute.describe()}", flush=True)
        await stop.wait()
        print("edgent serve: shutting down", flush=True)
        await self.stop()

    def load(self) -> EdgeLoad:
        """The current load: requests waiting for a worker, in service, and the recent mean compute time."""
        return EdgeLoad(**self.load_dict())

    def load_dict(self) -> dict[str, Any]:
        """``load().to_dict()``, as every answer carries it, without the dataclass in between."""
        c = self.compute.load()
        return {"queue_length": c.waiting, "in_service": c.in_service, "workers": c.workers,
                "mean_compute_ms": c.mean_compute_ms, "connections": len(self._connections),
                "mean_service_ms": c.mean_service_ms, "batch_window_ms": c.batch_window_ms,
                "in_service_left_ms": c.in_service_left_ms}

    # ------------------------------------------------------------------ accepting
    async def _accept(self, listener: socket.socket) -> None:
        """Accept while a slot is free, up to ``_headroom`` connections per turn of the loop (the connections
        queued in the kernel behind a flood are reached sooner); room is made for each newcomer as
        :meth:`_admit` says."""
        loop = asyncio.get_running_loop()
        assert self._slot_freed is not None
        cap = self.config.max_connections
        while not self._closing:
            while self._open_sockets >= cap:
                self._slot_freed.clear()
                await self._slot_freed.wait()
            try:
                sock, _ = await loop.sock_accept(listener)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError as exc:  # out of descriptors or memory: wait for some to be freed
                log.warning("accept failed: %s", exc)
                await asyncio.sleep(0.1)
                continue
            self._admit(sock, loop.time())
            for _ in range(self._headroom):  # more of what is already waiting, without waiting
                if self._open_sockets >= cap:
                    break
                try:
                    sock, _ = listener.accept()
                except OSError:  # nothing waiting (BlockingIOError), or a failed accept: next turn
                    break
                sock.setblocking(False)
                self._admit(sock, loop.time())
            await asyncio.sleep(0)  # a flood of connects waits its turn like everything else

    def _admit(self, sock: socket.socket, now: float) -> None:
        """Take a new socket. The last ``_headroom`` slots of the cap are kept for making room: once the
        connections not being closed would take them, each newcomer closes a victim (:meth:`_victim`), whose
        descriptor is freed a turn of the loop later; without one, the newcomer is turned away when the cap is
        reached (``too_many_connections``)."""
        self._open_sockets += 1
        conn = _Connection(sock, now)
        cap = self.config.max_connections
        if self._open_sockets - self._evicting > cap - self._headroom:
            victim = self._victim(now)
            if victim is not None:
                self._evict(victim)
            elif self._open_sockets >= cap:
                self.connections_turned_away += 1
                self._start(conn, turn_away=True)
                return
        self._connections.add(conn)
        self._unauth[conn] = None
        self._await_greeting(conn)

    def _victim(self, now: float) -> _Connection | None:
        """The connection to close for a newcomer: the oldest suspect (not authenticated, and connected for more
        than a fifth of the handshake timeout or with a first message that stopped short), else the connection
        whose last sign of progress is oldest (its connect while not authenticated, its last answer once
        authenticated; busy ones are never chosen). None while every connection is busy.

        A connection that just made progress is the last to go, whatever its state: on a busy host a legitimate
        handshake, or the gap between WELCOME and the first request, can take long, and the newcomer's own
        request follows at once."""
        min_age_s = 0.2 * self.config.handshake_timeout_s
        oldest = None
        for c in self._unauth:  # oldest first
            if now - c.accepted_at >= min_age_s or c.stalled:
                return c
            if oldest is None:
                oldest = c
        idlest = next(iter(self._idle), None)
        if oldest is None or (idlest is not None and idlest.idle_since < oldest.accepted_at):
            return idlest
        return oldest

    def _evict(self, conn: _Connection) -> None:
        """Close ``conn`` at once (no answer, buffers dropped) to make room for a newcomer."""
        self.connections_evicted += 1
        conn.evicted = True
        self._unauth.pop(conn, None)
        self._idle.pop(conn, None)
        if conn.greeting:
            self._drop_greeting(conn)
        else:
            self._evicting += 1  # until _close frees the slot
            if conn.transport is not None:
                conn.transport.abort()  # its task sees the stream end and frees the slot

    # ------------------------------------------------------------------ the first message
    def _await_greeting(self, conn: _Connection) -> None:
        """Watch a new connection until its first message has fully arrived (or the handshake time is over)."""
        loop = asyncio.get_running_loop()
        conn.greeting = True
        conn.deadline_handle = loop.call_at(conn.accepted_at + self.config.handshake_timeout_s,
                                            self._greeting_too_late, conn)
        self._check_greeting(conn)  # the first message is often in already: no watch to set up and take down

    def _check_greeting(self, conn: _Connection) -> None:
        loop = asyncio.get_running_loop()
        conn.poll_handle = None
        try:
            data = conn.sock.recv(_GREETING_PEEK_BYTES, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            if not conn.watching:
                loop.add_reader(conn.sock.fileno(), self._check_greeting, conn)
                conn.watching = True
            return
        except OSError:
            data = b""
        if not data:  # the peer closed (or reset)
            self._drop_greeting(conn)
        elif conn.authenticated:  # the first frame after an inline HELLO: now the connection gets its task
            self._unwatch(conn)
            conn.greeting = False
            self._start(conn)
        elif self.config.ssl_context is None and self._hello_inline(conn, data):
            pass
        elif len(data) >= _GREETING_PEEK_BYTES or self._greeting_complete(data):
            self._unwatch(conn)
            conn.greeting = False
            self._start(conn)
        else:
            # pending bytes would wake a level-triggered watch on every turn of the loop: look again later
            if conn.watching:
                loop.remove_reader(conn.sock.fileno())
                conn.watching = False
            conn.stalled = True
            conn.poll_handle = loop.call_later(_STALLED_POLL_S, self._check_greeting, conn)

    def _hello_inline(self, conn: _Connection, data: bytes) -> bool:
        """Without TLS, answer a whole, valid HELLO with the right token straight from the socket and keep
        watching the connection without a transport until its next frame: a client that says HELLO and then
        nothing costs the server no transport and no task. False (nothing consumed) for anything else, which the
        full path answers (a HELLO asking for the advertisement included)."""
        if len(data) < HEADER_BYTES:
            return False
        magic, version, msg_type, _, meta_len, payload_len = HEADER.unpack_from(data)
        if (magic != MAGIC or version != VERSION or msg_type != MsgType.HELLO or payload_len
                or meta_len > MAX_HELLO_META_BYTES or len(data) < HEADER_BYTES + meta_len):
            return False
        try:
            meta = parse_meta(data[HEADER_BYTES:HEADER_BYTES + meta_len])
        except ProtocolError:
            return False
        if not self._token_ok(meta.get("token")) or meta.get("advertise") is True:
            return False  # (an advertisement is a large payload: the full path sends it with back-pressure)
        welcome = encode_frame(MsgType.WELCOME, {**self._welcome, "load": self.load_dict()})
        try:
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            taken = conn.sock.recv(HEADER_BYTES + meta_len)  # exactly the HELLO: what follows stays queued
            sent = conn.sock.send(welcome) if len(taken) == HEADER_BYTES + meta_len else 0
        except OSError:
            sent = 0
        if sent != len(welcome):  # (a fresh socket takes a few hundred bytes at once)
            self._drop_greeting(conn)
            return True
        loop = asyncio.get_running_loop()
        conn.authenticated, conn.stalled, conn.idle_since = True, False, loop.time()
        self._unauth.pop(conn, None)
        self._idle[conn] = None
        if conn.deadline_handle is not None:
            conn.deadline_handle.cancel()
        conn.deadline_handle = loop.call_at(conn.idle_since + self.config.idle_timeout_s, self._idle_too_late, conn)
        if not conn.watching:
            loop.add_reader(conn.sock.fileno(), self._check_greeting, conn)
            conn.watching = True
        return True

    def _token_ok(self, token: Any) -> bool:
        """Whether a HELLO's token admits the device (constant-time compare; any token when none is set)."""
        return self._token is None or (
            isinstance(token, str) and hmac.compare_digest(token.encode("utf-8", "surrogatepass"), self._token))

    def _idle_too_late(self, conn: _Connection) -> None:
        """A connection answered inline has sent nothing for the idle timeout: say so and close."""
        if conn.greeting:
            self.errors_sent += 1
            with _suppress_os_error():
                conn.sock.send(encode_frame(MsgType.ERROR, error_meta(
                    "timeout", "no complete frame in time; closing the connection")))
        self._drop_greeting(conn)

    def _greeting_complete(self, data: bytes) -> bool:
        """Whether ``data`` holds a whole first message, or enough to refuse it (then the full path answers)."""
        if self.config.ssl_context is not None:
            if data[0] != 0x16:  # not a TLS handshake record: the TLS layer refuses it
                return True
            return len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big")
        if not MAGIC.startswith(data[:4]):
            return True  # not a frame: answered bad_magic
        if len(data) < HEADER_BYTES:
            return False
        _, _, msg_type, _, meta_len, payload_len = HEADER.unpack_from(data)
        if msg_type != MsgType.HELLO or meta_len > MAX_HELLO_META_BYTES or payload_len:
            return True  # refused from its header
        return len(data) >= HEADER_BYTES + meta_len

    def _unwatch(self, conn: _Connection) -> None:
        if conn.watching:
            asyncio.get_running_loop().remove_reader(conn.sock.fileno())
            conn.watching = False
        for h in (conn.poll_handle, conn.deadline_handle):
            if h is not None:
                h.cancel()
        conn.poll_handle = conn.deadline_handle = None

    def _greeting_too_late(self, conn: _Connection) -> None:
        """The handshake time is over before the first message arrived: say so (without TLS: there is no session
        to say it in) and close."""
        if conn.greeting and self.config.ssl_context is None:
            self.errors_sent += 1
            with _suppress_os_error():  # a small frame into an empty send buffer: never blocks
                conn.sock.send(encode_frame(MsgType.ERROR, error_meta(
                    "timeout", f"no HELLO within {self.config.handshake_timeout_s:g} s of connecting; closing the "
                               "connection")))
        self._drop_greeting(conn)

    def _drop_greeting(self, conn: _Connection) -> None:
        """Close a connection that has no transport yet (its first message not in, or answered inline) and free
        its slot."""
        if not conn.greeting:
            return
        conn.greeting = False
        self._unwatch(conn)
        conn.sock.close()
        self._connections.discard(conn)
        self._unauth.pop(conn, None)
        self._idle.pop(conn, None)
        self._open_sockets -= 1
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _start(self, conn: _Connection, turn_away: bool = False) -> None:
        with _suppress_os_error():  # (not before: a flood of connections that never get here saves the call)
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.get_running_loop().create_task(self._handle(conn, turn_away))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ connections
    async def _send(self, writer: asyncio.StreamWriter, msg_type: MsgType, meta: dict[str, Any] | CompactMeta,
                    payload: bytes = b"", timeout_s: float | None = None) -> None:
        writer.write(encode_frame(msg_type, meta, payload))
        transport = writer.transport
        if transport.get_write_buffer_size() == 0 and not transport.is_closing():
            return  # the kernel took it all: nothing to wait for (the usual case for an answer of logits)
        # a device that stops reading cannot hold a handler or buffer answers without bound
        async with asyncio.timeout(self.config.write_timeout_s if timeout_s is None else timeout_s):
            await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, code: str, message: str, request_id: Any = None) -> None:
        self.errors_sent += 1
        try:
            await self._send(writer, MsgType.ERROR, error_meta(code, message[:1000], request_id),
                             timeout_s=min(5.0, self.config.write_timeout_s))
        except (OSError, ConnectionError, TimeoutError, ssl.SSLError):
            pass

    async def _handle(self, conn: _Connection, turn_away: bool) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        deadline = conn.accepted_at + cfg.handshake_timeout_s
        writer = None
        try:
            if conn.evicted:
                return
            if cfg.ssl_context is None and not turn_away and not self._closing:
                # without TLS the connection is served from the loop's callbacks (_FrameProtocol); TLS keeps the
                # stream reader (read_frame in _serve_connection), whose TLS transport it was written for
                proto = _FrameProtocol(self, conn, deadline)
                conn.transport, _ = await loop.connect_accepted_socket(lambda: proto, conn.sock)
                if conn.evicted:  # evicted while the transport was being made
                    conn.transport.abort()
                    return
                await proto.done
                return
            reader = asyncio.StreamReader(limit=cfg.read_buffer_bytes)
            writers: list[asyncio.StreamWriter] = []
            protocol = asyncio.StreamReaderProtocol(reader, lambda _r, w: writers.append(w))
            conn.transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn.sock)
            writer = writers[0]
            if conn.evicted:  # evicted while the transport was being made
                conn.transport.abort()
                return
            if cfg.ssl_context is not None:
                async with asyncio.timeout_at(deadline):
                    await writer.start_tls(cfg.ssl_context,
                                           ssl_handshake_timeout=max(deadline - loop.time(), 1e-3))
                conn.raw_transport, conn.transport = conn.transport, writer.transport
                protocol._over_ssl = True  # (asyncio sets it only for connections made with TLS from the start)
            conn.transport.set_write_buffer_limits(high=cfg.write_buffer_bytes)
            if turn_away or self._closing:
                code = "shutting_down" if self._closing else "too_many_connections"
                await self._send_error(writer, code, "the edge server is not accepting this connection now")
                return
            await self._serve_connection(conn, reader, writer, deadline)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
            pass  # the device stopped reading, went away, or never finished its handshake
        except Exception:  # noqa: BLE001 - a bug in one connection must not stop the server
            log.exception("connection handler failed")
        finally:
            await self._close(conn)

    async def _close(self, conn: _Connection) -> None:
        """Close the socket once a last answer has reached the kernel (waiting at most 1 s for that; no TLS
        close_notify exchange, which a peer could draw out), then free its slot once its descriptor is closed."""
        t = conn.transport
        try:
            if t is None:
                conn.sock.close()
            else:
                for i in range(100):
                    if t.is_closing() or (t.get_write_buffer_size() == 0 and (
                            conn.raw_transport is None or conn.raw_transport.get_write_buffer_size() == 0)):
                        break
                    await asyncio.sleep(0.01 if i > 10 else 0)
                t.abort()  # the kernel still sends what it holds, then closes
                for _ in range(100):
                    if conn.sock.fileno() == -1:
                        break
                    await asyncio.sleep(0)
                else:
                    conn.sock.close()
        finally:
            self._connections.discard(conn)
            self._unauth.pop(conn, None)
            self._idle.pop(conn, None)
            self._open_sockets -= 1
            if conn.evicted:
                self._evicting -= 1
            if self._slot_freed is not None:
                self._slot_freed.set()
            self._closed_since_trim += 1
            if self._trim_task is None and self._closed_since_trim >= _TRIM_AFTER_CLOSED:
                self._trim_task = asyncio.get_running_loop().create_task(self._give_back_memory())

    async def _give_back_memory(self) -> None:
        """After a burst of closed connections, hand the memory their buffers and TLS states used back to the
        system: collect the reference cycles a closed connection leaves (transport, protocol, stream, task),
        which would otherwise hold their buffers until the next full collection, when the objects from before
        serving are frozen (``serve_until_signal``: the collection then only looks at what came later), then let
        glibc return its free pages (it keeps them in its heaps otherwise). At most once per
        ``_TRIM_INTERVAL_S``; the trim runs in a worker thread."""
        try:
            await asyncio.sleep(_TRIM_INTERVAL_S)
            self._closed_since_trim = 0
            if gc.get_freeze_count():
                gc.collect()
            if _malloc_trim is not None:
                await asyncio.get_running_loop().run_in_executor(None, _malloc_trim, 0)
        finally:
            self._trim_task = None

    async def _serve_connection(self, conn: _Connection, reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter, deadline: float) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        rate = {"min_rate_bps": cfg.min_rate_bps, "rate_grace_s": cfg.rate_grace_s}
        budget = _FrameBudget(cfg.control_frames_per_s, loop.time())
        while not conn.authenticated:  # HELLO, within the handshake deadline
            try:
                frame = await read_frame(reader, cfg.max_payload_bytes, cfg.body_timeout_s, None, deadline=deadline,
                                         check_header=_check_hello_header, **rate)
            except ProtocolError as exc:
                await self._send_error(writer, exc.code, str(exc))
                if exc.fatal:
                    return
                await asyncio.sleep(budget.wait_s(loop.time()))
                continue
            except TimeoutError:
                await self._send_error(writer, "timeout", f"no HELLO within {cfg.handshake_timeout_s:g} s of "
                                                          "connecting; closing the connection")
                return
            rid = _request_id(frame.meta)
            if not self._token_ok(frame.meta.get("token")):
                await self._send_error(writer, "unauthorized", "wrong or missing token", rid)
                return
            advert = self.advertisement() if frame.meta.get("advertise") is True else b""
            meta = {**self._welcome, "load": self.load_dict()}
            if advert:
                meta["advertisement_bytes"] = len(advert)
            await self._send(writer, MsgType.WELCOME, meta, advert)
            conn.authenticated = True
            conn.idle_since = loop.time()
            self._unauth.pop(conn, None)
            if not conn.evicted:
                self._idle[conn] = None
        while not self._closing:
            try:
                frame = await read_frame(reader, cfg.max_payload_bytes, cfg.body_timeout_s, cfg.idle_timeout_s,
                                         **rate)
            except ProtocolError as exc:
                await self._send_error(writer, exc.code, str(exc))
                if exc.fatal:
                    return
                await asyncio.sleep(budget.wait_s(loop.time()))
                continue
            except TimeoutError:  # (an OSError: caught before the others)
                await self._send_error(writer, "timeout", "no complete frame in time; closing the connection")
                return
            conn.busy = True
            self._idle.pop(conn, None)
            rid = _request_id(frame.meta)
            msg_type = None
            if frame.type == MsgType.INFER:
                msg_type, meta, payload = await self._infer(frame)
                if msg_type == MsgType.ERROR:
                    self.errors_sent += 1
                await self._send(writer, msg_type, meta, payload)
            elif frame.type == MsgType.HEALTH:
                await self._send(writer, MsgType.STATUS, {
                    "id": rid, "live": True, "ready": self._ready and not self._closing,
                    "models": list(self.models), "load": self.load_dict()})
            elif frame.type == MsgType.PROBE:
                await self._send(writer, MsgType.PROBE_ACK, {"id": rid, "received_bytes": len(frame.payload)})
            elif frame.type == MsgType.HELLO:
                await self._send_error(writer, "bad_request", "HELLO was already received on this connection", rid)
            else:
                await self._send_error(writer, "bad_type", f"a device may not send {frame.type.name} frames", rid)
                return
            del frame
            conn.busy = False
            conn.idle_since = loop.time()
            if not conn.evicted:
                self._idle[conn] = None
            # [Note: bounds and fairness] every other connection gets its turn before this one's next frame,
            # which may already be buffered (a pipelining client would otherwise hold the loop); a frame that did
            # not ask for a computation takes from the connection's budget of them
            await asyncio.sleep(0 if msg_type == MsgType.RESULT else budget.wait_s(conn.idle_since))

    def advertisement(self) -> bytes:
        """The handshake's advertisement (:data:`~edgent.runtime.protocol.HANDSHAKE_VERSION`), built once: per
        model its card (JSON, None when the zoo has none) and the edge's fitted latency model (``latency_model``
        of the config, else the shipped edge fit; None when neither is readable), as UTF-8 JSON."""
        if self._advertisement is None:
            self._advertisement = json.dumps(advertisement_doc(list(self.models), self.config.latency_model)
                                             ).encode("utf-8")
        return self._advertisement

    def _model_info(self) -> dict[str, Any]:
        return {name: {"input_shape": list(m.input_shape), "num_exits": m.num_exits,
                       "units": [ep.num_units for ep in m.exit_points], "preprocess": default_preprocess(name)}
                for name, m in self.models.items()}

    # ------------------------------------------------------------------ inference
    async def _infer(self, frame: Frame) -> tuple[MsgType, dict[str, Any] | CompactMeta, bytes]:
        """The answer to an INFER frame: checked (:meth:`_infer_check`), computed by the engine, answered
        (:meth:`_infer_answer`, or an ERROR)."""
        t_recv = time.perf_counter()
        try:
            job, deadline_ms, rid = self._infer_check(frame)
        except _Refusal as r:
            return r.answer
        return await self._infer_computed(job, frame.payload, deadline_ms, rid, t_recv, frame.compact is not None)

    async def _infer_computed(self, job: EdgeJob, payload: bytes, deadline_ms: float | None, rid: Any,
                              t_recv: float, compact: bool) -> tuple[MsgType, dict[str, Any] | CompactMeta, bytes]:
        """The answer to a checked job: computed by the engine (:meth:`_infer_answer`), or the ERROR of a
        computation that failed (:meth:`_infer_failed`)."""
        try:
            out = await self.compute.run(job, payload, deadline_ms)
        except Exception as exc:  # noqa: BLE001 - see _infer_failed
            return self._infer_failed(exc, rid)
        return self._infer_answer(job, rid, out, t_recv, compact)

    def _infer_check(self, frame: Frame) -> tuple[EdgeJob, float | None, Any]:
        """The checked job of an INFER frame (JSON or compact meta), the device's remaining deadline (ms, None
        when not given) and the request's id; raises _Refusal with the ERROR answer for a bad request and for one
        the edge cannot take now (a full queue, or a predicted wait past the request's deadline: ``overloaded``,
        with the load)."""
        rid = None
        try:
            if frame.compact is not None:
                rid, deadline_ms, plan = decode_infer_meta(frame.compact)
                job = self._compact_job(plan, len(frame.payload))
            else:
                meta = frame.meta
                rid = _request_id(meta)
                job = self._job(meta, len(frame.payload))
                deadline_ms = meta.get("deadline_ms")
        except EdgentError as exc:
            code = getattr(exc, "code", "bad_request")
            raise _Refusal((MsgType.ERROR, error_meta(code, str(exc), rid), b"")) from None
        except Exception as exc:  # noqa: BLE001 - a field of a type no check foresaw
            raise _Refusal((MsgType.ERROR, error_meta(
                "bad_request", f"bad INFER request: {type(exc).__name__}: {exc}", rid), b"")) from None
        if deadline_ms is not None and (isinstance(deadline_ms, bool) or not isinstance(deadline_ms, (int, float))
                                        or not math.isfinite(deadline_ms) or deadline_ms <= 0):
            raise _Refusal((MsgType.ERROR, error_meta(
                "bad_request", f"deadline_ms must be a number of ms > 0 (what the device can still wait), got "
                f"{deadline_ms!r}", rid), b""))
        compute = self.compute
        waiting, in_service, workers = compute.occupancy()
        refusal = None
        if waiting + in_service >= self.config.max_queue + max(1, workers):
            refusal = f"the edge queue is full ({self.config.max_queue} waiting)"
        elif deadline_ms is not None and (waiting or in_service):
            # admission control: a request that would wait past its deadline. An idle edge admits every request:
            # its own compute is then the only cost, and the prediction of it (its kind's running mean) is
            # corrected only by computing one (refused, a kind whose mean once rose past every deadline would
            # be refused for good)
            wait_ms = compute.load().predicted_wait_ms()  # the work left of those in service, those waiting whole
            own_ms = compute.expected_compute_ms(job)  # this request's own kind of computation
            if wait_ms + own_ms > deadline_ms:
                refusal = (f"the edge is busy: a predicted wait of {wait_ms:.1f} ms and {own_ms:.1f} ms of "
                           f"compute exceed the request's remaining deadline of {deadline_ms:.1f} ms")
        if refusal is not None:
            meta_err = error_meta("overloaded", refusal, rid)
            meta_err["load"] = self.load_dict()
            raise _Refusal((MsgType.ERROR, meta_err, b""))
        return job, deadline_ms, rid

    def _infer_failed(self, exc: Exception, rid: Any) -> tuple[MsgType, dict[str, Any], bytes]:
        """The ERROR answer to a request whose computation failed: the engine's reason (``overloaded`` for one
        that waited past its deadline, with the load), else ``internal`` (a pool shut down, a torch failure, a bug:
        the device gets an answer)."""
        if isinstance(exc, EdgentError):
            meta_err = error_meta(getattr(exc, "code", "bad_request"), str(exc), rid)
            if meta_err.get("code") == "overloaded":  # (waited past its deadline) the device learns the load
                meta_err["load"] = self.load_dict()
            return MsgType.ERROR, meta_err, b""
        log.warning("edge computation failed: %s: %s", type(exc).__name__, exc)
        return MsgType.ERROR, error_meta("internal", f"the edge could not compute: {exc}", rid), b""

    def _infer_answer(self, job: EdgeJob, rid: Any, out: tuple[torch.Tensor, dict[str, float]], t_recv: float,
                      compact: bool = False) -> tuple[MsgType, dict[str, Any] | CompactMeta, bytes]:
        """The RESULT of a computed request: the logits (float32, little-endian) and the edge's timings, its
        ``server_ms`` counted from ``t_recv`` (``perf_counter``, when the frame was read) to now; with a compact
        meta (:func:`~edgent.runtime.protocol.encode_result_meta`) for a request that came with one."""
        logits, timings = out
        self.requests_served += 1
        arr = logits.numpy()
        payload = arr.astype("<f4", copy=False).tobytes()
        if compact:
            classes = logits.argmax(1).tolist()  # (torch: warm from the computation)
            load = self.load_dict()
            timings["server_ms"] = (time.perf_counter() - t_recv) * 1e3
            return MsgType.RESULT, encode_result_meta(rid, classes, arr.shape[1], timings, load), payload
        timings["server_ms"] = (time.perf_counter() - t_recv) * 1e3
        return MsgType.RESULT, {
            "id": rid, "model": job.model, "exit": job.exit, "partition": job.partition,
            "classes": arr.argmax(axis=1).tolist(), "shape": list(arr.shape), "codec": "float32",
            "timings": {k: round(v, 4) for k, v in timings.items()}, "load": self.load_dict(),
        }, payload

    def _job(self, meta: dict[str, Any], payload_len: int) -> EdgeJob:
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
        return _payload_fits(job, payload_len)

    def _compact_job(self, plan: bytes, payload_len: int) -> EdgeJob:
        """The checked job of a compact INFER request, whose plan fields came as the bytes of a JSON object: they
        are parsed and validated once per distinct bytes (a bounded cache), its payload size on every request."""
        job = self._plan_jobs.get(plan)
        if job is None:
            job = self._check_request(parse_meta(plan))
            if len(self._plan_jobs) >= 1024:  # bounded, as _jobs
                self._plan_jobs.clear()
            self._plan_jobs[plan] = job
        return _payload_fits(job, payload_len)

    def _check_request(self, meta: dict[str, Any]) -> EdgeJob:
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
        return EdgeJob(name, chain, exit_, point, codec, tuple(shape), preprocess, codec.payload_bytes(shape))


_READING, _BUSY, _WAITING, _CLOSED = range(4)


class _FrameProtocol(asyncio.Protocol):
    """One connection without TLS, served from the event loop's callbacks (see the module's note on bounds).

    Frames are cut from the bytes as they arrive (:class:`~edgent.runtime.protocol.FrameParser`); a whole frame
    is answered in the callback that completed it, and an INFER that the engine computes inline
    (:meth:`EdgeCompute.run_inline`: an idle edge) is computed and answered there too: no coroutine, future or
    timer per frame. The rules of :func:`~edgent.runtime.protocol.read_frame` and :meth:`EdgeServer.
    _serve_connection` hold alike: HELLO first (of handshake size, within the handshake deadline), the idle,
    whole-frame and minimum-rate timeouts (one timer per connection, moved only when a rule's time comes
    earlier: it looks again when it fires), one frame in flight, ``read_buffer_bytes`` buffered ahead of the
    frame being read (reading pauses beyond it), answers past ``write_buffer_bytes`` held at most
    ``write_timeout_s``, one frame per turn of the loop and the control-frame budget. ``done`` resolves when the
    connection is to be closed (the caller closes it and frees its slot)."""

    def __init__(self, server: "EdgeServer", conn: _Connection, handshake_deadline: float) -> None:
        self.server = server
        self.conn = conn
        self.cfg = cfg = server.config
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future = self.loop.create_future()
        self.parser = FrameParser(cfg.max_payload_bytes,
                                  check_header=None if conn.authenticated else _check_hello_header)
        self.transport: asyncio.Transport | None = None
        self.state = _READING
        self.handshake_deadline = handshake_deadline
        self.read_since = self.loop.time()  # when the wait for the next frame began
        self.t_first: float | None = None  # when the first byte of the frame being read was seen
        self.rate_Bps = cfg.min_rate_bps / 8.0 if cfg.min_rate_bps else None
        self.budget = _FrameBudget(cfg.control_frames_per_s, self.read_since)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = math.inf
        self.write_timer: asyncio.TimerHandle | None = None
        self.read_paused = False
        self.write_paused = False
        self.eof = False
        self.next_wait_s: float | None = None  # the pause before the next frame, held while writing is paused

    # ------------------------------------------------------------------ asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.set_write_buffer_limits(high=self.cfg.write_buffer_bytes)  # type: ignore[attr-defined]
        self._arm(self._read_due(self.loop.time()))

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        self._guarded(self._read if self.state == _READING else self._limit_reading)

    def eof_received(self) -> bool:
        self.eof = True
        if self.state == _READING:
            self._guarded(self._read)  # the frames that arrived whole are answered; a frame cut short ends the connection
        return True  # keep the transport for the answers; _finish closes it

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _CLOSED
        self._cancel_timers()
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.write_timer is None and self.state != _CLOSED:
            self.write_timer = self.loop.call_later(self.cfg.write_timeout_s, self._finish)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.write_timer is not None:
            self.write_timer.cancel()
            self.write_timer = None
        if self.next_wait_s is not None and self.state != _CLOSED:
            wait_s, self.next_wait_s = self.next_wait_s, None
            self._next(wait_s)

    # ------------------------------------------------------------------ reading
    def _read_due(self, now: float) -> float:
        """When the frame being read (or the wait for it) breaks a timing rule (loop time)."""
        end = math.inf if self.conn.authenticated else self.handshake_deadline
        t_first = self.t_first
        if t_first is None:
            return min(end, self.read_since + self.cfg.idle_timeout_s) if self.conn.authenticated else end
        end = min(end, t_first + self.cfg.body_timeout_s)
        if self.rate_Bps is not None:
            have = self.parser.buffered
            size = self.parser.head_frame_bytes
            if size is not None:
                have = min(have, size)
            end = min(end, t_first + self.cfg.rate_grace_s + have / self.rate_Bps)
        return end

    def _arm(self, due: float) -> None:
        """Have the timer fire by ``due`` (a timer due earlier is kept: it looks again when it fires)."""
        if due >= self.timer_at or due == math.inf:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.loop.call_at(due, self._on_timer)
        self.timer_at = due

    def _on_timer(self) -> None:
        self.timer, self.timer_at = None, math.inf
        if self.state != _READING:
            return  # armed again when the next read begins
        now = self.loop.time()
        due = self._read_due(now)
        if now < due:
            self._arm(due)
            return
        if self.conn.authenticated:
            self._error("timeout", "no complete frame in time; closing the connection")
        else:
            self._error("timeout", f"no HELLO within {self.cfg.handshake_timeout_s:g} s of connecting; closing "
                                   "the connection")

    def _limit_reading(self) -> None:
        """Pause reading while more than ``read_buffer_bytes`` are held ahead of the frame being read."""
        held = self.parser.buffered
        if self.state == _READING:
            size = self.parser.head_frame_bytes
            if size is not None:
                held -= min(held, size)
        over = held > self.cfg.read_buffer_bytes
        if over != self.read_paused and self.transport is not None and not self.transport.is_closing():
            if over:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()
            self.read_paused = over

    def _guarded(self, step: Any) -> None:
        """Run ``step`` (:meth:`_read` by a callback), where a bug ends this connection only (logged), never the
        server."""
        try:
            step()
        except Exception:  # noqa: BLE001 - a bug in one connection must not stop the server
            log.exception("connection handler failed")
            self._finish()

    def _read(self) -> None:
        """Answer the next frame if it is whole; otherwise keep reading it (its timing rules armed)."""
        now = self.loop.time()
        try:
            frame = self.parser.next_frame()
        except ProtocolError as exc:
            self.t_first = None
            self.state = _BUSY
            if exc.fatal:
                self._error(exc.code, str(exc))
            else:  # a well-framed frame with a bad meta: answered, the connection stays
                self._answer_error(exc.code, str(exc))
                self._next(self.budget.wait_s(self.loop.time()))
            return
        if frame is None:
            if self.eof:  # the peer closed before the frame was whole
                self._finish()
                return
            if self.t_first is None and self.parser.buffered:
                self.t_first = now
            self._limit_reading()
            self._arm(self._read_due(now))
            return
        self.t_first = None
        self.state = _BUSY
        self._limit_reading()
        self._frame(frame)

    def _next(self, wait_s: float = 0.0) -> None:
        """After an answer: the next frame is read after ``wait_s`` (the control-frame budget), once the answers
        are taken by the kernel, and never in the turn of the loop that answered this one."""
        if self.state == _CLOSED:
            return
        if self.server._closing:
            self._finish()
            return
        if self.write_paused:
            self.next_wait_s = wait_s
            self.state = _WAITING
            return
        if wait_s > 0:
            self.state = _WAITING
            self.loop.call_later(wait_s, self._resume)
        elif self.parser.buffered or self.eof:
            self.state = _WAITING
            self.loop.call_soon(self._resume)
        else:  # nothing has arrived yet: wait for it
            self._resume_now()

    def _resume(self) -> None:
        if self.state != _WAITING:
            return
        self.state = _READING
        self.read_since = now = self.loop.time()
        if not self.parser.buffered and not self.eof:  # (the usual case) nothing to read yet: wait for it
            if self.read_paused:
                self._limit_reading()
            self._arm(self._read_due(now))
            return
        self._limit_reading()
        self._guarded(self._read)

    # ------------------------------------------------------------------ answering
    def _frame(self, frame: Frame) -> None:
        """Answer one whole frame (see :meth:`EdgeServer._serve_connection` for what each type gets)."""
        server, conn = self.server, self.conn
        rid = _request_id(frame.meta)
        if not conn.authenticated:  # a HELLO (the parser refuses anything else before it)
            if not server._token_ok(frame.meta.get("token")):
                self._error("unauthorized", "wrong or missing token", rid)
                return
            advert = server.advertisement() if frame.meta.get("advertise") is True else b""
            meta = {**server._welcome, "load": server.load_dict()}
            if advert:
                meta["advertisement_bytes"] = len(advert)
            self._write(MsgType.WELCOME, meta, advert)
            conn.authenticated = True
            self.parser.check_header = None
            conn.idle_since = self.loop.time()
            server._unauth.pop(conn, None)
            if not conn.evicted:
                server._idle[conn] = None
            if self.write_paused:  # (a large advertisement) the next frame once the kernel took it
                self._next(0.0)
            else:
                self._resume_now()
            return
        conn.busy = True
        server._idle.pop(conn, None)
        if frame.type == MsgType.INFER:
            t_recv = time.perf_counter()
            try:
                job, deadline_ms, rid = server._infer_check(frame)
            except _Refusal as r:
                answer = r.answer
            else:
                try:
                    out = server.compute.run_inline(job, frame.payload, deadline_ms)
                except Exception as exc:  # noqa: BLE001 - see EdgeServer._infer_failed
                    answer = server._infer_failed(exc, rid)
                else:
                    if out is None:  # the engine hands it off: answered when it is done
                        task = self.loop.create_task(self._infer_later(frame, job, deadline_ms, t_recv, rid))
                        server._tasks.add(task)
                        task.add_done_callback(server._tasks.discard)
                        return
                    answer = server._infer_answer(job, rid, out, t_recv, frame.compact is not None)
            self._answered(*answer)
        elif frame.type == MsgType.HEALTH:
            self._answered(MsgType.STATUS, {
                "id": rid, "live": True, "ready": server._ready and not server._closing,
                "models": list(server.models), "load": server.load_dict()})
        elif frame.type == MsgType.PROBE:
            self._answered(MsgType.PROBE_ACK, {"id": rid, "received_bytes": len(frame.payload)})
        elif frame.type == MsgType.HELLO:
            self._answer_error("bad_request", "HELLO was already received on this connection", rid)
            self._done_with_frame(MsgType.ERROR)
        else:
            self._error("bad_type", f"a device may not send {frame.type.name} frames", rid)

    def _resume_now(self) -> None:
        """Go on reading at once (after the HELLO: its connection's first frame follows without a turn)."""
        self.state = _WAITING
        self._resume()

    async def _infer_later(self, frame: Frame, job: EdgeJob, deadline_ms: float | None, t_recv: float,
                           rid: Any) -> None:
        answer = await self.server._infer_computed(job, frame.payload, deadline_ms, rid, t_recv,
                                                   frame.compact is not None)
        del frame
        if self.state != _CLOSED:
            self._guarded(lambda: self._answered(*answer))

    def _answered(self, msg_type: MsgType, meta: dict[str, Any] | CompactMeta, payload: bytes = b"") -> None:
        """Write a frame's answer, then go on to the next frame."""
        if msg_type == MsgType.ERROR:
            self.server.errors_sent += 1
        self._write(msg_type, meta, payload)
        self._done_with_frame(msg_type)

    def _done_with_frame(self, msg_type: MsgType) -> None:
        conn = self.conn
        conn.busy = False
        conn.idle_since = now = self.loop.time()
        if not conn.evicted:
            self.server._idle[conn] = None
        # [Note: bounds and fairness] every other connection gets its turn before this one's next frame; a frame
        # that did not ask for a computation takes from the connection's budget of them
        self._next(0.0 if msg_type == MsgType.RESULT else self.budget.wait_s(now))

    def _write(self, msg_type: MsgType, meta: dict[str, Any] | CompactMeta, payload: bytes = b"") -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(encode_frame(msg_type, meta, payload))

    def _answer_error(self, code: str, message: str, request_id: Any = None) -> None:
        self.server.errors_sent += 1
        self._write(MsgType.ERROR, error_meta(code, message[:1000], request_id))

    def _error(self, code: str, message: str, request_id: Any = None) -> None:
        """Answer a fatal error and close the connection."""
        self._answer_error(code, message, request_id)
        self._finish()

    def _cancel_timers(self) -> None:
        for h in (self.timer, self.write_timer):
            if h is not None:
                h.cancel()
        self.timer = self.write_timer = None
        self.timer_at = math.inf

    def _finish(self) -> None:
        """Stop serving this connection: the caller closes it (its last answers first) and frees its slot."""
        self.state = _CLOSED
        self._cancel_timers()
        if not self.done.done():
            self.done.set_result(None)


def local_compute(models: dict[str, MultiExitChain], config: ServerConfig,
                  runners: dict[str, Any] | None = None) -> EdgeCompute:
    """The in-process engine ``config`` asks for: :class:`BatchingCompute` with a batch window, else
    :class:`LocalCompute`; ``runners`` (model -> :class:`edgent.model.placement.PartRunner`) where the parts run
    other than eager on the CPU."""
    if config.batch_window_ms is not None:
        return BatchingCompute(models, config.threads, config.batch_window_ms, config.max_batch,
                               slowdown=config.slowdown, runners=runners)
    return LocalCompute(models, config.threads, config.inline_when_idle, runners=runners, slowdown=config.slowdown)


def _find_malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (None elsewhere)."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
        trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
        return trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _find_malloc_trim()
#: closed connections after which the server gives freed memory back, at most once per interval
_TRIM_AFTER_CLOSED = 16
_TRIM_INTERVAL_S = 2.0


def _payload_fits(job: EdgeJob, payload_len: int) -> EdgeJob:
    """``job`` when a payload of ``payload_len`` bytes fits it (its codec's exact size, or at most its bound);
    EdgentError otherwise."""
    codec = job.codec
    if payload_len > job.payload_bytes or (codec.exact_size and payload_len != job.payload_bytes):
        raise EdgentError(f"codec {codec.name}: payload of {payload_len} bytes does not fit shape {list(job.shape)} "
                          f"({job.payload_bytes} bytes{' at most' if not codec.exact_size else ''})")
    return job


def _check_hello_header(msg_type: MsgType, meta_len: int, payload_len: int) -> None:
    """Before authentication only a HELLO of handshake size: nothing larger is buffered for an unknown peer."""
    if msg_type != MsgType.HELLO:
        raise ProtocolError("hello_required", "the first frame must be HELLO")
    if meta_len > MAX_HELLO_META_BYTES or payload_len:
        raise ProtocolError("too_large", f"a HELLO carries at most {MAX_HELLO_META_BYTES} bytes of meta and no "
                                         f"payload, got {meta_len} and {payload_len}")


class _suppress_os_error:
    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, *_: Any) -> bool:
        return exc_type is not None and issubclass(exc_type, OSError)


def _listen(host: str, port: int, backlog: int = 512) -> list[socket.socket]:
    """Non-blocking listening sockets on every address of ``host`` (as ``asyncio.start_server`` binds them)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    out: list[socket.socket] = []
    seen = set()
    try:
        for family, type_, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            s = socket.socket(family, type_, proto)
            out.append(s)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6 and hasattr(socket, "IPPROTO_IPV6"):
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s.bind(addr)
            s.listen(backlog)
            s.setblocking(False)
    except OSError:
        for s in out:
            s.close()
        raise
    return out


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


def advertisement_doc(models: list[str], latency_model: str | None = None) -> dict[str, Any]:
    """What the edge advertises in its handshake (see :meth:`EdgeServer.advertisement`)."""
    from pathlib import Path

    from edgent.model.card import card_path

    def read(path: Any) -> Any:
        try:
            return None if path is None else json.loads(Path(path).read_text())
        except (OSError, ValueError):
            return None

    if latency_model is None:
        from edgent.latency.predictor import FITTED_DIR

        latency_model = str(FITTED_DIR / "edge.json")
    fits = read(latency_model)
    out: dict[str, Any] = {}
    for name in models:
        try:
            card = read(card_path(name))
        except EdgentError:  # a model outside the zoo
            card = None
        out[name] = {"card": card, "edge_latency_model": fits}
    return {"handshake": HANDSHAKE_VERSION, "models": out}
