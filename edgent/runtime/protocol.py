"""The wire protocol between device and edge: length-prefixed frames over TCP (optionally TLS).

Every message is one frame::

    header (16 bytes, network byte order)   magic "EDGT" | version u8 | type u8 | flags u16 |
                                            meta_len u32 | payload_len u32
    meta     (meta_len bytes)               a UTF-8 JSON object (at most MAX_META_BYTES), or with the flag
                                            FLAG_COMPACT (INFER and RESULT only) a compact meta: fixed binary fields
                                            then a JSON object (see "Compact meta" below)
    payload  (payload_len bytes)            raw bytes: a codec's output (at most the receiver's payload limit)

Compact meta: the per-request frames carry, besides their fixed fields, a few numbers per request (an id, a
deadline, timings, the load); as JSON they cost the most of a request's path on cold caches (JSON numbers written
and read), so an edge that says ``"compact_meta": 1`` in its WELCOME takes INFER frames whose meta is packed
(:func:`encode_infer_meta`) and answers them with a packed RESULT (:func:`encode_result_meta`). An INFER's plan
fields stay JSON (the same for every request of a plan: the edge checks them once and keys its cache by their
bytes); a RESULT's fixed fields are followed by a JSON object of any others (normally empty). A device that did
not ask gets JSON as before.

Nothing in a frame runs code on load: JSON and raw bytes only (no pickle); the meta's JSON may not hold NaN or
Infinity. Lengths are checked against the limits before anything is read, and a body is buffered as it arrives,
never allocated from a declared length; before a connection is authenticated only a HELLO of at most
MAX_HELLO_META_BYTES is accepted. A frame that breaks the framing (bad magic, wrong version, unknown type, a length
over the limit) is answered with an ERROR frame and the connection is closed; a well-framed but bad request (bad
JSON, a field out of range, a wrong codec size) gets an ERROR frame and the connection stays open. The message types
and their meta fields are documented in docs/runtime.md.
"""

from __future__ import annotations

import asyncio
import json
import math
import socket
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Callable

from edgent.errors import EdgentError

MAGIC = b"EDGT"
VERSION = 1
#: the version of the handshake's content (the WELCOME's fields), apart from the framing's VERSION: 2 adds the
#: advertisement (a device's HELLO with ``"advertise": true`` gets, in the WELCOME's payload, a JSON document
#: ``{"handshake": 2, "models": {NAME: {"card": {...} | null, "edge_latency_model": {...} | null}}}``: the model
#: cards and the edge's fitted latency model, so that a device needs no copied file). JSON only, never pickle.
HANDSHAKE_VERSION = 2
HEADER = struct.Struct("!4sBBHII")
HEADER_BYTES = HEADER.size
MAX_META_BYTES = 16 * 1024
#: the largest meta of a HELLO (client name and token); a HELLO carries no payload
MAX_HELLO_META_BYTES = 4 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 64 * 1024 * 1024
#: the most bytes asked of the stream per read while a frame's body arrives (the body grows with what arrived)
_BODY_CHUNK_BYTES = 1 << 20


#: header flag: the meta is compact (INFER and RESULT only; any other flag, or the flag on another type, is
#: refused as ``bad_meta`` once the frame is consumed)
FLAG_COMPACT = 0x0001
#: the version of the compact meta's layout an edge announces in its WELCOME (``compact_meta``)
COMPACT_META_VERSION = 1
#: a compact INFER meta: id (u64), whether a deadline follows (u8: 0 or 1), the deadline (ms, f64), then the JSON
#: object of the plan's fields (``model``, ``exit``, ``partition``, ``codec``, ``shape``, ``preprocess``)
_INFER_HEAD = struct.Struct("!QBd")
#: a compact RESULT meta: id (u64), the logits' shape (rows u16, classes u16), the timings (ms, f64; NaN: not
#: measured), the batch size (u16; 0: not batched), the load (queue_length u32, in_service u32, workers u16,
#: connections u32, then ms as f64, NaN for null), the class of each row (u16 each), then the JSON object of any
#: other fields (b"" when none)
_RESULT_HEAD = struct.Struct("!QHH5dHIIHI4d")
#: the timings a compact RESULT carries in its fixed fields, in order
RESULT_TIMING_KEYS = ("queue_ms", "decode_ms", "compute_ms", "encode_ms", "server_ms")
#: the load's fields in a compact RESULT, in order (counts, then ms)
LOAD_COUNT_KEYS = ("queue_length", "in_service", "workers", "connections")
LOAD_MS_KEYS = ("mean_compute_ms", "mean_service_ms", "batch_window_ms", "in_service_left_ms")
_NAN = float("nan")


