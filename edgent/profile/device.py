"""The weak device of the demo and the benchmarks: the "device" role of :mod:`edgent.profile.throttle` applied
to the device's compute only (not to its networking or to the live view).

The device role (:data:`edgent.profile.throttle.DEVICE`) is one torch thread slowed x100 on its CPU clock at
the host's reference speed: each device computation runs at this host's speed between two runs of a reference
workload, then the thread sleeps until the call has taken 100 x the CPU time the work would have taken with
the host at its reference speed (:mod:`edgent.profile.hostspeed`). The same on every host, root or not.

A role with a CPU quota (such as :data:`edgent.profile.throttle.DEVICE_QUOTA`, a separate emulation option,
not the device role): as root with a cgroup-v1 ``cpu`` controller, the computing thread joins a cgroup with
the role's real CPU quota, which is switched on for each device computation and off afterwards; around that,
the role's emulated slowdown (x7 for ``DEVICE_QUOTA``, a sleep after the work). Without root or cgroup v1 the
quota cannot be real: the whole factor (1 / quota x slowdown) is emulated by the sleep, and
:meth:`DeviceThrottle.describe` says so.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Iterator

from edgent.errors import ConfigError
from edgent.profile.throttle import DeviceEmulation, QuotaCgroup, Slowdown, role_emulation


class DeviceThrottle:
    """``scope()`` around device compute (the ``slowdown`` hook of :class:`~edgent.runtime.client.DeviceClient`)."""

    def __init__(self, role: DeviceEmulation | None = None, real_quota: bool = True) -> None:
        self.role = role or role_emulation("device")
        self.group: QuotaCgroup | None = None
        self.why_emulated = ""
        if self.role.cpu_quota and real_quota:
            try:
                self.group = QuotaCgroup(self.role.cpu_quota, self.role.period_us, cores=self.role.threads)
                self.group.set_limited(False)  # limited only inside scope()
            except ConfigError as exc:
                self.why_emulated = str(exc)
        elif self.role.cpu_quota:
            self.why_emulated = "real quota switched off (real_quota=False)"
        factor = self.role.slowdown * (1.0 if self.group is not None else self.role.real_quota_factor)
        self.slowdown = Slowdown(factor, clock=self.role.clock)
        self._lock = threading.Lock()
        self._members: set[int] = set()  # native thread ids already in the quota group
        self._active = 0  # scopes running now (the limit is on while any is)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """Run the body as the device: under the quota (the calling thread's group), then the emulated wait.

        The calling thread joins the quota group once, on its first scope, and stays; the group's limit is on
        only inside a scope (``QuotaCgroup.set_limited``), so the device's networking and bookkeeping run at the
        host's speed as before. Switching the limit is cheaper than moving the thread in and out on every call
        (docs/planner.md, "The device throttle"); both happen outside the timed, slowed-down part. The cost: every
        call starts with the quota's full budget and the previous call's overrun forgiven, so single calls spread
        wider than when the thread moved in per call (the device records of `edgent bench paper` for both ways
        are tabulated in docs/planner.md)."""
        if self.group is None:
            with self.slowdown.scope():
                yield
            return
        tid = threading.get_native_id()
        with self._lock:
            if tid not in self._members:
                (self.group.path / "tasks").write_text(str(tid))
                self._members.add(tid)
            self._active += 1
            if self._active == 1:
                self.group.set_limited(True)
        try:
            with self.slowdown.scope():
                yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    with contextlib.suppress(ConfigError):
                        self.group.set_limited(False)

    def describe(self) -> str:
        """What is real and what is emulated."""
        if not self.role.cpu_quota:
            return (f"device = role 'device': {self.role.threads} torch thread; emulated slowdown "
                    f"{self.slowdown.describe()}")
        if self.group is not None:
            return (f"device = role 'device': 1 torch thread; real {self.group.describe()} on the device's compute "
                    f"thread (kernel throttling), then an emulated x{self.slowdown.factor:g} slowdown (sleep)")
        return (f"device = role 'device' EMULATED: x{self.slowdown.factor:g} slowdown by sleeping after the work "
                f"(the role's {self.role.cpu_quota:g} CPU quota x{self.role.real_quota_factor:g} could not be real: "
                f"{self.why_emulated})")

    def close(self) -> None:
        if self.group is not None:
            self.group.close()
            self.group = None

    def __enter__(self) -> "DeviceThrottle":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
