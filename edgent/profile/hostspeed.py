"""The host's speed at this moment, from a reference workload: what keeps the emulated device at one speed.

The device role is this host slowed x100 on its thread's CPU clock (:mod:`edgent.profile.throttle`). A shared
virtual machine's speed is not its own: a neighbour on the same core slows identical work from one call to the
next, and the thread's CPU clock counts that as work. Multiplied by 100, the host's passing speed would become
a device whose speed jumps from one request to the next, which a real weak device, alone on its own board, does
not do (what was measured on the development VM is in docs/latency.md, "The steady clock").

:class:`SpeedProbe` times a fixed reference workload (:data:`REFERENCE_MATMULS` products of two
:data:`REFERENCE_SIZE` x :data:`REFERENCE_SIZE` float32 matrices, about :data:`REFERENCE_MS` ms of CPU) on the
calling thread's CPU clock. :func:`steady_ms` rescales a piece of work's CPU time by how long the reference
took right before and right after it, against :data:`REFERENCE_MS`: the time the work would have taken with
the host at its reference speed. The emulated device is then "this host at its reference speed, slowed
x100"; its work still runs for real, every call, and only the host's passing speed is taken out. What each
call's raw CPU time would have given is kept beside it (:class:`SteadyCall`), so the two can be compared on
the same calls (``edgent bench paper``, ``device_spread``).

The probe runs on the calling thread with torch's intra-op threads as they are: use it with one thread (the
device role), or the other threads' work is not on the clock.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from edgent.errors import ConfigError

#: side of the reference's square matrices (float32: 144 KiB each, in the core's own cache)
REFERENCE_SIZE = 192
#: matrix products per reference run
REFERENCE_MATMULS = 8
#: the reference's thread CPU time (ms) at the reference speed: a design constant, chosen as its median after
#: an idle spell on the development machine (2-core AMD EPYC, one torch thread; ``python -m
#: edgent.profile.hostspeed`` prints it for this host). Every steady-clock time is scaled to it, so changing it
#: rescales the device role (the shipped device fits were timed against this value).
REFERENCE_MS = 1.35


@dataclass(frozen=True)
class SteadyCall:
    """One call timed on the steady clock: the work's raw thread CPU time, the reference's time before and
    after it, and the work's time at the reference speed (all ms)."""

    work_cpu_ms: float
    probe_before_ms: float
    probe_after_ms: float
    steady_ms: float

    @property
    def host_speed(self) -> float:
        """The host's speed during the call relative to the reference speed (< 1: slower)."""
        return REFERENCE_MS / max(0.5 * (self.probe_before_ms + self.probe_after_ms), 1e-9)

    def to_json(self) -> dict[str, Any]:
        return {"work_cpu_ms": round(self.work_cpu_ms, 4), "probe_before_ms": round(self.probe_before_ms, 4),
                "probe_after_ms": round(self.probe_after_ms, 4), "steady_ms": round(self.steady_ms, 4)}


def steady_ms(work_cpu_ms: float, probe_before_ms: float, probe_after_ms: float,
              reference_ms: float = REFERENCE_MS) -> float:
    """``work_cpu_ms`` at the reference speed: scaled by ``reference_ms`` over the mean of the reference's
    times before and after the work."""
    probe = 0.5 * (float(probe_before_ms) + float(probe_after_ms))
    if not probe > 0 or not reference_ms > 0:
        raise ConfigError(f"steady clock: the reference times must be > 0 ms, got {probe_before_ms!r}, "
                          f"{probe_after_ms!r} (reference {reference_ms!r})")
    return float(work_cpu_ms) * float(reference_ms) / probe


class SpeedProbe:
    """The reference workload, timed on the calling thread's CPU clock (see the module docstring)."""

    def __init__(self, size: int = REFERENCE_SIZE, matmuls: int = REFERENCE_MATMULS) -> None:
        import torch

        if int(size) < 1 or int(matmuls) < 1:
            raise ConfigError(f"speed probe: size and matmuls must be >= 1, got {size!r}, {matmuls!r}")
        gen = torch.Generator().manual_seed(11)
        self._a = torch.randn(int(size), int(size), generator=gen) / float(size) ** 0.5
        self._out = torch.empty_like(self._a)
        self.matmuls = int(matmuls)
        for _ in range(2):  # the first products pay for torch's own warm-up, not the host's speed
            self.cpu_ms()

    def cpu_ms(self) -> float:
        """Run the reference once; its thread CPU time (ms)."""
        import torch

        t0 = time.thread_time()
        for _ in range(self.matmuls):
            torch.mm(self._a, self._a, out=self._out)
        return (time.thread_time() - t0) * 1e3

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[SteadyCall]]:
        """Time the body between two reference runs; the yielded list holds its :class:`SteadyCall` once the
        body has finished (also when it raised)."""
        done: list[SteadyCall] = []
        before = self.cpu_ms()
        c0 = time.thread_time()
        try:
            yield done
        finally:
            work = (time.thread_time() - c0) * 1e3
            after = self.cpu_ms()
            done.append(SteadyCall(work, before, after, steady_ms(work, before, after)))

    def time_call(self, fn: Callable[[], Any]) -> tuple[Any, SteadyCall]:
        """Call ``fn`` between two reference runs; returns its result and its :class:`SteadyCall`."""
        with self.measure() as done:
            out = fn()
        return out, done[0]


_PROBE: SpeedProbe | None = None


def shared_probe() -> SpeedProbe:
    """One probe per process (its matrices made once)."""
    global _PROBE
    if _PROBE is None:
        _PROBE = SpeedProbe()
    return _PROBE


def reference_survey(calls: int = 200, idle_s: float = 0.05) -> dict[str, float]:
    """The reference's thread CPU time over ``calls`` runs, each after ``idle_s`` of idle (one torch thread):
    how :data:`REFERENCE_MS` was chosen, and how far this host is from it now."""
    import numpy as np
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        probe = shared_probe()
        probe.cpu_ms()
        ms = []
        for _ in range(int(calls)):
            time.sleep(idle_s)
            ms.append(probe.cpu_ms())
    finally:
        torch.set_num_threads(old)
    a = np.asarray(ms)
    return {"calls": int(a.size), "median_ms": float(np.median(a)), "p10_ms": float(np.percentile(a, 10)),
            "p90_ms": float(np.percentile(a, 90)), "reference_ms": REFERENCE_MS}


if __name__ == "__main__":  # pragma: no cover - a measurement
    import json

    from edgent.profile.cpuidle import cpus_awake

    with cpus_awake():
        print(json.dumps(reference_survey(), indent=1))
