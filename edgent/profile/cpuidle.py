"""Keep this host's CPUs awake (out of their halt state) while edgent measures or serves.

An idle CPU enters a sleep state; on a virtual machine the deepest one is a halt that gives the physical CPU
back to the hypervisor, and the first work after such an idle spell can run slower and less steadily (the
development VM is such a host: Firecracker, cpuidle driver ``haltpoll`` with ``guest_halt_poll_ns=0``).
``edgent bench idle`` measures the effect on this host: a 1-thread alexnet-cifar10 forward after 100 ms idle,
in alternating blocks with the CPUs allowed to sleep and kept awake, and how steady each is (results in
``benchmarks/results/idle.json`` and ``idle-reruns-1546/``, summarised in docs/latency.md, "CPUs kept awake":
it helps in most runs, not in all). A request after an idle spell is exactly what the device and the edge
serve, so every timing edgent takes for a prediction, and every run it checks predictions against, holds the
CPUs awake.

How: a PM QoS request of 0 us on ``/dev/cpu_dma_latency`` (the kernel's interface for "wake-up latency must
not exceed N us", held as long as the file stays open), which leaves the cpuidle governor only the polling
state. It needs root; without it (or without the file) :func:`cpus_awake` changes nothing and says why. Holding
it costs energy (idle CPUs spin), not CPU time that any process would otherwise get: the polling loop yields to
any runnable task. This is what tuned's ``latency-performance`` profile and pyperf's ``system tune`` do.
"""

from __future__ import annotations

import contextlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: the kernel's PM QoS interface for the CPUs' wake-up latency
PM_QOS_PATH = Path("/dev/cpu_dma_latency")


@dataclass(frozen=True)
class CpuIdleState:
    """Whether :func:`cpus_awake` holds the CPUs awake, and if not, why."""

    awake: bool
    why: str = ""

    def describe(self) -> str:
        if self.awake:
            return f"CPUs kept awake (0 us wake-up latency requested on {PM_QOS_PATH}; idle CPUs poll)"
        return f"CPUs may sleep when idle ({self.why})"

    def to_json(self) -> dict[str, object]:
        return {"awake": self.awake, "why": self.why, "describe": self.describe()}


_NOT_HELD = "no edgent command holds them awake"
_current: list["CpuIdleState"] = []


def current_state() -> "CpuIdleState":
    """The state of the innermost :func:`cpus_awake` running in this process (what benchmark results record)."""
    return _current[-1] if _current else CpuIdleState(False, _NOT_HELD)


@contextlib.contextmanager
def _entered(state: "CpuIdleState") -> Iterator["CpuIdleState"]:
    _current.append(state)
    try:
        yield state
    finally:
        _current.pop()


@contextlib.contextmanager
def cpus_awake(enabled: bool = True, path: Path = PM_QOS_PATH) -> Iterator[CpuIdleState]:
    """Hold the CPUs out of their sleep states for the body (see the module docstring); yields the state.

    ``enabled=False`` (``--allow-cpu-sleep`` on the commands) or a host without the interface or without root
    leaves the CPUs as they are; the yielded state says which. The request ends when the body ends, also on
    error (the kernel drops it when the file is closed, even if the process dies)."""
    if not enabled:
        with _entered(CpuIdleState(False, "switched off (--allow-cpu-sleep)")) as st:
            yield st
        return
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        why = (f"this kernel has no {path}" if isinstance(exc, FileNotFoundError)
               else f"{path} needs root" if isinstance(exc, PermissionError) else f"{path}: {exc.strerror or exc}")
        with _entered(CpuIdleState(False, why)) as st:
            yield st
        return
    try:
        try:
            os.write(fd, struct.pack("i", 0))
            state = CpuIdleState(True)
        except OSError as exc:
            state = CpuIdleState(False, f"{path} refused the request: {exc.strerror or exc}")
        with _entered(state) as st:
            yield st
    finally:
        os.close(fd)
