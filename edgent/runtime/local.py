"""Running an edge server next to the caller: in a background thread of this process (tests, benchmarks) or as a
real ``edgent serve`` process (on loopback or inside a testbed namespace)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Sequence

from edgent.errors import EdgentError
from edgent.model.chain import MultiExitChain
from edgent.runtime.compute import EdgeCompute
from edgent.runtime.server import EdgeServer, ServerConfig


class ThreadedServer:
    """An :class:`EdgeServer` on its own event loop in a daemon thread; ``with ThreadedServer(...) as s: s.port``."""

    def __init__(self, models: dict[str, MultiExitChain], config: ServerConfig | None = None,
                 compute: EdgeCompute | None = None) -> None:
        self.server = EdgeServer(models, config or ServerConfig(port=0), compute)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True, name="edge-server")
        self._started = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_forever()

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> "ThreadedServer":
        self._thread.start()
        self._started.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    def __enter__(self) -> "ThreadedServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def serve_process(port: int, model_flags: Sequence[str] = ("--random-weights", "--seed", "0"),
                  extra: Sequence[str] = (), host: str = "127.0.0.1", prefix: Sequence[str] = (),
                  ready_timeout_s: float = 90.0, env: dict | None = None,
                  output: str | Path | None = None, cwd: str | Path | None = None) -> subprocess.Popen:
    """Start ``edgent serve`` as a separate process (``prefix`` e.g. ``ip netns exec NS``) and wait until it
    listens; the caller stops it with :func:`stop_process`. ``output``: a file for its stdout and stderr (by
    default stdout is dropped and stderr kept for the error of a server that does not start). ``cwd``: its working
    directory (``python -m`` imports from there first: another source tree's ``edgent`` needs its own)."""
    ready = Path(tempfile.mkdtemp(prefix="edgent-serve-")) / "ready"
    cmd = [*prefix, sys.executable, "-m", "edgent.cli.main", "serve", "--host", host, "--port", str(port),
           "--ready-file", str(ready), *model_flags, *extra]
    if output is not None:
        with open(output, "ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env,
                                    cwd=cwd)
    else:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
                                env=env, cwd=cwd)
    t_end = time.monotonic() + ready_timeout_s
    while not ready.exists():
        if proc.poll() is not None:
            err = (proc.stderr.read().decode(errors="replace") if proc.stderr
                   else Path(output).read_text(errors="replace") if output is not None else "")
            raise EdgentError(f"edgent serve exited with code {proc.returncode}: {err[-2000:]}")
        if time.monotonic() > t_end:
            stop_process(proc)
            raise EdgentError(f"edgent serve was not ready within {ready_timeout_s:.0f} s")
        time.sleep(0.05)
    ready.unlink()
    ready.parent.rmdir()
    return proc


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout_s: float = 15.0) -> int | None:
    """Stop a process started by :func:`serve_process` (its whole session), SIGKILL after ``timeout_s``."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    if proc.stderr:
        proc.stderr.close()
    return proc.returncode


def rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise EdgentError(f"no VmRSS for process {pid}")


def descendant_processes(pid: int) -> dict[int, int]:
    """The processes below ``pid`` (its children, theirs, ...) as pid -> start time (clock ticks after boot, to
    tell a pid reused later from the process seen now); empty where there is no ``/proc``."""
    parent: dict[int, int] = {}
    started: dict[int, int] = {}
    try:
        entries = [d for d in Path("/proc").iterdir() if d.name.isdigit()]
    except OSError:
        return {}
    for d in entries:
        try:
            rest = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parent[int(d.name)], started[int(d.name)] = int(rest[1]), int(rest[19])
    children: dict[int, list[int]] = {}
    for child, ppid in parent.items():
        children.setdefault(ppid, []).append(child)
    out: dict[int, int] = {}
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        if p not in out:
            out[p] = started[p]
            todo.extend(children.get(p, []))
    return out


def kill_leftovers(processes: dict[int, int], wait_s: float = 5.0) -> list[int]:
    """SIGKILL those of ``processes`` (pid -> start time, :func:`descendant_processes`) still running after
    ``wait_s`` seconds (the same pid with the same start time); the pids killed."""
    def alive() -> list[int]:
        out = []
        for p, t in processes.items():
            try:
                rest = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(rest[19]) == t and rest[0] != "Z":
                out.append(p)
        return out

    t_end = time.monotonic() + wait_s
    left = alive()
    while left and time.monotonic() < t_end:
        time.sleep(0.1)
        left = alive()
    for p in left:
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return left
