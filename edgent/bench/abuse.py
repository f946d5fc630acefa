"""``edgent bench abuse``: hostile clients against a live ``edgent serve`` on loopback, a valid device alongside.

Each attack runs against a fresh server process (``edgent serve --port 0``, seeded random weights, the default
bounds; a token where the attack is about unauthenticated peers, TLS and a token where it is about the TLS
handshake) and its own attacker process. A valid device sends one request every ``period_ms`` on a fresh
connection each time (connect, TLS where the server has it, HELLO, INFER of one CIFAR-sized image with the raw
``uint8`` codec, so that the edge computes the whole model), alone before the attack and again after it (its
baseline: both together, so that other load on the host that comes or goes meanwhile weighs on both sides), and
while the attack runs. Recorded per attack: the device's median and p99 latency against its baseline and its share of requests the
edge answered, and the server's resident memory (``/proc/PID/status`` VmRSS) and descriptors (``/proc/PID/fd``,
sockets apart) before, during (the most seen, sampled every 50 ms) and after the attack.

Attacks (each at the size of the outside fuzzer's report or larger; docs/runtime.md, 'Bounds'):

- ``pipeline-1``, ``pipeline-4``, ``pipeline-16``: 1, 4, 16 authenticated clients that each keep 16 HEALTH
  frames in flight (and read the answers);
- ``big-hello``: 32 connections to a TLS + token server whose HELLO declares a 64 MiB payload and streams it;
- ``raw-tls``: 1000 plain TCP connections to a TLS + token server that never finish (nor start) the handshake,
  each reopened when the server closes it;
- ``slowloris``: 256 connections to a token server sending their HELLO at 1 byte/s, reopened when cut;
- ``silent-hello``: 300 clients that say HELLO to a server without a token, then stay silent, reopened when closed;
- ``non-reading``: 64 authenticated clients that send HEALTH frames as fast as they can and never read an answer.

An attack passes when the device gets at least ``MIN_SUCCESS_SHARE`` of its requests answered by the edge, with a
median at most ``MAX_MEDIAN_RATIO`` x its baseline; the server's RSS stays within ``MAX_RSS_GROWTH_MIB`` of what
it was before the attack and comes back within ``MAX_RSS_LEFT_MIB`` of it after (what the C heap keeps of a
burst of TLS connections: repeated bursts do not add up); its sockets never exceed the connection cap. By default
the attacker runs on half of the CPUs and the server and the device on the other half, as if it were another host
(``--no-pin``: all share them). Results: ``benchmarks/results/abuse.json``.

The attacker side runs as ``python -m edgent.bench.abuse ATTACK HOST PORT PARAMS`` (stdlib and the protocol
module only, no torch), stops on SIGTERM and prints its counters as one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgent.runtime.protocol import HEADER, HEADER_BYTES, MAGIC, VERSION, MsgType, encode_frame

MODEL = "alexnet-cifar10"
TOKEN = "abuse-bench-token"
#: pass criteria: the valid device is answered, not slowed much, and the server's memory stays bounded
MIN_SUCCESS_SHARE = 0.99
MAX_MEDIAN_RATIO = 2.0
MAX_RSS_GROWTH_MIB = 200.0
MAX_RSS_LEFT_MIB = 50.0
#: the server's connection cap in every run (its default)
MAX_CONNECTIONS = 256
#: the test certificate's key (``--tls-key``): a TLS handshake costs the edge a signature with it, which any
#: client can make it pay before authenticating (RSA-2048 signs far slower than ECDSA P-256)
KEY_TYPES = {"ec": "ec -pkeyopt ec_paramgen_curve:P-256", "rsa": "rsa:2048"}


@dataclass(frozen=True)
class Attack:
    """One attack: which server it targets (``plain``: no token, ``token``, ``tls``: TLS and a token), the
    attacker's parameters, and what it does (for the report)."""

    name: str
    server: str
    params: dict[str, Any]
    description: str


