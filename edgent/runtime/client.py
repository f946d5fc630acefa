"""The device side: run the device part, encode, send, receive; fall back on the device when the edge fails.

:class:`DeviceClient` holds one connection to one edge server (blocking sockets: the device does one request at a
time). ``infer(x, exit, partition, codec, deadline_ms)`` returns an :class:`InferenceResult` that says where the
answer came from (``"edge"``, ``"device"`` when the plan ran everything locally, ``"fallback"`` when the edge
was unreachable, full, too slow, overloaded, refused the device or answered nonsense) and the time of every stage.

Nothing the edge does makes ``infer`` raise unless the caller asked for the edge only (``fallback=False``): every
edge-side failure becomes an on-device answer whose ``fallback_reason`` says why. A failure that a person has to
fix (the edge refused the token, its TLS certificate does not verify against the device's CA, the edge refused the
request itself) is also reported once per distinct message as a warning (logger ``edgent.device``, shown on
stderr when logging is not configured).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from edgent.codec import get_codec
from edgent.errors import ConfigError, EdgentError, InputError
from edgent.model.chain import MultiExitChain
from edgent.runtime.bandwidth import BandwidthEstimator
from edgent.runtime.link import AppLink
from edgent.model.preprocess import default_preprocess, get_preprocess
from edgent.runtime.protocol import (
    COMPACT_META_VERSION,
    DEFAULT_MAX_PAYLOAD_BYTES,
    FLAG_COMPACT,
    Frame,
    FrameParser,
    MsgType,
    ProtocolError,
    decode_result_meta,
    encode_frame,
    encode_frame_json,
    encode_infer_meta,
    encode_meta,
)


class EdgeUnavailable(EdgentError):
    """The edge could not be reached, closed the connection or did not answer in time."""


class RemoteError(EdgentError):
    """The edge answered with an ERROR frame; ``code`` is its reason."""

    def __init__(self, code: str, message: str, meta: dict[str, Any] | None = None) -> None:
        super().__init__(f"edge error {code}: {message}")
        self.code = code
        self.meta = meta or {}


_FLOAT32 = get_codec("float32")
log = logging.getLogger("edgent.device")

#: edge error codes that are the edge's passing state (the device falls back quietly); after any other code the
#: device falls back too, but warns: a person has to fix something (the token, the model the edge serves, ...)
RECOVERABLE_CODES = frozenset({"overloaded", "shutting_down", "internal", "timeout", "too_many_connections"})
#: ms kept in reserve beside the fallback exit's own time: from giving up on the edge to the fallback's start
#: (the timeout firing, the connection closed, the exit chosen), so that a fallback started at the give-up point
#: still has its exit's whole predicted time before the deadline
FALLBACK_SWITCH_MS = 5.0
#: the most bytes asked of the socket per read of an answer (what follows the answer is kept for the next frame);
#: below glibc's default mmap threshold (128 KiB), so that the buffer of each read comes from the heap
_RECV_BYTES = 64 * 1024


@dataclass
class InferenceResult:
    """One co-inference: the answer, where it was computed, and how long each stage took (ms)."""

    logits: torch.Tensor
    classes: list[int]
    exit: int
    partition: int
    codec: str | None
    where: str
    requested: dict[str, Any]
    fallback_reason: str | None = None
    deadline_ms: float | None = None
    total_ms: float = 0.0
    device_ms: float = 0.0
    encode_ms: float = 0.0
    network_ms: float | None = None
    server_timings_ms: dict[str, float] | None = None
    edge_load: dict[str, Any] | None = None
    upload_bytes: int = 0
    download_bytes: int = 0
    bandwidth_sample_bps: float | None = None
    #: what the sample is: ``measured``, or ``lower_bound`` (a latency-bound or all-burst transfer that showed
    #: the estimate too low; :class:`edgent.runtime.bandwidth.BandwidthEstimator`)
    bandwidth_sample_kind: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: whether the edge's wait kept the fallback's time in reserve (None: nothing was sent to the edge)
    give_up_reserved: bool | None = None
    #: for a fallback: what was left of the deadline (ms) when the device started it (None: no deadline)
    fallback_left_ms: float | None = None

    @property
    def fallback(self) -> bool:
        return self.where == "fallback"

    @property
    def met_deadline(self) -> bool | None:
        return None if self.deadline_ms is None else self.total_ms <= self.deadline_ms


def client_ssl_context(ca_file: str | None = None, insecure: bool = False) -> ssl.SSLContext:
    """A TLS context for the device: trusts ``ca_file`` (e.g. the edge's self-signed certificate)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class DeviceClient:
    """A device talking to one edge server about one model (see the module docstring).

    Args:
        host, port: the edge server.
        model: the device's copy of the chain (or a zoo name, loaded with its trained weights).
        token: the deployment's shared token, when the edge requires one.
        ssl_context / server_hostname: TLS (see :func:`client_ssl_context`).
        link: application-level delay and, without root, emulated rate (:class:`AppLink`).
        estimator: where bandwidth and RTT samples go (a fresh :class:`BandwidthEstimator` by default).
        slowdown: an object with ``scope()`` (e.g. ``edgent.profile.throttle.Slowdown``) around device compute.
        exit_accuracy: accuracy per exit; the fallback picks the most accurate exit that fits the deadline
            (default: the deepest one).
        device_exit_ms: device time of each exit's full forward for one input; measured here when not given.
    """

    def __init__(
        self,
        host: str,
        port: int,
        model: MultiExitChain | str,
        *,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        link: AppLink | None = None,
        estimator: BandwidthEstimator | None = None,
        preprocess: str | None = None,
        connect_timeout_s: float = 2.0,
        timeout_s: float = 30.0,
        max_backoff_s: float = 2.0,
        slowdown: Any = None,
        exit_accuracy: dict[int, float] | None = None,
        device_exit_ms: dict[int, float] | None = None,
        client_name: str = "device",
    ) -> None:
        if isinstance(model, str):
            from edgent.model.zoo import load_model

            model = load_model(model)
        self.chain = model.eval()
        self.host, self.port = host, int(port)
        self.token = token
        self.ssl_context = ssl_context
        self.server_hostname = server_hostname or host
        self.link = link or AppLink()
        self.estimator = estimator or BandwidthEstimator()
        self.preprocess_name = preprocess or default_preprocess(self.chain.name)
        self._preprocess = get_preprocess(self.preprocess_name)
        self.connect_timeout_s = connect_timeout_s
        self.timeout_s = timeout_s
        self.max_backoff_s = max_backoff_s
        self.slowdown = slowdown
        self.exit_accuracy = exit_accuracy or {ep.exit: float(ep.exit) for ep in self.chain.exit_points}
        self.client_name = client_name
        #: keep the fastest exit's device time in reserve before the deadline (fall back early enough to finish
        #: in time) for a request whose plan gives no prediction; False: wait for the edge until the deadline
        #: itself. A request with a prediction decides by it (:meth:`reserves`)
        self.fallback_reserve = True
        #: tell the edge how long this request can still wait (its admission control answers ``overloaded`` at
        #: once when its predicted wait is longer, and its batching never holds the request past that point)
        self.send_deadline = True
        #: ms kept beside the fallback exit's own time, from the give-up point to the fallback's start
        #: (:data:`FALLBACK_SWITCH_MS`; an agent raises it to what its fallbacks measured)
        self.fallback_switch_ms = FALLBACK_SWITCH_MS
        #: ms a fallback keeps free beside its exit's time when it chooses the exit, as a plan keeps its margin
        #: (an agent sets its plans' margin): a fallback that starts early (a refusal) takes an exit that ends
        #: with room to spare, not one that holds the device to the deadline and the next request behind it
        self.fallback_margin_ms = 0.0
        self.sock: socket.socket | None = None
        self._parser: FrameParser
        self._sock_timeout_s: float | None
        self._reset_stream()
        #: per plan and shape, the JSON of an INFER meta's plan fields (see _infer_meta)
        self._meta_tails: dict[tuple, bytes] = {}
        #: whether the edge takes compact INFER metas (its WELCOME says ``compact_meta``; see protocol.py)
        self.compact = False
        self.last_connect_error: str | None = None
        #: the last failure a person has to fix (rejected token, TLS certificate, refused request), else None
        self.config_problem: str | None = None
        self._warned: set[str] = set()
        self.welcome: dict[str, Any] = {}
        #: ask the edge for its advertisement (cards, latency model) in the next handshake until one arrived
        self.advertise = False
        #: the edge's advertisement (``edgent.runtime.protocol.HANDSHAKE_VERSION``), None until received
        self.advertised: dict[str, Any] | None = None
        self.last_edge_load: dict[str, Any] | None = None
        self._next_try_s = 0.0
        self._backoff_s = 0.05
        self._next_id = 0
        self.device_exit_ms = dict(device_exit_ms) if device_exit_ms else self.calibrate()

    # ------------------------------------------------------------------ connection
    def calibrate(self, repeats: int = 3) -> dict[int, float]:
        """Measure the device time (ms, one input) of each exit's full forward: what the fallback plans with."""
        x = torch.zeros((1, *self.chain.input_shape))
        out = {}
        for ep in self.chain.exit_points:
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                with self._device_scope(), torch.inference_mode():
                    self.chain(x, exit=ep.exit)
                times.append((time.perf_counter() - t0) * 1e3)
            out[ep.exit] = float(np.median(times))
        return out

    def warm_up(self, codecs: Sequence[str] = ()) -> None:
        """Run every exit's forward once (preprocessing included) and encode one input with each codec in
        ``codecs``, outside the device's (emulated) slowdown: the first forward of a process and a codec's first
        call pay one-time costs (kernels set up, a library loaded: on the emulated device the first exit-1
        forward measured about 100 ms over its price) that belong to no request. A codec that cannot encode the
        model's input (one for an intermediate tensor of another shape) is skipped."""
        pixels = torch.zeros((1, *self.chain.input_shape), dtype=torch.uint8)
        with torch.inference_mode():
            model_in = self._preprocess(pixels)
            for ep in self.chain.exit_points:
                self.chain(model_in, exit=ep.exit)
        self.warm_up_codecs(codecs)

    def time_exit_ms(self, exit: int) -> float:
        """One fallback's device time (ms) of exit ``exit`` on an input of uint8 pixels: the preprocessing and the
        whole exit, inside the device's (emulated) slowdown, as :meth:`infer` falls back."""
        pixels = torch.zeros((1, *self.chain.input_shape), dtype=torch.uint8)
        t0 = time.perf_counter()
        with self._device_scope(), torch.inference_mode():
            self.chain(self._preprocess(pixels), exit=exit)
        return (time.perf_counter() - t0) * 1e3

    def warm_up_codecs(self, names: Sequence[str]) -> None:
        """Encode one input with each codec in ``names``, outside the device's (emulated) compute (see
        :meth:`warm_up`)."""
        x = torch.zeros((1, *self.chain.input_shape))
        for name in names:
            try:
                cod = get_codec(name)
                cod.encode(x.to(torch.uint8) if cod.kind == "pixels" else x)
            except (EdgentError, ValueError, RuntimeError, TypeError):
                continue

    @property
    def connected(self) -> bool:
        return self.sock is not None

    def connect(self, force: bool = False, timeout_s: float | None = None) -> bool:
        """Open the connection and say HELLO, unless connected or still backing off after a failure (``force``
        ignores the back-off); wait at most ``timeout_s`` (default ``connect_timeout_s``). Returns whether
        connected and keeps the reason of a failure in ``last_connect_error``; raises RemoteError only when the
        edge refuses the token (a full or stopping edge is a failure to connect, retried after the back-off)."""
        if self.sock is not None:
            return True
        now = time.monotonic()
        if not force and now < self._next_try_s:
            return False
        wait_s = self.connect_timeout_s if timeout_s is None else max(min(timeout_s, self.connect_timeout_s), 1e-3)
        sock = None
        try:
            sock = socket.create_connection((self.host, self.port), timeout=wait_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.server_hostname)
            self.sock = sock
            self._reset_stream()
            meta: dict[str, Any] = {"client": self.client_name}
            if self.advertise and self.advertised is None:
                meta["advertise"] = True
            if self.token is not None:
                meta["token"] = self.token
            t0 = time.perf_counter()
            reply = self._exchange(encode_frame(MsgType.HELLO, meta), wait_s)
            self.estimator.observe_rtt((time.perf_counter() - t0) * 1e3)
        except RemoteError as exc:
            self.close()
            self._failed_to_connect(str(exc))
            if exc.code == "unauthorized":
                self._problem(f"the edge at {self.host}:{self.port} refused this device's token (check --token / "
                              "--token-file against the edge's)")
                raise
            return False
        except ssl.SSLCertVerificationError as exc:
            self._close_sock(sock)
            self._failed_to_connect(f"TLS certificate verification failed: {exc.verify_message or exc}")
            self._problem(f"the edge at {self.host}:{self.port} presented a TLS certificate that does not verify "
                          f"against the device's CA ({exc.verify_message or exc}); check --tls-ca")
            return False
        except (OSError, EdgeUnavailable, ProtocolError, ssl.SSLError) as exc:
            self._close_sock(sock)
            self._failed_to_connect(str(exc))
            return False
        self.welcome = reply.meta
        self.compact = reply.meta.get("compact_meta") == COMPACT_META_VERSION
        if reply.meta.get("advertisement_bytes") and reply.payload:
            try:
                doc = json.loads(bytes(reply.payload).decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                doc = None
            self.advertised = doc if isinstance(doc, dict) and isinstance(doc.get("models"), dict) else None
        self.last_edge_load = reply.meta.get("load")
        self.last_connect_error = None
        self._backoff_s = 0.05
        return True

    def _close_sock(self, sock: socket.socket | None) -> None:
        self.close()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _failed_to_connect(self, reason: str) -> None:
        self._next_try_s = time.monotonic() + self._backoff_s
        self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)
        self.last_connect_error = reason

    def _problem(self, message: str) -> None:
        """Remember a failure a person has to fix and warn about it (once per distinct message)."""
        self.config_problem = message
        if message not in self._warned and len(self._warned) < 100:
            self._warned.add(message)
            log.warning("edgent device: WARNING: %s", message)

    def close(self) -> None:
        """Close the connection (the next request reconnects)."""
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        """A new connection's reading state: a parser for its answers, cut as they come, and no socket timeout
        set yet."""
        self._parser = FrameParser(DEFAULT_MAX_PAYLOAD_BYTES)
        self._sock_timeout_s = None

    def __enter__(self) -> "DeviceClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _exchange(self, frame: bytes, timeout_s: float) -> Frame:
        """Send one frame and read the answer within ``timeout_s``; ERROR answers raise RemoteError."""
        sock = self.sock
        assert sock is not None
        t_end = time.perf_counter() + timeout_s
        try:
            wait_s = max(timeout_s, 1e-3)
            if wait_s != self._sock_timeout_s:  # (each change is two system calls)
                sock.settimeout(wait_s)
                self._sock_timeout_s = wait_s
            self.link.one_way_delay()
            self.link.pace_upload(len(frame), max_wait_s=t_end - time.perf_counter())
            sock.sendall(frame)
            reply = self._parser.next_frame()  # (the edge sends nothing unasked: normally None)
            while reply is None:
                data = sock.recv(_RECV_BYTES)
                if not data:
                    raise ConnectionError("the edge closed the connection")
                self._parser.feed(data)
                reply = self._parser.next_frame()
            self.link.pace_download(reply.wire_bytes, max_wait_s=t_end - time.perf_counter())
            self.link.one_way_delay()
        except (socket.timeout, TimeoutError) as exc:
            self.close()  # a late answer would arrive on this connection: start afresh
            raise EdgeUnavailable(f"no answer from the edge within {timeout_s * 1e3:.0f} ms") from exc
        except (OSError, ConnectionError) as exc:
            self.close()
            raise EdgeUnavailable(f"the connection to the edge failed: {exc}") from exc
        except ProtocolError:
            self.close()
            raise
        if reply.type == MsgType.ERROR:
            if reply.meta.get("fatal"):
                self.close()
            raise RemoteError(str(reply.meta.get("code")), str(reply.meta.get("message")), reply.meta)
        return reply

    def _request(self, frame: bytes, timeout_s: float) -> Frame:
        """``_exchange`` on a live connection (a connect first when there is none: it waits up to
        ``connect_timeout_s``), reconnecting once when a reused connection turns out dead."""
        reused = self.sock is not None
        if not self.connect():
            raise EdgeUnavailable(f"the edge at {self.host}:{self.port} is unreachable "
                                  f"({self.last_connect_error or 'backing off after a failed connect'})")
        t_end = time.perf_counter() + timeout_s
        try:
            return self._exchange(frame, timeout_s)
        except EdgeUnavailable as exc:
            if not reused or "no answer" in str(exc) or t_end <= time.perf_counter() or not self.connect(force=True):
                raise
            return self._exchange(frame, max(t_end - time.perf_counter(), 1e-3))

    def health(self, timeout_s: float = 2.0) -> dict[str, Any]:
        """Ask the edge for its STATUS (live, ready, load); the round trip is an RTT sample."""
        self._next_id += 1
        t0 = time.perf_counter()
        reply = self._request(encode_frame(MsgType.HEALTH, {"id": self._next_id}), timeout_s)
        self.estimator.observe_rtt((time.perf_counter() - t0) * 1e3)
        self.last_edge_load = reply.meta.get("load")
        return reply.meta

    def probe(self, size_bytes: int = 32 * 1024, timeout_s: float = 5.0):
        """A light bandwidth probe (for an idle link): send ``size_bytes`` of filler, return the sample."""
        self._next_id += 1
        frame = encode_frame(MsgType.PROBE, {"id": self._next_id}, bytes(size_bytes))
        t0 = time.perf_counter()
        reply = self._request(frame, timeout_s)
        total_ms = (time.perf_counter() - t0) * 1e3
        return self.estimator.observe_request(len(frame), reply.wire_bytes, total_ms, 0.0)

    # ------------------------------------------------------------------ inference
    @contextlib.contextmanager
    def _device_scope(self):
        if self.slowdown is None:
            yield
        else:
            with self.slowdown.scope():
                yield

    def infer(
        self,
        x: torch.Tensor | np.ndarray,
        exit: int,
        partition: int,
        codec: str = "float32",
        deadline_ms: float | None = None,
        fallback: bool = True,
        t_arrival: float | None = None,
        predicted_ms: float | None = None,
        predicted_device_ms: float | None = None,
    ) -> InferenceResult:
        """Co-infer a batch ``x`` (uint8 pixels or the float model input) with the device running units
        ``[0, partition)`` of ``exit``'s sub-model and the edge the rest (see :class:`InferenceResult`).

        ``t_arrival``: when the request arrived (``time.perf_counter()``; default: now). ``total_ms`` and the
        deadline count from it, so that work done for the request before this call (a connect, a probe, planning)
        is part of its time. With ``fallback=False`` an edge-side failure raises (EdgeUnavailable, RemoteError,
        ProtocolError) instead of finishing on the device. ``predicted_ms``: the plan's predicted time from arrival
        to answer, everything the plan pays included (its device part, its encoding, e.g. a JPEG of the input,
        the link, the edge), and ``predicted_device_ms`` the device part and encoding in it; they decide whether
        the edge's wait ends at the give-up point (:meth:`reserves`), once the device part has run."""
        t0 = time.perf_counter() if t_arrival is None else t_arrival
        chain = self.chain
        ep = chain.exit_point(exit)
        n_units = ep.num_units
        if isinstance(partition, bool) or not isinstance(partition, int) or not 0 <= partition <= n_units:
            raise ConfigError(f"partition {partition!r} is out of range 0..{n_units} for exit {exit}")
        requested = {"exit": exit, "partition": partition, "codec": codec if partition < n_units else None}
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        pixels = x if x.dtype == torch.uint8 else None
        if x.dim() == len(chain.input_shape):
            x = x.unsqueeze(0)
            pixels = x if pixels is not None else None
        cod = get_codec(codec) if partition < n_units else None
        if cod is not None and cod.kind == "pixels":
            if partition != 0:
                raise ConfigError(f"codec {codec} carries raw pixels: use it with partition 0 only")
            if pixels is None:
                raise InputError(f"codec {codec} sends uint8 pixels, but the input is {x.dtype}; pass the images")
        td0 = time.perf_counter()
        model_in = None
        if cod is not None and cod.kind == "pixels":
            h = pixels
        else:
            with self._device_scope(), torch.inference_mode():
                model_in = self._preprocess(x) if pixels is not None else x.float()
                h = chain.run_device(model_in, exit, partition)
        device_ms = (time.perf_counter() - td0) * 1e3
        result_kw = dict(requested=requested, deadline_ms=deadline_ms, device_ms=device_ms)
        if cod is None:  # the plan runs everything on the device
            return self._finish(h, exit, n_units, None, "device", t0, **result_kw)
        te0 = time.perf_counter()
        # the device encodes (a JPEG, a quantisation, a bottleneck's encoder); a raw codec's encode (lossless, its
        # exact size: uint8 pixels, float32) is a copy of the tensor's bytes that the tables price at nothing, and
        # runs outside an emulated device's slowdown (whose clock would charge its own measurement to the copy)
        if cod.lossless and cod.exact_size:
            data = cod.encode(h)
        else:
            with self._device_scope():
                data = cod.encode(h)
        self._next_id += 1
        request_id = self._next_id
        if predicted_ms is not None and predicted_device_ms is not None:
            # what is left of the plan after its device part and encoding, from now: the answer's expected time
            spent_ms = (time.perf_counter() - t0) * 1e3
            predicted_ms = spent_ms + max(predicted_ms - predicted_device_ms, 0.0)
        shape = h.shape
        batch = shape[0]
        reserve = fallback and self.reserves(deadline_ms, batch, predicted_ms)
        result_kw["give_up_reserved"] = reserve if deadline_ms is not None else None
        timeout_s = self.edge_budget_s(t0, deadline_ms, batch, reserve)
        # the edge refuses early what it cannot serve in time
        send_deadline_ms = round(timeout_s * 1e3, 3) if deadline_ms is not None and self.send_deadline else None
        compact = self.compact
        frame = encode_frame_json(MsgType.INFER, self._infer_meta(request_id, exit, partition, cod, shape,
                                                                  send_deadline_ms, compact), data,
                                  FLAG_COMPACT if compact else 0)
        encode_ms = (time.perf_counter() - te0) * 1e3
        result_kw["encode_ms"] = encode_ms
        t_send = time.perf_counter()
        try:
            reply = self._request(frame, timeout_s)
            t_recv = time.perf_counter()
            logits, timings, edge_load, classes = self._logits_of(reply, request_id, batch)
        except EdgentError as exc:  # EdgeUnavailable, RemoteError, ProtocolError, a payload that does not decode
            if isinstance(exc, RemoteError) and exc.code == "overloaded":
                self.last_edge_load = exc.meta.get("load", self.last_edge_load)
            if isinstance(exc, RemoteError) and exc.code not in RECOVERABLE_CODES and exc.code != "unauthorized":
                self._problem(f"the edge refused the request: {exc}")
            if not fallback:
                raise
            return self._fallback(x, pixels, model_in, h, exit, partition, str(exc), t0, **result_kw)
        server_ms = _finite_float(timings.get("server_ms"))
        total_ms = (t_recv - t_send) * 1e3
        sample = self.estimator.observe_request(len(frame), reply.wire_bytes, total_ms, server_ms)
        self.last_edge_load = edge_load
        return self._finish(
            logits, exit, partition, cod.name, "edge", t0, classes, network_ms=total_ms - server_ms,
            server_timings_ms=timings, edge_load=self.last_edge_load, upload_bytes=len(frame),
            download_bytes=reply.wire_bytes, bandwidth_sample_bps=None if sample is None else sample.rate_bps,
            bandwidth_sample_kind=None if sample is None else sample.kind,
            **result_kw)

    def _infer_meta(self, request_id: int, exit: int, partition: int, cod: Any, shape: Sequence[int],
                    deadline_ms: float | None, compact: bool = False) -> bytes:
        """The meta of an INFER request: ``id``, ``deadline_ms`` when given, then the fields of its plan
        (``model``, ``exit``, ``partition``, ``codec``, ``shape``, ``preprocess`` for raw pixels), encoded once per
        plan and shape (a request differs from the last one of its plan only in its id and deadline); JSON, or
        with ``compact`` the compact meta (:func:`~edgent.runtime.protocol.encode_infer_meta`)."""
        key = (exit, partition, cod.name, tuple(shape), compact)
        tail = self._meta_tails.get(key)
        if tail is None:
            rest = {"model": self.chain.name, "exit": exit, "partition": partition, "codec": cod.name,
                    "shape": list(shape)}
            if cod.kind == "pixels":
                rest["preprocess"] = self.preprocess_name
            tail = encode_meta(rest) if compact else encode_meta(rest)[1:]  # (JSON: without its "{")
            if len(self._meta_tails) >= 256:  # bounded: a caller cycling through shapes cannot grow it
                self._meta_tails.clear()
            self._meta_tails[key] = tail
        if compact:
            return encode_infer_meta(request_id, deadline_ms, tail)
        head = b'{"id":%d,' % request_id
        if deadline_ms is not None:
            head += b'"deadline_ms":' + encode_meta(deadline_ms) + b","
        return head + tail

    def give_up_ms(self, deadline_ms: float, batch: int = 1) -> float:
        """The give-up point (ms from arrival): the latest moment a fallback on the fastest exit, as the device's
        time for it is predicted, still ends by the deadline."""
        return deadline_ms - min(self.device_exit_ms.values()) * batch - self.fallback_switch_ms

    def reserves(self, deadline_ms: float | None, batch: int = 1, predicted_ms: float | None = None) -> bool:
        """Whether the edge's wait ends at the give-up point (:meth:`give_up_ms`) rather than at the deadline.

        With the plan's ``predicted_ms`` (the answer's expected time from arrival; :meth:`infer` updates it by what
        the device part and the encoding really took before it asks): yes when the plan
        is predicted to answer by the give-up point, so that an edge later than that is already off its
        prediction and a fallback still ends in time; no when the plan itself is predicted later than the give-up
        point (a JPEG of the input on a slow link at a tight deadline, say), since giving up there would turn
        every likely answer into a fallback. Without a prediction: :attr:`fallback_reserve`."""
        if deadline_ms is None:
            return False
        if predicted_ms is None:
            return bool(self.fallback_reserve)
        return predicted_ms <= self.give_up_ms(deadline_ms, batch)

    def edge_budget_s(self, t0: float, deadline_ms: float | None, batch: int = 1, reserve: bool = True) -> float:
        """How long (s) the edge may take for a request that arrived at ``t0`` (``perf_counter``): the deadline
        minus what is spent and, with ``reserve``, minus the fastest exit's device time (so that a fallback
        still ends in time); ``timeout_s`` without a deadline."""
        if deadline_ms is None:
            return self.timeout_s
        spent_ms = (time.perf_counter() - t0) * 1e3
        left_ms = (self.give_up_ms(deadline_ms, batch) if reserve else deadline_ms) - spent_ms
        return min(self.timeout_s, left_ms / 1e3 if left_ms >= 1.0 else max(deadline_ms - spent_ms, 1.0) / 1e3)

    def _logits_of(self, reply: Frame, request_id: int, batch: int
                   ) -> tuple[torch.Tensor, dict[str, Any], dict[str, Any] | None, list[int] | None]:
        """The logits, timings, the edge's load and the classes (a compact meta's, checked against the logits'
        shape; None: the device takes the argmax itself) of the edge's RESULT (JSON or compact meta) for request
        ``request_id``; ProtocolError (connection closed) when the reply is not that."""
        if reply.type != MsgType.RESULT:
            self.close()
            raise ProtocolError("bad_reply", f"the edge answered {reply.type.name} to INFER id={request_id}")
        try:
            meta = reply.meta if reply.compact is None else decode_result_meta(reply.compact)
        except ProtocolError:
            self.close()
            raise
        if meta.get("id") != request_id:
            self.close()
            raise ProtocolError("bad_reply", f"the edge answered {reply.type.name} id={meta.get('id')!r} "
                                             f"to INFER id={request_id}")
        shape = meta.get("shape")
        if not isinstance(shape, list) or len(shape) != 2 or shape[0] != batch or shape[1] != self.chain.num_classes:
            self.close()
            raise ProtocolError("bad_reply", f"the edge's logits have shape {shape!r}")
        timings = meta.get("timings")
        load = meta.get("load")
        classes = None
        if reply.compact is not None:
            classes = meta["classes"]
            if classes and max(classes) >= shape[1]:
                self.close()
                raise ProtocolError("bad_reply", f"the edge's classes {classes!r} are out of range for "
                                                 f"{shape[1]} classes")
        return (_FLOAT32.decode(reply.payload, (shape[0], shape[1])), timings if isinstance(timings, dict) else {},
                load if isinstance(load, dict) else None, classes)

    def _finish(self, logits: torch.Tensor, exit: int, partition: int, codec: str | None, where: str, t0: float,
                classes: list[int] | None = None, **kw: Any) -> InferenceResult:
        """The result of a request that arrived at ``t0``: its total time ends now. ``classes``: the logits' argmax
        where the edge sent it with float32 logits decoded from its answer (computed here otherwise)."""
        if classes is None:
            if logits.requires_grad:
                logits = logits.detach()
            if logits.dtype != torch.float32:
                logits = logits.float()
        total_ms = (time.perf_counter() - t0) * 1e3
        return InferenceResult(logits=logits, classes=logits.argmax(dim=1).tolist() if classes is None else classes,
                               exit=exit, partition=partition, codec=codec, where=where, total_ms=total_ms, **kw)

    def fallback_exit(self, batch: int, left_ms: float | None) -> int:
        """The most accurate exit whose device time fits in ``left_ms`` less :attr:`fallback_margin_ms` (the
        fastest when none fits)."""
        exits = sorted(self.device_exit_ms, key=lambda e: -self.exit_accuracy.get(e, e))
        if left_ms is not None:
            for e in exits:
                if self.device_exit_ms[e] * batch <= left_ms - self.fallback_margin_ms:
                    return e
            return min(self.device_exit_ms, key=self.device_exit_ms.get)
        return exits[0]

    def _fallback(self, x, pixels, model_in, h, exit: int, partition: int, reason: str, t0: float,
                  **kw: Any) -> InferenceResult:
        """Finish on the device at the best exit that fits what is left of the deadline; reuse the device's
        partial result when the chosen exit shares the trunk units already computed."""
        deadline_ms = kw.get("deadline_ms")
        left_ms = None if deadline_ms is None else deadline_ms - (time.perf_counter() - t0) * 1e3
        e = self.fallback_exit(x.shape[0], left_ms)
        kw["fallback_left_ms"] = left_ms
        td0 = time.perf_counter()
        chain = self.chain
        with self._device_scope(), torch.inference_mode():
            if model_in is None:
                model_in = self._preprocess(pixels) if pixels is not None else x.float()
            shared = partition <= chain.exit_point(exit).after_trunk_units and \
                partition <= chain.exit_point(e).after_trunk_units
            if partition > 0 and shared:
                logits = chain.run_edge(h, e, partition)
            else:
                logits = chain(model_in, exit=e)
        kw["device_ms"] = kw.get("device_ms", 0.0) + (time.perf_counter() - td0) * 1e3
        kw["edge_load"] = self.last_edge_load
        return self._finish(logits, e, chain.exit_point(e).num_units, None, "fallback", t0, fallback_reason=reason,
                            **kw)


def _finite_float(v: Any) -> float:
    """``v`` as a finite float, else 0.0 (for timings another program reported)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) else 0.0


def parse_shape(text: str) -> Sequence[int]:
    """``"3x32x32"`` -> (3, 32, 32)."""
    try:
        return tuple(int(p) for p in text.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"a shape is written like 3x32x32, got {text!r}") from exc