class MsgType(IntEnum):
    """Frame types. Requests from the device are odd, answers from the edge even (ERROR answers anything)."""

    HELLO = 1  # device -> edge: {"client", "token"?}; must be the first frame of a connection
    WELCOME = 2  # edge -> device: {"server", "models", "max_payload_bytes"}
    INFER = 3  # device -> edge: {"id", "model", "exit", "partition", "codec", "shape", "preprocess"?} + payload
    RESULT = 4  # edge -> device: {"id", "classes", "shape", "codec", "timings", "load"} + logits payload
    HEALTH = 5  # device -> edge: {"id"?}
    STATUS = 6  # edge -> device: {"live", "ready", "models", "load"}
    PROBE = 7  # device -> edge: {"id"?} + filler payload (a light bandwidth probe)
    PROBE_ACK = 8  # edge -> device: {"id", "received_bytes"}
    ERROR = 15  # edge -> device: {"code", "message", "fatal", "id"?}


_TYPES = {int(t): t for t in MsgType}

#: error codes after which the edge closes the connection (the framing or the peer can no longer be trusted)
FATAL_CODES = frozenset({"bad_magic", "bad_version", "bad_type", "too_large", "unauthorized", "hello_required",
                         "shutting_down", "too_many_connections", "timeout"})


class ProtocolError(EdgentError):
    """A frame that breaks the protocol; ``code`` is the machine-readable reason sent in the ERROR frame."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def fatal(self) -> bool:
        return self.code in FATAL_CODES


@dataclass
class Frame:
    """One decoded frame."""

    type: MsgType
    meta: dict[str, Any] = field(default_factory=dict)
    payload: bytes | bytearray = b""
    #: a compact frame's meta bytes (``meta`` is then empty: :func:`decode_infer_meta`, :func:`decode_result_meta`)
    compact: bytes | None = None

    @property
    def wire_bytes(self) -> int:
        """Bytes this frame took on the wire (header + meta + payload), measured when it was read."""
        return getattr(self, "_wire_bytes", HEADER_BYTES + len(self.payload))


#: one encoder and one decoder for every frame's meta (``json.dumps``/``loads`` with options build new ones per call)
_META_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, check_circular=False)  # metas are trees


def encode_meta(value: Any) -> bytes:
    """``value`` as the compact UTF-8 JSON of a frame's meta (ValueError for NaN or infinity)."""
    return _META_ENCODER.encode(value).encode()


class CompactMeta(bytes):
    """An encoded compact meta (:func:`encode_result_meta`): :func:`encode_frame` sends it with FLAG_COMPACT."""

    __slots__ = ()


def encode_frame(msg_type: MsgType, meta: dict[str, Any] | CompactMeta | None = None,
                 payload: bytes | bytearray = b"") -> bytes:
    """The bytes of one frame (a :class:`CompactMeta` goes as it is, flagged compact); raises ProtocolError when
    the meta is too large."""
    if type(meta) is CompactMeta:
        return encode_frame_json(msg_type, meta, payload, FLAG_COMPACT)
    return encode_frame_json(msg_type, encode_meta(meta or {}), payload)


def encode_frame_json(msg_type: MsgType, meta_json: bytes, payload: bytes | bytearray = b"", flags: int = 0
                      ) -> bytes:
    """The bytes of one frame whose meta is already encoded (``meta_json``: the UTF-8 JSON of an object, as
    :func:`encode_meta` makes it, or with ``flags=FLAG_COMPACT`` a compact meta); raises ProtocolError when it is
    too large."""
    if len(meta_json) > MAX_META_BYTES:
        raise ProtocolError("too_large", f"frame meta is {len(meta_json)} bytes, the limit is {MAX_META_BYTES}")
    return b"".join((HEADER.pack(MAGIC, VERSION, int(msg_type), flags, len(meta_json), len(payload)), meta_json,
                     payload))