ATTACKS = [
    Attack("pipeline-1", "plain", {"kind": "pipeline", "clients": 1, "depth": 16},
           "1 authenticated client keeping 16 HEALTH frames in flight, reading the answers"),
    Attack("pipeline-4", "plain", {"kind": "pipeline", "clients": 4, "depth": 16},
           "4 authenticated clients keeping 16 HEALTH frames in flight each"),
    Attack("pipeline-16", "plain", {"kind": "pipeline", "clients": 16, "depth": 16},
           "16 authenticated clients keeping 16 HEALTH frames in flight each"),
    Attack("big-hello", "tls", {"kind": "big_hello", "conns": 32, "declared_bytes": 64 * 2**20},
           "32 connections (TLS) whose HELLO declares a 64 MiB payload and streams it, before any token check"),
    Attack("raw-tls", "tls", {"kind": "raw_tls", "conns": 1000},
           "1000 plain TCP connections to a TLS server that never finish the handshake, reopened when closed"),
    Attack("slowloris", "token", {"kind": "slowloris", "conns": 256, "bytes_per_s": 1.0},
           "256 connections sending their HELLO at 1 byte/s to a token server, reopened when cut"),
    Attack("silent-hello", "plain", {"kind": "silent_hello", "conns": 300},
           "300 clients that say HELLO (no token needed) and stay silent, reopened when closed"),
    Attack("non-reading", "plain", {"kind": "non_reading", "conns": 64},
           "64 authenticated clients sending HEALTH frames as fast as they can, never reading an answer"),
]


# ============================================================================================== attacker side
def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(HEADER_BYTES)
    _, _, msg_type, _, meta_len, payload_len = HEADER.unpack(head)
    body = await reader.readexactly(meta_len + payload_len)
    return msg_type, body[:meta_len]


