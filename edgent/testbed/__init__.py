"""A testbed on one Linux machine: the edge server in its own network namespace, joined to the device (the root
namespace) by a veth pair whose rate is shaped by ``tc tbf`` in each direction; the round-trip delay is added by
the device's application (:class:`edgent.runtime.link.AppLink`), since this kernel has no netem.

:func:`open_testbed` gives a :class:`NetnsTestbed` as root and an :class:`EmulatedTestbed` otherwise (the edge on
loopback, the rate enforced by a token bucket in the device client); ``kind`` says which. Both are context managers
that remove everything they created, also when the run fails; namespaces left by a killed run are removed by
:func:`cleanup_leftovers` (called on every start). Only namespaces and links named ``edgent-*`` / ``edN*`` that
this module created are ever touched.
"""

from __future__ import annotations

import bisect
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from edgent.errors import ConfigError, DataError, EdgentError
from edgent.plan.link import shaper_burst_bytes
from edgent.runtime.link import AppLink

NETNS_PREFIX = "edgent-"
PERSISTENT_PREFIX = "edgent-up-"


class TestbedError(EdgentError):
    """A testbed command failed (the message holds the command and its error output)."""


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def run_command(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    """Run one ``ip``/``tc`` command (20 s at most); with ``check``, a failure raises :class:`TestbedError`."""
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20)
    if check and p.returncode != 0:
        raise TestbedError(f"`{' '.join(cmd)}` failed: {p.stderr.strip() or p.stdout.strip()}")
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers() -> list[str]:
    """Remove namespaces and veth links of earlier runs whose process is gone (not ``testbed up`` ones)."""
    if not is_root() or shutil.which("ip") is None:
        return []
    removed = []
    for line in run_command(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NETNS_PREFIX) or name.startswith(PERSISTENT_PREFIX):
            continue
        try:
            pid = int(name[len(NETNS_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            run_command(["ip", "netns", "del", name], check=False)
            removed.append(name)
    for line in run_command(["ip", "-o", "link", "show", "type", "veth"], check=False).stdout.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        ifname = parts[1].strip().split("@")[0]
        if ifname.startswith("edp") and "d" in ifname[3:]:
            try:
                pid = int(ifname[3:].split("d")[0])
            except ValueError:
                continue
            if not _pid_alive(pid):
                run_command(["ip", "link", "del", ifname], check=False)
                removed.append(ifname)
    return removed


def tbf_args(rate_bps: float) -> list[str]:
    """``tc`` arguments of the token bucket for ``rate_bps``: a burst of at least one MTU (or 2 ms of traffic),
    a queue of up to one second so that one request never overflows it."""
    if not rate_bps > 0:
        raise ConfigError(f"the link rate must be > 0 bit/s, got {rate_bps}")
    burst = shaper_burst_bytes(rate_bps)
    return ["tbf", "rate", f"{int(rate_bps)}bit", "burst", str(burst), "latency", "1000ms"]


@dataclass(frozen=True)
class TraceStep:
    """From ``time_s`` after the start of a replay, the link runs at ``rate_bps``."""

    time_s: float
    rate_bps: float


class _Replayer(threading.Thread):
    """Changes the rate as a trace says, in the background, until stopped."""

    def __init__(self, testbed: "Testbed", steps: Sequence[TraceStep], loop: bool) -> None:
        super().__init__(daemon=True, name="trace-replay")
        self.testbed, self.steps, self.loop = testbed, list(steps), loop
        self.stop_event = threading.Event()
        self.applied: list[tuple[float, float]] = []

    def run(self) -> None:
        t0 = time.monotonic()
        while True:
            period = self.steps[-1].time_s + 1.0
            for step in self.steps:
                if self.stop_event.wait(max(0.0, t0 + step.time_s - time.monotonic())):
                    return
                try:
                    self.testbed.set_rate(step.rate_bps)
                    self.applied.append((time.monotonic() - t0, step.rate_bps))
                except EdgentError:
                    return
            if not self.loop:
                return
            t0 += period

    def stop(self) -> None:
        self.stop_event.set()
        self.join(timeout=5)


class Testbed:
    """What both testbeds offer: where the edge is, the device's :class:`AppLink`, rate changes, processes."""

    kind = "abstract"
    edge_host = "127.0.0.1"

    def __init__(self, rate_bps: float | None, delay_ms: float = 0.0) -> None:
        self.rate_bps = rate_bps
        self.delay_ms = delay_ms
        self.link = AppLink(delay_ms=delay_ms)
        self._procs: list[subprocess.Popen] = []
        self._replayer: _Replayer | None = None

    def set_rate(self, rate_bps: float) -> None:
        raise NotImplementedError

    def edge_command(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` on the edge side."""
        return list(argv)

    def start_edge(self, argv: Sequence[str], ready_timeout_s: float = 60.0, **popen_kw) -> subprocess.Popen:
        """Start an edge process (e.g. ``edgent serve``) on the edge side. When ``argv`` contains
        ``--ready-file`` its file is awaited (up to ``ready_timeout_s``)."""
        proc = subprocess.Popen(self.edge_command(argv), start_new_session=True, **popen_kw)
        self._procs.append(proc)
        if "--ready-file" in argv:
            ready = Path(argv[list(argv).index("--ready-file") + 1])
            t_end = time.monotonic() + ready_timeout_s
            while not ready.exists():
                if proc.poll() is not None:
                    raise TestbedError(f"the edge process exited with code {proc.returncode} before it was ready")
                if time.monotonic() > t_end:
                    raise TestbedError(f"the edge process was not ready within {ready_timeout_s:.0f} s")
                time.sleep(0.05)
        return proc

    def stop_process(self, proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Stop one process started here (SIGTERM, then SIGKILL after ``timeout_s``)."""
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with _suppress():
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def replay(self, steps: Sequence[TraceStep], loop: bool = False) -> _Replayer:
        """Change the rate as ``steps`` say, in the background (stopped when the testbed closes)."""
        if self._replayer is not None:
            self._replayer.stop()
        self._replayer = _Replayer(self, steps, loop)
        self._replayer.start()
        return self._replayer

    def _stop_all(self) -> None:
        if self._replayer is not None:
            self._replayer.stop()
            self._replayer = None
        for p in self._procs:
            self.stop_process(p)
        self._procs.clear()

    def describe(self) -> str:
        raise NotImplementedError

    def __enter__(self) -> "Testbed":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_all()


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return True


class NetnsTestbed(Testbed):
    """The edge in a fresh network namespace behind a veth pair shaped by ``tc tbf`` in both directions."""

    kind = "netns"

    def __init__(self, rate_bps: float, delay_ms: float = 0.0, persistent_name: str | None = None) -> None:
        super().__init__(rate_bps, delay_ms)
        if not is_root():
            raise TestbedError("the namespace testbed needs root; use EmulatedTestbed (open_testbed does)")
        for tool in ("ip", "tc"):
            if shutil.which(tool) is None:
                raise TestbedError(f"the namespace testbed needs `{tool}` (iproute2)")
        cleanup_leftovers()
        pid = os.getpid()
        k = random.randrange(100)
        if persistent_name:
            self.netns = PERSISTENT_PREFIX + persistent_name
            self.dev_if, self.edge_if = f"edu{k}d{abs(hash(persistent_name)) % 1000}", "eth0"
        else:
            self.netns = f"{NETNS_PREFIX}{pid}-{k}"
            self.dev_if, self.edge_if = f"edp{pid}d{k}", "eth0"
        used = run_command(["ip", "-o", "addr"], check=False).stdout
        for _ in range(100):
            a, b = random.randrange(256), random.randrange(64) * 4
            if f"10.213.{a}.{b + 1}/" not in used:
                break
        self.device_host, self.edge_host = f"10.213.{a}.{b + 1}", f"10.213.{a}.{b + 2}"
        self._created = False
        try:
            self._create()
        except BaseException:
            self._destroy()
            raise

    def _create(self) -> None:
        run_command(["ip", "netns", "add", self.netns])
        self._created = True
        run_command(["ip", "link", "add", self.dev_if, "type", "veth", "peer", "name", self.edge_if, "netns", self.netns])
        run_command(["ip", "addr", "add", f"{self.device_host}/30", "dev", self.dev_if])
        run_command(["ip", "link", "set", self.dev_if, "up"])
        ns = ["ip", "netns", "exec", self.netns]
        run_command(ns + ["ip", "addr", "add", f"{self.edge_host}/30", "dev", self.edge_if])
        run_command(ns + ["ip", "link", "set", self.edge_if, "up"])
        run_command(ns + ["ip", "link", "set", "lo", "up"])
        if self.rate_bps is not None:
            run_command(["tc", "qdisc", "add", "dev", self.dev_if, "root", *tbf_args(self.rate_bps)])
            run_command(ns + ["tc", "qdisc", "add", "dev", self.edge_if, "root", *tbf_args(self.rate_bps)])

    def set_rate(self, rate_bps: float) -> None:
        """Change the shaped rate of both directions now (``tc qdisc replace``)."""
        args = tbf_args(rate_bps)
        run_command(["tc", "qdisc", "replace", "dev", self.dev_if, "root", *args])
        run_command(["ip", "netns", "exec", self.netns, "tc", "qdisc", "replace", "dev", self.edge_if, "root", *args])
        self.rate_bps = rate_bps

    def edge_command(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv]

    def _destroy(self) -> None:
        run_command(["ip", "link", "del", self.dev_if], check=False)
        if self._created:
            run_command(["ip", "netns", "del", self.netns], check=False)
            self._created = False

    @classmethod
    def attach(cls, state: dict) -> "NetnsTestbed":
        """The persistent testbed that ``edgent testbed up`` made (its :meth:`state`), to change its link
        (:meth:`set_rate`, :meth:`replay`) from another process; closing it stops its replay and removes nothing."""
        if not is_root():
            raise TestbedError("changing a namespace testbed's link needs root")
        tb = cls.__new__(cls)
        Testbed.__init__(tb, state.get("rate_bps"), float(state.get("delay_ms", 0.0)))
        tb.netns, tb.dev_if, tb.edge_if = state["netns"], state["dev_if"], state.get("edge_if", "eth0")
        tb.edge_host, tb.device_host = state["edge_host"], state["device_host"]
        tb._created, tb._attached = False, True
        if not tb.exists():
            raise TestbedError(f"the testbed's namespace {tb.netns} is gone (removed, or the machine restarted); "
                               "make it again with `edgent testbed up`")
        return tb

    def close(self) -> None:
        try:
            self._stop_all()
        finally:
            if not getattr(self, "_attached", False):
                self._destroy()

    def exists(self) -> bool:
        return self.netns in run_command(["ip", "netns", "list"], check=False).stdout

    def describe(self) -> str:
        rate = "unshaped" if self.rate_bps is None else f"{self.rate_bps / 1e6:g} Mbit/s each way (tc tbf)"
        return (f"namespace testbed: edge {self.edge_host} in netns {self.netns}, device {self.device_host} on "
                f"{self.dev_if}; {rate}; RTT delay {self.delay_ms:g} ms added by the device application")

    def state(self) -> dict:
        """What `edgent testbed down` needs to remove a persistent testbed."""
        return {"netns": self.netns, "dev_if": self.dev_if, "edge_if": self.edge_if, "edge_host": self.edge_host,
                "device_host": self.device_host, "rate_bps": self.rate_bps, "delay_ms": self.delay_ms}


class EmulatedTestbed(Testbed):
    """Without root: the edge on loopback, the rate enforced by a token bucket in the device (``link``)."""

    kind = "emulated"

    def __init__(self, rate_bps: float | None, delay_ms: float = 0.0) -> None:
        super().__init__(rate_bps, delay_ms)
        self.link = AppLink(delay_ms=delay_ms, rate_bps=rate_bps)

    def set_rate(self, rate_bps: float) -> None:
        self.link.set_rate(rate_bps)
        self.rate_bps = rate_bps

    def describe(self) -> str:
        rate = "unlimited" if self.rate_bps is None else f"{self.rate_bps / 1e6:g} Mbit/s"
        return (f"EMULATED link (not root: no namespace, no tc): edge on 127.0.0.1, {rate} by a token bucket in "
                f"the device client, RTT delay {self.delay_ms:g} ms added by the device application")


def open_testbed(rate_bps: float | None, delay_ms: float = 0.0, emulate: bool | None = None) -> Testbed:
    """A namespace testbed as root (unless ``emulate``), else an emulated one."""
    if emulate is None:
        emulate = not is_root()
    if emulate:
        return EmulatedTestbed(rate_bps, delay_ms)
    return NetnsTestbed(rate_bps, delay_ms)


def state_dir() -> Path:
    """Where `edgent testbed up` remembers its testbeds."""
    from edgent.data.cifar10 import cache_dir

    return cache_dir() / "testbed"


def serve_argv(model: str, port: int, ready_file: str, host: str = "0.0.0.0", extra: Sequence[str] = ()) -> list[str]:
    """The command line of an edge server process for a testbed."""
    return [sys.executable, "-m", "edgent.cli.main", "serve", "--model", model, "--host", host, "--port", str(port),
            "--ready-file", ready_file, *extra]


def temp_ready_file() -> str:
    fd, path = tempfile.mkstemp(prefix="edgent-ready-")
    os.close(fd)
    os.unlink(path)
    return path


def start_edge_server(tb: "Testbed", model: str, port: int, log_path: str | Path | None = None,
                      extra: Sequence[str] = ()) -> tuple[subprocess.Popen, int]:
    """Start ``edgent serve --model MODEL`` on the edge side of ``tb`` and wait until it is ready.

    In the namespace it binds every address on ``port``; on the emulated link it binds loopback on a free port.
    Its output goes to ``log_path`` (when given), whose tail a failed start quotes. Returns the process (which
    ``tb`` stops on close) and the port it listens on."""
    from edgent.runtime.local import free_port

    netns = tb.kind == "netns"
    if not netns:
        port = free_port()
    ready = temp_ready_file()
    log = open(log_path, "w") if log_path is not None else None
    try:
        proc = tb.start_edge(serve_argv(model, port, ready, host="0.0.0.0" if netns else "127.0.0.1", extra=extra),
                             stdout=log, stderr=log)
    except EdgentError as exc:
        if log is None:
            raise
        log.close()
        raise EdgentError(f"{exc}; edge log ({log_path}):\n{Path(log_path).read_text()[-1500:]}") from exc
    finally:
        Path(ready).unlink(missing_ok=True)
        if log is not None:
            log.close()  # the server writes through its own copy of the descriptor
    return proc, port


#: the lowest rate a replay sets on the link: a trace's outages (0 bit/s) run at it (``tc tbf`` cannot shape
#: to 0 bit/s); the one outage policy of every replay
MIN_REPLAY_BPS = 1000.0


def replay_steps(time_s: Sequence[float], rate_bps: Sequence[float], t_begin: float = 0.0,
                 t_end: float = float("inf"), min_rate_bps: float = MIN_REPLAY_BPS) -> list[TraceStep]:
    """The rate changes that replay a trace (samples ``time_s``, ``rate_bps``) from ``t_begin`` to ``t_end``
    (seconds of the trace) with :meth:`Testbed.replay`: a first step at 0 with the rate in force at ``t_begin``,
    then one per later sample before ``t_end``; rates under ``min_rate_bps`` (outages: ``tc tbf`` cannot shape to
    0 bit/s) are replayed at it."""
    times = [float(t) for t in time_s]
    first = max(0, bisect.bisect_right(times, t_begin) - 1)  # the sample in force at t_begin
    steps = [TraceStep(0.0, max(float(rate_bps[first]), min_rate_bps))]
    steps += [TraceStep(t - t_begin, max(float(r), min_rate_bps))
              for t, r in zip(times[first + 1:], list(rate_bps)[first + 1:]) if t < t_end]
    return steps