def encode_infer_meta(request_id: int, deadline_ms: float | None, plan_json: bytes) -> bytes:
    """The compact meta of an INFER request: its id (an integer of 0..2**64-1), the deadline (ms the device can
    still wait, or None) and ``plan_json``, the JSON object of the plan's fields as :func:`encode_meta` makes it."""
    if deadline_ms is None:
        return _INFER_HEAD.pack(request_id, 0, 0.0) + plan_json
    return _INFER_HEAD.pack(request_id, 1, deadline_ms) + plan_json


def decode_infer_meta(raw: bytes) -> tuple[int, float | None, bytes]:
    """(id, deadline_ms or None, the plan's JSON bytes) of a compact INFER meta; ProtocolError("bad_meta") when it
    is too short or its deadline marker is not 0 or 1. The deadline's value and the plan are checked by the edge,
    as for a JSON meta."""
    if len(raw) < _INFER_HEAD.size:
        raise ProtocolError("bad_meta", f"a compact INFER meta is at least {_INFER_HEAD.size} bytes, got {len(raw)}")
    request_id, has_deadline, deadline_ms = _INFER_HEAD.unpack_from(raw, 0)
    if has_deadline > 1:
        raise ProtocolError("bad_meta", f"a compact INFER meta's deadline marker must be 0 or 1, got {has_deadline}")
    return request_id, deadline_ms if has_deadline else None, raw[_INFER_HEAD.size:]


def encode_result_meta(request_id: int, classes: list[int], num_classes: int, timings: dict[str, float],
                       load: dict[str, Any]) -> CompactMeta:
    """The compact meta of a RESULT: the request's id, the class of each row of the logits (their argmax; the
    logits are ``len(classes)`` x ``num_classes``), its timings (:data:`RESULT_TIMING_KEYS` and ``batch_size`` in
    the fixed fields, any other key in the JSON that follows) and the edge's load as every answer carries it
    (``EdgeServer.load_dict``: :data:`LOAD_COUNT_KEYS`, then :data:`LOAD_MS_KEYS` with None as NaN)."""
    get = timings.get
    extra = None if timings.keys() <= _FIXED_TIMINGS else {k: v for k, v in timings.items() if k not in _FIXED_TIMINGS}
    counts = [load[k] for k in LOAD_COUNT_KEYS]
    ms = [_NAN if load[k] is None else load[k] for k in LOAD_MS_KEYS]
    rows = len(classes)
    head = _RESULT_HEAD.pack(request_id, rows, num_classes, get("queue_ms", _NAN), get("decode_ms", _NAN),
                             get("compute_ms", _NAN), get("encode_ms", _NAN), get("server_ms", _NAN),
                             get("batch_size", 0), *counts, *ms) + struct.pack("!%dH" % rows, *classes)
    return CompactMeta(head + encode_meta({"timings": extra}) if extra else head)


_FIXED_TIMINGS = frozenset(RESULT_TIMING_KEYS) | {"batch_size"}


def decode_result_meta(raw: bytes) -> dict[str, Any]:
    """A compact RESULT meta as the JSON one reads: ``id``, ``shape``, ``classes``, ``timings`` (the measured ones,
    and ``batch_size`` when batched) and ``load``; ProtocolError("bad_meta") when it is too short for its rows or
    what follows its fixed fields is not a JSON object."""
    n = _RESULT_HEAD.size
    if len(raw) < n:
        raise ProtocolError("bad_meta", f"a compact RESULT meta is at least {n} bytes, got {len(raw)}")
    v = _RESULT_HEAD.unpack_from(raw, 0)
    rows = v[1]
    if len(raw) < n + 2 * rows:
        raise ProtocolError("bad_meta", f"a compact RESULT meta of {rows} rows is at least {n + 2 * rows} bytes, got "
                                        f"{len(raw)}")
    classes = list(struct.unpack_from("!%dH" % rows, raw, n))
    n += 2 * rows
    timings = {k: x for k, x in zip(RESULT_TIMING_KEYS, v[3:8]) if x == x}
    if v[8]:
        timings["batch_size"] = v[8]
    load: dict[str, Any] = dict(zip(LOAD_COUNT_KEYS, v[9:13]))
    for k, x in zip(LOAD_MS_KEYS, v[13:17]):
        load[k] = x if x == x else None
    meta = {"id": v[0], "shape": [rows, v[2]], "classes": classes, "timings": timings, "load": load}
    if len(raw) > n:
        extra = parse_meta(raw[n:]).get("timings")
        if isinstance(extra, dict):
            for k, x in extra.items():
                timings.setdefault(k, x)
    return meta