class _Attacker:
    """The attacker process: many connections, each reopened when the server closes it, until SIGTERM."""

    def __init__(self, host: str, port: int, params: dict[str, Any]) -> None:
        self.host, self.port, self.p = host, port, params
        self.stop = asyncio.Event()
        self.stats: dict[str, Any] = {"connects": 0, "connect_failures": 0, "closed_by_server": 0,
                                      "frames_sent": 0, "answers": 0, "error_codes": {}}
        self.writers: set[asyncio.StreamWriter] = set()
        self.tls = None
        if params.get("tls"):
            self.tls = ssl.create_default_context()
            self.tls.check_hostname = False
            self.tls.verify_mode = ssl.CERT_NONE

    async def connect(self, tls: bool = True) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls if tls else None,
                                                       limit=1 << 20)
        self.stats["connects"] += 1
        self.writers.add(writer)
        return reader, writer

    async def hello(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        meta = {"client": "attacker"}
        if self.p.get("token"):
            meta["token"] = self.p["token"]
        writer.write(encode_frame(MsgType.HELLO, meta))
        msg_type, body = await _read_frame(reader)
        if msg_type != MsgType.WELCOME:
            self.note_error(body)
            raise ConnectionError("no WELCOME")

    def note_error(self, meta: bytes) -> None:
        try:
            code = json.loads(meta).get("code", "?")
        except ValueError:
            code = "?"
        self.stats["error_codes"][code] = self.stats["error_codes"].get(code, 0) + 1

    async def forever(self, one_connection) -> None:
        """Run ``one_connection`` again and again (a fresh connection each time) until stopped."""
        while not self.stop.is_set():
            writer = None
            try:
                writer = await one_connection()
            except (OSError, EOFError, asyncio.IncompleteReadError, ssl.SSLError, ConnectionError):
                self.stats["closed_by_server"] += 1
            finally:
                for w in [w for w in self.writers if w.transport.is_closing()]:
                    self.writers.discard(w)
                if writer is not None:
                    writer.transport.abort()
                    self.writers.discard(writer)
            await asyncio.sleep(0.01)

    # ------------------------------------------------------------------ the attacks
    async def pipeline(self) -> Any:
        reader, writer = await self.connect()
        await self.hello(reader, writer)
        frame = encode_frame(MsgType.HEALTH, {"id": 1})
        writer.write(frame * self.p["depth"])
        self.stats["frames_sent"] += self.p["depth"]
        while not self.stop.is_set():
            msg_type, body = await _read_frame(reader)
            self.stats["answers"] += 1
            if msg_type == MsgType.ERROR:
                self.note_error(body)
            writer.write(frame)
            self.stats["frames_sent"] += 1
            await writer.drain()
        return writer

    async def big_hello(self) -> Any:
        reader, writer = await self.connect()
        declared = self.p["declared_bytes"]
        writer.write(HEADER.pack(MAGIC, VERSION, int(MsgType.HELLO), 0, 0, declared))
        chunk = bytes(64 * 1024)
        sent = 0
        read = asyncio.ensure_future(_read_frame(reader))
        try:
            while sent < declared and not read.done() and not self.stop.is_set():
                writer.write(chunk)
                sent += len(chunk)
                await writer.drain()
            msg_type, body = await read
            if msg_type == MsgType.ERROR:
                self.note_error(body)
        finally:
            read.cancel()
        return writer

    async def raw_tls(self) -> Any:
        reader, writer = await self.connect(tls=False)
        writer.write(b"\x16\x03\x01\x02\x00")  # a TLS record header promising 512 bytes that never come
        await reader.read()  # until the server closes
        return writer

    async def slowloris(self) -> Any:
        reader, writer = await self.connect()
        frame = encode_frame(MsgType.HELLO, {"client": "slow", "token": "x" * 64})
        gap_s = 1.0 / self.p["bytes_per_s"]
        closed = asyncio.ensure_future(reader.read())
        try:
            for i in range(len(frame)):
                writer.write(frame[i : i + 1])
                self.stats["frames_sent"] += 1
                done, _ = await asyncio.wait([closed], timeout=gap_s)
                if done or self.stop.is_set():
                    break
            if not self.stop.is_set():
                await closed
        finally:
            closed.cancel()
        return writer

    async def silent_hello(self) -> Any:
        reader, writer = await self.connect()
        await self.hello(reader, writer)
        await reader.read()  # silent until the server closes the connection
        return writer

    async def non_reading(self) -> Any:
        reader, writer = await self.connect()
        await self.hello(reader, writer)
        frame = encode_frame(MsgType.HEALTH, {"id": 1}) * 64
        while not self.stop.is_set():
            writer.write(frame)
            self.stats["frames_sent"] += 64
            await writer.drain()
        return writer


async def _attack(host: str, port: int, params: dict[str, Any]) -> dict[str, Any]:
    a = _Attacker(host, port, params)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, a.stop.set)
    loop.add_signal_handler(signal.SIGINT, a.stop.set)
    kind = params["kind"]
    n = params.get("clients") or params.get("conns") or 1
    one = getattr(a, kind)
    tasks = []
    for _ in range(n):
        tasks.append(loop.create_task(a.forever(one)))
        await asyncio.sleep(0)
    print(json.dumps({"started": n}), flush=True)
    await a.stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for w in list(a.writers):
        w.transport.abort()
    await asyncio.sleep(0.1)
    return a.stats


def attack_main(argv: list[str]) -> int:
    """Entry of the attacker process: ``ATTACK_JSON HOST PORT``."""
    params, host, port = json.loads(argv[0]), argv[1], int(argv[2])
    _raise_nofile()
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # writes to connections the server cut are expected
    stats = asyncio.run(_attack(host, port, params))
    print(json.dumps(stats), flush=True)
    return 0


# ============================================================================================== measuring side
def _proc_stats(pid: int) -> tuple[float, int, int]:
    """Resident memory (MiB), open descriptors and open sockets of process ``pid``."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
            break
    fds = sockets = 0
    fd_dir = f"/proc/{pid}/fd"
    for name in os.listdir(fd_dir):
        fds += 1
        try:
            sockets += os.readlink(f"{fd_dir}/{name}").startswith("socket:")
        except OSError:
            pass
    return rss_kib / 1024.0, fds, sockets


class _Sampler(threading.Thread):
    """Samples a process's RSS, descriptors and sockets every ``period_s``; ``phase`` names where samples go."""

    def __init__(self, pid: int, period_s: float = 0.05) -> None:
        super().__init__(daemon=True, name="abuse-sampler")
        self.pid, self.period_s = pid, period_s
        self.phase = "idle"
        self.maxima: dict[str, list[float]] = {}
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.period_s):
            try:
                rss, fds, sockets = _proc_stats(self.pid)
            except (OSError, ValueError):
                continue
            self.samples += 1
            m = self.maxima.setdefault(self.phase, [0.0, 0, 0])
            m[0], m[1], m[2] = max(m[0], rss), max(m[1], fds), max(m[2], sockets)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(2)


@dataclass
class _Series:
    latencies_ms: list[float] = field(default_factory=list)
    connect_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    requests: int = 0

    def summary(self) -> dict[str, Any]:
        import numpy as np

        lat = np.asarray(self.latencies_ms)
        return {"requests": self.requests, "answered": len(self.latencies_ms),
                "success_share": round(len(self.latencies_ms) / self.requests, 4) if self.requests else None,
                "median_ms": round(float(np.median(lat)), 3) if lat.size else None,
                "p99_ms": round(float(np.percentile(lat, 99)), 3) if lat.size else None,
                "max_ms": round(float(lat.max()), 3) if lat.size else None,
                "connect_median_ms": round(float(np.median(self.connect_ms)), 3) if self.connect_ms else None,
                "failures": dict(self.failures)}


def _self_signed_cert(folder: Path, key_type: str) -> tuple[str, str]:
    """A self-signed certificate for ``localhost`` (made with the ``openssl`` command); ``key_type`` is an
    ``openssl req -newkey`` argument (``ec -pkeyopt ec_paramgen_curve:P-256`` or ``rsa:2048``)."""
    import shutil

    from edgent.errors import ConfigError

    if shutil.which("openssl") is None:
        raise ConfigError("the TLS attacks need the `openssl` command to make a test certificate; install it or "
                          "leave big-hello and raw-tls out with --attacks")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", *key_type.split(), "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def _load_average() -> list[float] | None:
    """The host's 1, 5 and 15 minute load averages (other work on the host shows in every timing)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except (OSError, ValueError):
        return None


def _start_server(kind: str, folder: Path, cert: tuple[str, str] | None,
                  extra: list[str]) -> tuple[subprocess.Popen, int]:
    """``edgent serve --port 0`` of ``kind`` (plain, token, tls); returns the process and its port."""
    from edgent.errors import EdgentError

    ready = folder / f"ready-{kind}-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "edgent.cli.main", "serve", "--host", "127.0.0.1", "--port", "0",
           "--ready-file", str(ready), "--random-weights", "--seed", "0", "--threads", "1", *extra]
    if kind in ("token", "tls"):
        cmd += ["--token", TOKEN]
    if kind == "tls":
        assert cert is not None
        cmd += ["--tls-cert", cert[0], "--tls-key", cert[1]]
    log = open(folder / f"serve-{kind}.log", "a")
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    log.close()
    t_end = time.monotonic() + 120
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > t_end:
            _stop(proc)
            raise EdgentError(f"edgent serve ({kind}) did not start: "
                              f"{(folder / f'serve-{kind}.log').read_text()[-1500:]}")
        time.sleep(0.05)
    port = int(ready.read_text().split()[0])
    ready.unlink()
    return proc, port


def _stop(proc: subprocess.Popen, timeout_s: float = 15.0) -> int | None:
    """Stop a server or attacker started in its own session (:func:`edgent.runtime.local.stop_process`)."""
    from edgent.runtime.local import stop_process

    return stop_process(proc, timeout_s=timeout_s)


class _ValidDevice:
    """The valid device: one request at a time, each on a fresh connection, edge only (a failure is counted)."""

    def __init__(self, chain: Any, port: int, kind: str, cert: tuple[str, str] | None, timeout_s: float) -> None:
        import torch

        from edgent.runtime.client import DeviceClient, client_ssl_context

        self.client = DeviceClient(
            "127.0.0.1", port, chain, token=TOKEN if kind in ("token", "tls") else None,
            ssl_context=client_ssl_context(cert[0]) if kind == "tls" and cert else None,
            server_hostname="localhost", connect_timeout_s=timeout_s, timeout_s=timeout_s,
            device_exit_ms={e.exit: 1.0 for e in chain.exit_points}, client_name="valid-device")
        self.image = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8,
                                   generator=torch.Generator().manual_seed(0))
        self.exit = chain.num_exits

    def requests(self, n: int, period_s: float) -> _Series:
        from edgent.errors import EdgentError

        out = _Series()
        t_next = time.perf_counter()
        for _ in range(n):
            self.client.close()
            t0 = time.perf_counter()
            out.requests += 1
            try:
                if not self.client.connect(force=True):
                    raise EdgentError(f"connect: {self.client.last_connect_error}")
                out.connect_ms.append((time.perf_counter() - t0) * 1e3)
                r = self.client.infer(self.image, self.exit, 0, "uint8", fallback=False, t_arrival=t0)
                if r.where != "edge":
                    raise EdgentError(f"answered on the {r.where}")
                out.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            except EdgentError as exc:
                reason = str(exc)[:160]
                out.failures[reason] = out.failures.get(reason, 0) + 1
            t_next += period_s
            time.sleep(max(0.0, t_next - time.perf_counter()))
        self.client.close()
        return out


def _wait_started(attacker: subprocess.Popen, timeout_s: float) -> None:
    """Wait for the attacker's first line (its connections are being opened)."""
    import select

    from edgent.errors import EdgentError

    assert attacker.stdout is not None
    ready, _, _ = select.select([attacker.stdout], [], [], timeout_s)
    line = attacker.stdout.readline() if ready else ""
    if "started" not in line:
        attacker.kill()
        raise EdgentError(f"the attacker did not start within {timeout_s:g} s (its first line: {line!r})")