def parse_header(data: bytes, max_payload_bytes: int, max_meta_bytes: int = MAX_META_BYTES
                 ) -> tuple[MsgType, int, int]:
    """Check a 16-byte header and return (type, meta_len, payload_len); raises ProtocolError."""
    return parse_header_at(data, 0, max_payload_bytes, max_meta_bytes)


def parse_header_at(data: bytes | bytearray, offset: int, max_payload_bytes: int,
                    max_meta_bytes: int = MAX_META_BYTES) -> tuple[MsgType, int, int]:
    """:func:`parse_header` of the 16 bytes of ``data`` at ``offset`` (no copy of them)."""
    magic, version, type_code, _flags, meta_len, payload_len = HEADER.unpack_from(data, offset)
    if magic != MAGIC:
        raise ProtocolError("bad_magic", f"not an edgent frame (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ProtocolError("bad_version", f"protocol version {version} is not supported; this end speaks {VERSION}")
    msg_type = _TYPES.get(type_code)
    if msg_type is None:
        raise ProtocolError("bad_type", f"unknown frame type {type_code}")
    if meta_len > max_meta_bytes:
        raise ProtocolError("too_large", f"frame meta of {meta_len} bytes exceeds the limit of {max_meta_bytes}")
    if payload_len > max_payload_bytes:
        raise ProtocolError("too_large", f"payload of {payload_len} bytes exceeds the limit of {max_payload_bytes}")
    return msg_type, meta_len, payload_len


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_META_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_meta(data: bytes | bytearray | memoryview) -> dict[str, Any]:
    """The JSON object of a frame's meta part; raises ProtocolError("bad_meta") for anything else, also for the
    NaN, Infinity and -Infinity that Python's json module would otherwise accept."""
    if not data:
        return {}
    try:
        meta = _META_DECODER.decode(str(data, "utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError("bad_meta", f"frame meta is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ProtocolError("bad_meta", f"frame meta must be a JSON object, got {type(meta).__name__}")
    return meta


async def read_frame(reader: asyncio.StreamReader, max_payload_bytes: int,
                     body_timeout_s: float | None = 30.0, header_timeout_s: float | None = None, *,
                     min_rate_bps: float | None = None, rate_grace_s: float = 2.0,
                     max_meta_bytes: int = MAX_META_BYTES, deadline: float | None = None,
                     check_header: Callable[[MsgType, int, int], None] | None = None) -> Frame:
    """Read one frame (one timer for the whole read, rescheduled as bytes arrive).

    Timing rules (times on the running loop's clock):

    - the frame's first byte must arrive within ``header_timeout_s`` (None: wait indefinitely);
    - from that byte on, the whole frame must arrive within ``body_timeout_s``;
    - with ``min_rate_bps``, a sender must keep up that rate after ``rate_grace_s``: by ``t`` seconds after the
      first byte, at least ``(t - rate_grace_s) * min_rate_bps / 8`` bytes of the frame must have arrived;
    - nothing is waited for past ``deadline`` (an absolute loop time, e.g. the end of a handshake).

    ``check_header(type, meta_len, payload_len)`` may raise ProtocolError to refuse a frame from its header (before
    its body is read). The body is buffered as it arrives (at most 1 MiB is asked of the stream at a time), never
    allocated from the declared lengths.

    Raises ProtocolError for a bad frame, asyncio.IncompleteReadError when the peer closes mid-frame (or before
    it) and TimeoutError when a timing rule is broken. The meta of a well-framed frame with bad JSON raises
    ProtocolError("bad_meta") only after the whole frame was read, so the connection stays usable."""
    loop = asyncio.get_running_loop()
    first_by = math.inf if header_timeout_s is None else loop.time() + header_timeout_s
    end_by = math.inf if deadline is None else deadline
    async with asyncio.timeout_at(_finite(min(first_by, end_by))) as timer:
        head = await reader.read(HEADER_BYTES)
        if not head:
            raise asyncio.IncompleteReadError(b"", HEADER_BYTES)
        t_first = loop.time()
        if body_timeout_s is not None:
            end_by = min(end_by, t_first + body_timeout_s)
        rate_Bps = None if not min_rate_bps else min_rate_bps / 8.0

        async def more(have: int, want: int) -> bytes:
            """Up to ``want`` more bytes of the frame, of which ``have`` bytes arrived so far."""
            due = end_by if rate_Bps is None else min(end_by, t_first + rate_grace_s + have / rate_Bps)
            timer.reschedule(_finite(due))
            chunk = await reader.read(want)
            if not chunk:
                raise asyncio.IncompleteReadError(b"", want)
            return chunk

        if len(head) < HEADER_BYTES:
            head = bytearray(head)
            while len(head) < HEADER_BYTES:
                head += await more(len(head), HEADER_BYTES - len(head))
            head = bytes(head)
        msg_type, meta_len, payload_len = parse_header(head, max_payload_bytes, max_meta_bytes)
        if check_header is not None:
            check_header(msg_type, meta_len, payload_len)
        need = meta_len + payload_len
        body: bytes | bytearray = b""
        if need:
            body = await more(HEADER_BYTES, min(need, _BODY_CHUNK_BYTES))
            if len(body) < need:
                body = bytearray(body)
                while len(body) < need:
                    body += await more(HEADER_BYTES + len(body), min(need - len(body), _BODY_CHUNK_BYTES))
    frame = Frame(msg_type, {}, memoryview(body)[meta_len:] if payload_len else b"")
    frame._wire_bytes = HEADER_BYTES + need  # type: ignore[attr-defined]
    _set_meta(frame, (head[6] << 8) | head[7], body[:meta_len])
    return frame


def _set_meta(frame: Frame, flags: int, meta: bytes | bytearray | memoryview) -> None:
    """Give a consumed frame its meta: the JSON object, or a compact meta's bytes (``frame.compact``);
    ProtocolError("bad_meta") for bad JSON, an unknown flag, or a compact meta on a type that has none."""
    if not flags:
        frame.meta = parse_meta(meta)
    elif flags == FLAG_COMPACT and (frame.type == MsgType.INFER or frame.type == MsgType.RESULT):
        frame.compact = bytes(meta)
    else:
        raise ProtocolError("bad_meta", f"header flags {flags:#06x} are not supported on a {frame.type.name} frame "
                                        f"(only {FLAG_COMPACT:#06x}, compact meta, on INFER and RESULT)")


class FrameParser:
    """Frames cut from bytes as they arrive, for a reader driven by callbacks (an ``asyncio.Protocol``'s
    ``data_received``) rather than by coroutines; no I/O, no clock (the caller owns the timing rules).

    :meth:`feed` takes each chunk as it arrives; :meth:`next_frame` returns the next whole frame, or None while
    it has not fully arrived. The same checks as :func:`read_frame`: a header is checked (and ``check_header``
    called) as soon as its 16 bytes are in, before any of its body is waited for; a frame's body is held as it
    arrives, never allocated from the declared lengths; a bad meta raises ProtocolError("bad_meta") only once the
    whole frame is consumed, so that the next frame can follow. A frame that arrived in one chunk is not copied:
    its payload is a view of that chunk. How many bytes may be held ahead of a frame is the caller's limit
    (:attr:`buffered`, :attr:`head_frame_bytes`)."""

    __slots__ = ("max_payload_bytes", "max_meta_bytes", "check_header", "_buf", "_pos", "_head")

    def __init__(self, max_payload_bytes: int, max_meta_bytes: int = MAX_META_BYTES,
                 check_header: Callable[[MsgType, int, int], None] | None = None) -> None:
        self.max_payload_bytes = max_payload_bytes
        self.max_meta_bytes = max_meta_bytes
        self.check_header = check_header
        self._buf: bytes | bytearray = b""  # a chunk as it came (bytes), or a bytearray of this parser's own
        self._pos = 0
        self._head: tuple[MsgType, int, int] | None = None  # the checked header of the frame at _pos

    @property
    def buffered(self) -> int:
        """Bytes held that no frame returned so far took."""
        return len(self._buf) - self._pos

    @property
    def head_frame_bytes(self) -> int | None:
        """The whole size (header included) of the next frame once its header is in and checked, else None."""
        h = self._head
        return None if h is None else HEADER_BYTES + h[1] + h[2]

    def feed(self, data: bytes | bytearray) -> None:
        """Add bytes that arrived."""
        if not data:
            return
        buf = self._buf
        if self._pos == len(buf):  # nothing held: keep the chunk itself (the usual case: no copy)
            self._buf, self._pos = data, 0
        elif type(buf) is bytearray:  # our own, with no views of it handed out: grows in place
            if self._pos:
                del buf[:self._pos]
                self._pos = 0
            buf += data
        else:  # a chunk (or a rest after a frame) held as it came: copy what is left once, then grow
            nb = bytearray(memoryview(buf)[self._pos:])
            nb += data
            self._buf, self._pos = nb, 0

    def next_frame(self) -> Frame | None:
        """The next whole frame (consumed), or None while it has not fully arrived. Raises ProtocolError for a
        header that breaks the framing (nothing more can be parsed then) and ProtocolError("bad_meta") for a
        consumed frame whose meta is not a JSON object."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < HEADER_BYTES:
            return None
        head = self._head
        if head is None:
            head = parse_header_at(buf, pos, self.max_payload_bytes, self.max_meta_bytes)
            if self.check_header is not None:
                self.check_header(*head)
            self._head = head
        msg_type, meta_len, payload_len = head
        end = pos + HEADER_BYTES + meta_len + payload_len
        if len(buf) < end:
            return None
        self._head = None
        view = memoryview(buf)
        meta_at = pos + HEADER_BYTES
        frame = Frame(msg_type, {}, view[meta_at + meta_len:end] if payload_len else b"")
        frame._wire_bytes = end - pos  # type: ignore[attr-defined]
        meta = view[meta_at:meta_at + meta_len]
        flags = (buf[pos + 6] << 8) | buf[pos + 7]
        if end == len(buf):
            self._buf, self._pos = b"", 0
        elif type(buf) is bytearray:  # the frame holds views of it: the rest moves to a buffer of its own
            self._buf, self._pos = bytes(view[end:]), 0
        else:
            self._pos = end
        _set_meta(frame, flags, meta)
        return frame


def _finite(t: float) -> float | None:
    return None if t == math.inf else t


def _recv_exact(sock: socket.socket, n: int) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("the edge closed the connection")
        got += k
    return buf


def recv_frame(sock: socket.socket, max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Frame:
    """Blocking read of one frame from a socket (the device side); the socket's timeout applies."""
    head = bytes(_recv_exact(sock, HEADER_BYTES))
    msg_type, meta_len, payload_len = parse_header(head, max_payload_bytes)
    body = _recv_exact(sock, meta_len + payload_len)
    frame = Frame(msg_type, {}, memoryview(body)[meta_len:] if payload_len else b"")
    frame._wire_bytes = HEADER_BYTES + meta_len + payload_len  # type: ignore[attr-defined]
    _set_meta(frame, (head[6] << 8) | head[7], body[:meta_len])
    return frame


def error_meta(code: str, message: str, request_id: Any = None) -> dict[str, Any]:
    """Meta of an ERROR frame."""
    meta: dict[str, Any] = {"code": code, "message": message, "fatal": code in FATAL_CODES}
    if request_id is not None:
        meta["id"] = request_id
    return meta