def _settle(pid: int, sockets_before: int, timeout_s: float) -> None:
    """Wait until the server holds no more sockets than before the attack (or ``timeout_s`` passed)."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        try:
            if _proc_stats(pid)[2] <= sockets_before:
                return
        except OSError:
            return
        time.sleep(0.1)


@contextlib.contextmanager
def _cpus(cpus: set[int] | None):
    """Run what is started inside on ``cpus`` (a child inherits its parent thread's CPU affinity)."""
    if not cpus:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def split_cpus() -> tuple[set[int], set[int]] | None:
    """The CPUs of the server and the device, and those of the attacker: half each (None on one CPU)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def run_attack(attack: Attack, chain: Any, folder: Path, cert: tuple[str, str] | None, *, n_base: int,
               n_attack: int, period_s: float, ramp_s: float, timeout_s: float,
               attacker_cpus: set[int] | None = None) -> dict[str, Any]:
    """One attack against a fresh server (see the module docstring); returns its record. With
    ``attacker_cpus`` the attacker process runs on those CPUs (the caller keeps the server and the device off
    them)."""
    load_before = _load_average()
    proc, port = _start_server(attack.server, folder, cert, [])
    attacker = None
    sampler = _Sampler(proc.pid)
    try:
        device = _ValidDevice(chain, port, attack.server, cert, timeout_s)
        device.requests(10, period_s)  # warm-up: first connections, first forward passes, allocator pools
        sampler.start()
        sampler.phase = "baseline"
        base = device.requests(n_base, period_s)
        rss_before, fds_before, sockets_before = _proc_stats(proc.pid)
        params = dict(attack.params, tls=attack.server == "tls",
                      token=TOKEN if attack.server in ("token", "tls") else None)
        attacker_log = open(folder / f"attacker-{attack.name}.log", "w")
        with _cpus(attacker_cpus):
            attacker = subprocess.Popen([sys.executable, "-m", "edgent.bench.abuse", json.dumps(params),
                                         "127.0.0.1", str(port)], stdout=subprocess.PIPE, stderr=attacker_log,
                                        text=True, start_new_session=True)
        attacker_log.close()
        _wait_started(attacker, 120.0)
        sampler.phase = "during"
        time.sleep(ramp_s)
        under = device.requests(n_attack, period_s)
        attacker.send_signal(signal.SIGTERM)
        try:
            out, _ = attacker.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            attacker.kill()
            out, _ = attacker.communicate()
        lines = [ln for ln in out.splitlines() if ln.startswith("{") and "started" not in ln]
        attacker_stats = json.loads(lines[-1]) if lines else {
            "error": (folder / f"attacker-{attack.name}.log").read_text()[-500:]}
        sampler.phase = "after"
        _settle(proc.pid, sockets_before, 20.0)
        time.sleep(3.0)  # the server gives freed memory back 2 s after a burst of closed connections
        rss_after, fds_after, sockets_after = _proc_stats(proc.pid)
        base_after = device.requests(n_base, period_s)  # alone again: the host may have changed meanwhile
        alive = proc.poll() is None
    finally:
        sampler.stop()
        if attacker is not None and attacker.poll() is None:
            attacker.kill()
            attacker.wait(5)
        _stop(proc)
    during = sampler.maxima.get("during", [rss_before, fds_before, sockets_before])
    b_before, b_after = base.summary(), base_after.summary()
    base.latencies_ms += base_after.latencies_ms
    base.connect_ms += base_after.connect_ms
    base.requests += base_after.requests
    for k, n in base_after.failures.items():
        base.failures[k] = base.failures.get(k, 0) + n
    b, u = base.summary(), under.summary()
    med_ratio = None if not (b["median_ms"] and u["median_ms"]) else round(u["median_ms"] / b["median_ms"], 3)
    p99_ratio = None if not (b["p99_ms"] and u["p99_ms"]) else round(u["p99_ms"] / b["p99_ms"], 3)
    checks = {
        "success_share": bool(u["success_share"] is not None and u["success_share"] >= MIN_SUCCESS_SHARE),
        "median_ratio": bool(med_ratio is not None and med_ratio <= MAX_MEDIAN_RATIO),
        "rss_growth": bool(during[0] - rss_before <= MAX_RSS_GROWTH_MIB),
        "rss_returns": bool(rss_after - rss_before <= MAX_RSS_LEFT_MIB),
        # the listening socket is one of the sockets before: the accepted ones may add up to the cap
        "sockets_within_cap": bool(during[2] - sockets_before <= MAX_CONNECTIONS),
        "server_alive": alive,
    }
    return {
        "attack": attack.name, "description": attack.description, "server": attack.server,
        "params": attack.params, "attacker": attacker_stats,
        "valid_device": {"baseline": b, "under_attack": u, "median_ratio": med_ratio, "p99_ratio": p99_ratio,
                         "baseline_before": b_before, "baseline_after": b_after},
        "server_rss_mib": {"before": round(rss_before, 1), "during_max": round(during[0], 1),
                           "after": round(rss_after, 1)},
        "server_fds": {"before": fds_before, "during_max": during[1], "after": fds_after},
        "server_sockets": {"before": sockets_before, "during_max": during[2], "after": sockets_after},
        "samples": sampler.samples, "host_load_average": {"before": load_before, "after": _load_average()},
        "checks": checks, "passed": all(checks.values()),
    }


def run(args: argparse.Namespace) -> int:
    from edgent.bench.record import write_result
    from edgent.model.zoo import load_for_inference
    from edgent.errors import ConfigError

    names = [a.name for a in ATTACKS]
    chosen = args.attacks.split(",") if args.attacks else names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ConfigError(f"--attacks: unknown attack(s) {', '.join(unknown)}; known: {', '.join(names)}")
    _raise_nofile()
    pinned = split_cpus() if args.pin else None
    n_base, n_attack = (30, 60) if args.quick else (60, 150)
    settings = {"tls_key": KEY_TYPES[args.tls_key],
                "cpus": None if pinned is None else {"server_and_device": sorted(pinned[0]),
                                                     "attacker": sorted(pinned[1])},
                "baseline_requests": n_base, "attack_requests": n_attack, "period_ms": args.period_ms,
                "ramp_s": args.ramp_s, "request_timeout_s": args.timeout_s, "max_connections": MAX_CONNECTIONS,
                "criteria": {"min_success_share": MIN_SUCCESS_SHARE, "max_median_ratio": MAX_MEDIAN_RATIO,
                             "max_rss_growth_mib": MAX_RSS_GROWTH_MIB, "max_rss_left_mib": MAX_RSS_LEFT_MIB}}
    chain = load_for_inference(MODEL, random_weights=True, seed=0)
    results = []
    t_start = time.monotonic()
    with contextlib.ExitStack() as stack:
        stack.enter_context(_cpus(None if pinned is None else pinned[0]))  # the device and the servers
        if args.logs:
            folder = Path(args.logs)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="edgent-abuse-")))
        cert = (_self_signed_cert(folder, KEY_TYPES[args.tls_key])
                if any(a.server == "tls" for a in ATTACKS if a.name in chosen) else None)
        for attack in ATTACKS:
            if attack.name not in chosen:
                continue
            r = run_attack(attack, chain, folder, cert, n_base=n_base, n_attack=n_attack,
                           period_s=args.period_ms / 1e3, ramp_s=args.ramp_s, timeout_s=args.timeout_s,
                           attacker_cpus=None if pinned is None else pinned[1])
            results.append(r)
            v, rss, sk = r["valid_device"], r["server_rss_mib"], r["server_sockets"]
            print(f"{attack.name:13s} {'PASS' if r['passed'] else 'FAIL'}  answered "
                  f"{v['under_attack']['answered']}/{v['under_attack']['requests']}  median "
                  f"{v['baseline']['median_ms']} -> {v['under_attack']['median_ms']} ms (x{v['median_ratio']})  "
                  f"p99 {v['baseline']['p99_ms']} -> {v['under_attack']['p99_ms']} ms  RSS {rss['before']}/"
                  f"{rss['during_max']}/{rss['after']} MiB  sockets {sk['before']}/{sk['during_max']}/{sk['after']}"
                  + ("" if r["passed"] else f"  failed: {[k for k, ok in r['checks'].items() if not ok]}"),
                  flush=True)
    result = {"quick": bool(args.quick), "settings": settings, "wall_s": round(time.monotonic() - t_start, 1),
              "command": "edgent bench abuse" + (" --quick" if args.quick else "")
              + (f" --attacks {args.attacks}" if args.attacks else ""),
              "attacks": results, "all_passed": all(r["passed"] for r in results)}
    path = write_result("abuse", result, args.out_dir)
    print(f"wrote {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0 if result["all_passed"] else 1


def register(sub: argparse._SubParsersAction) -> None:
    from edgent import argtypes
    from edgent.bench.record import add_common_options

    p = sub.add_parser("abuse", help="hostile clients against a live edge server, a valid device alongside")
    p.add_argument("--attacks", default="", help=f"comma-separated subset of: {', '.join(a.name for a in ATTACKS)}")
    p.add_argument("--period-ms", type=argtypes.number(0.0), default=50.0,
                   help="the valid device sends one request every this many ms (default 50)")
    p.add_argument("--ramp-s", type=argtypes.number(0.0, allow_low=True), default=3.0,
                   help="seconds the attack runs before the valid device's requests are counted (default 3)")
    p.add_argument("--timeout-s", type=argtypes.number(0.0), default=5.0,
                   help="the valid device's connect and request timeout (default 5)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="let the attacker share the CPUs of the server and the device (by default it gets half of "
                        "the CPUs and they the other half, as if it ran on another host)")
    p.add_argument("--tls-key", choices=sorted(KEY_TYPES), default="ec",
                   help="key of the TLS servers' test certificate (default ec: ECDSA P-256; rsa: RSA-2048)")
    p.add_argument("--logs", default=None, help="keep the servers' and attackers' logs in this folder (default: "
                                                "a temporary folder, removed)")
    add_common_options(p, "fewer valid requests per attack")
    p.set_defaults(func=run)


if __name__ == "__main__":
    sys.exit(attack_main(sys.argv[1:]))
