"""A weak device on this machine: real CPU throttling (a cgroup-v1 CPU quota) and an emulated slowdown.

Two ways to make this host look like the paper's Raspberry Pi 3, always named as what they are:

- **Real throttling** (:func:`cpu_quota`, :class:`QuotaCgroup`): the kernel's CFS bandwidth control runs the
  work in a fresh cgroup-v1 ``cpu`` cgroup whose ``cpu.cfs_quota_us`` lets it use only a fraction of a CPU.
  The group may run ``quota_us = round(fraction * period_us * cores)`` microseconds of CPU time per
  ``period_us``, summed over all its threads: with ``cores=1`` and ``fraction=0.1`` a single-threaded job gets
  10% of one CPU and runs about 10x slower on average. The period is the shortest the kernel allows for the
  quota (:func:`shortest_period_us`: quotas under 1 ms are refused, so 10 ms for 10% of one CPU); the
  slowdown holds for the time average over many periods, not for each short call (see :func:`cpu_quota`).
  Needs root and a cgroup-v1 ``cpu`` hierarchy; without them it raises :class:`~edgent.errors.ConfigError`
  (never fakes it).
- **Emulated slowdown** (:class:`Slowdown`): the work runs at full speed, then the caller sleeps until it has
  taken ``factor`` times its real duration: its wall time, or (``clock="thread-cpu"``) the CPU time its thread
  spent on it. A multiplicative factor on measured time; needs no root.

The device role (:data:`DEVICE`) is the second kind on the thread's CPU clock at the host's reference speed
(x100, ``clock="steady-cpu"``): a single call takes 100 x the CPU time its work would have taken with the host
at its reference speed (:mod:`edgent.profile.hostspeed`), steady from call to call, because a request is one
call and the planner prices it as one. The other emulations stay available as options, not as the device role:
on the plain CPU clock (:data:`DEVICE_THREAD_CPU`) the shared host's passing speed comes through multiplied by
100, so identical device calls spread with it; under a quota (:data:`DEVICE_QUOTA`) the slowdown holds only
for the time average, and single calls spread with the phase of the quota's period, more than any one
prediction can follow. The measured spreads of both are in docs/latency.md ("Two machine roles on one host").

:class:`DeviceEmulation` bundles the thread count, the quota and the slowdown of one machine role, and says in
``describe()`` what is real and what is emulated; every profile and benchmark output records it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from edgent.errors import ConfigError

#: Root of the cgroup-v1 ``cpu`` controller.
CGROUP_CPU_ROOT = Path("/sys/fs/cgroup/cpu")
#: The kernel's minimum for both ``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``.
KERNEL_MIN_US = 1000


def shortest_period_us(fraction: float, cores: int = 1) -> int:
    """The shortest CFS period whose quota ``fraction * period * cores`` is still >= the kernel's 1 ms minimum.

    Short periods spread the throttling finely (a 10% quota with a 10 ms period stops the work for about 9 ms
    after each 1 ms it ran); the kernel forbids quotas under 1 ms, so a 10% quota of one CPU needs >= 10 ms.
    """
    return max(KERNEL_MIN_US, int(-(-KERNEL_MIN_US // max(float(fraction) * int(cores), 1e-9))))


#: The period used when none is given: None means :func:`shortest_period_us`.
DEFAULT_PERIOD_US: int | None = None
#: what a :class:`Slowdown` can multiply: elapsed (wall) time, or the calling thread's CPU time
CLOCKS: tuple[str, ...] = ("wall", "thread-cpu", "steady-cpu")
#: the clocks that time one thread's work (threads=1, no quota)
CPU_CLOCKS: tuple[str, ...] = ("thread-cpu", "steady-cpu")
#: what each CPU clock measures, for descriptions
_CLOCK_WORDS = {"thread-cpu": "thread's CPU time", "steady-cpu": "thread's CPU time at the host's reference speed"}
_counter = itertools.count()


def _current_cpu_cgroup(pid: int | str = "self") -> str:
    """Path (relative to the cpu hierarchy root) of the cgroup-v1 cpu cgroup that ``pid`` is in."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
    return "/"


def check_cgroup_v1_cpu() -> None:
    """Raise :class:`ConfigError` saying why real CPU throttling is impossible here, or return if it is possible."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise ConfigError(
            "real CPU throttling (--cpu-quota) needs root to create a cgroup; run as root, or use only the "
            "emulated --slowdown K (which needs no root)"
        )
    if not (CGROUP_CPU_ROOT / "cpu.cfs_quota_us").is_file():
        raise ConfigError(
            f"real CPU throttling (--cpu-quota) needs a cgroup-v1 cpu controller at {CGROUP_CPU_ROOT} "
            "(with cpu.cfs_quota_us); this host has none. Use only the emulated --slowdown K instead"
        )


class QuotaCgroup:
    """A fresh cgroup-v1 cpu cgroup with a CPU quota; processes or threads are put in with :meth:`add_pid`.

    ``quota_us = round(fraction * period_us * cores)``: everything in the group together may use ``fraction``
    of ``cores`` CPUs. :meth:`close` moves whatever is still inside back to the parent cgroup and removes the
    group; use it as a context manager so that this happens even on error.
    """

    def __init__(self, fraction: float, period_us: int | None = DEFAULT_PERIOD_US, cores: int = 1) -> None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"CPU quota fraction must be in (0, 1], got {fraction!r} (0.1 = 10% of a CPU)")
        if period_us is None:
            period_us = shortest_period_us(fraction, cores)
        if not 1000 <= int(period_us) <= 1_000_000:
            raise ConfigError(f"CFS period must be 1000..1000000 us (kernel limits), got {period_us!r}")
        if int(cores) < 1:
            raise ConfigError(f"cores must be >= 1, got {cores!r}")
        check_cgroup_v1_cpu()
        self.fraction = float(fraction)
        self.period_us = int(period_us)
        self.cores = int(cores)
        self.quota_us = max(KERNEL_MIN_US, round(self.fraction * self.period_us * self.cores))
        self.parent = CGROUP_CPU_ROOT / _current_cpu_cgroup().lstrip("/")
        self.path = self.parent / f"edgent-{os.getpid()}-{next(_counter)}-{time.monotonic_ns() % 10**9}"
        try:
            self.path.mkdir()
            (self.path / "cpu.cfs_period_us").write_text(str(self.period_us))
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us))
            burst = self.path / "cpu.cfs_burst_us"
            if burst.exists():
                burst.write_text("0")
        except OSError as exc:
            self._remove()
            raise ConfigError(f"could not create the CPU-quota cgroup {self.path}: {exc}") from exc
        if self.quota_us != round(self.fraction * self.period_us * self.cores):
            # The kernel's minimum quota is 1 ms; say so instead of silently throttling less.
            self.close()
            raise ConfigError(
                f"a quota of {self.fraction:g} x {self.period_us} us x {self.cores} core(s) is under the kernel's "
                "1000 us minimum; use a longer period_us or a larger fraction"
            )

    def add_pid(self, pid: int) -> None:
        """Move process ``pid`` (all its threads) into the group."""
        try:
            (self.path / "cgroup.procs").write_text(str(int(pid)))
        except OSError as exc:
            raise ConfigError(f"could not move pid {pid} into {self.path}: {exc}") from exc

    def set_limited(self, limited: bool) -> None:
        """Switch the quota on (``quota_us`` per period, with a full budget from now) or off (unlimited) for
        everything in the group: a thread that is only sometimes throttled can stay in and have the limit
        toggled, which is cheaper than moving it in and out (the costs of both are in docs/planner.md, "The device
        throttle"). Writing the quota also forgives the group's debt, see
        :meth:`edgent.profile.device.DeviceThrottle.scope`."""
        try:
            (self.path / "cpu.cfs_quota_us").write_text(str(self.quota_us) if limited else "-1")
        except OSError as exc:
            raise ConfigError(f"could not set the CPU quota of {self.path}: {exc}") from exc

    def pids(self) -> list[int]:
        """Processes now in the group."""
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def throttled_usec(self) -> int:
        """Total time (us) the kernel has held the group back so far (``throttled_time`` of ``cpu.stat``)."""
        for line in (self.path / "cpu.stat").read_text().splitlines():
            key, value = line.split()
            if key == "throttled_time":
                return int(value) // 1000
        return 0

    def close(self) -> None:
        """Move every process still inside back to the parent cgroup and remove the group (idempotent)."""
        if not self.path.exists():
            return
        for _ in range(50):
            left = self.pids()
            if not left:
                break
            for pid in left:
                with contextlib.suppress(OSError):
                    (self.parent / "cgroup.procs").write_text(str(pid))
        self._remove()

    def _remove(self) -> None:
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)
        raise ConfigError(f"could not remove the cgroup {self.path}; remove it with: rmdir {self.path}")

    def describe(self) -> str:
        return (f"cgroup-v1 CPU quota {self.quota_us} us per {self.period_us} us period "
                f"({self.fraction:g} of {self.cores} CPU(s))")

    def __enter__(self) -> "QuotaCgroup":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def cpu_quota(fraction: float, period_us: int | None = DEFAULT_PERIOD_US, cores: int = 1) -> Iterator[QuotaCgroup]:
    """Run the body with the calling process (all its threads) under a real CPU quota.

    The process moves into a fresh cgroup ``<its cpu cgroup>/edgent-<pid>-<n>-<t>`` with
    ``cpu.cfs_period_us = period_us`` (default: :func:`shortest_period_us`, 10 ms for 10% of one CPU) and
    ``cpu.cfs_quota_us = round(fraction * period_us * cores)``; on exit (also on error) it moves back and the
    group is removed. Raises :class:`ConfigError` without root or cgroup-v1.

    The throttling is real but coarse: the kernel lets the group run for ``quota_us`` and then stops it until
    the period ends, so single calls shorter than the quota mostly run at full speed and a few wait ~a period.
    The slowdown holds for the *time average* over many periods; measure throttled work by the mean over
    windows of many periods (:func:`edgent.profile.timing.time_windows`), not by the median of single calls.
    """
    group = QuotaCgroup(fraction, period_us, cores)
    try:
        group.add_pid(os.getpid())
        yield group
    finally:
        group.close()


class Slowdown:
    """Emulated slowdown: ``with s.scope(): work`` sleeps after the work until it has taken ``factor`` x as long.

    The work itself runs at this machine's speed; the wait is added by :func:`time.sleep` (plus a short spin
    for the last 0.2 ms, for precision). ``factor=1`` adds nothing.

    ``clock`` is what is multiplied: ``"wall"``, the work's elapsed time; ``"thread-cpu"``, the CPU time the
    calling thread spent on it (:func:`time.thread_time`; the body must run its work on that thread, e.g. torch
    with 1 intra-op thread); or ``"steady-cpu"``, that CPU time at the host's reference speed
    (:mod:`edgent.profile.hostspeed`: a reference workload runs right before and right after the work, inside
    the call's time, and the work's CPU time is scaled by how long it took). On the CPU clocks, time the thread
    spends waiting (other processes, a preempted virtual CPU) does not count, so the call's wall time is
    ``factor`` x its work, however busy the host; on the steady clock, neither does the host's passing speed.
    ``last`` is the last steady-clock call's :class:`~edgent.profile.hostspeed.SteadyCall` (None before one).
    """

    def __init__(self, factor: float, clock: str = "wall") -> None:
        if not float(factor) >= 1.0:
            raise ConfigError(f"slowdown factor must be >= 1, got {factor!r}")
        if clock not in CLOCKS:
            raise ConfigError(f"slowdown clock must be one of {', '.join(CLOCKS)}, got {clock!r}")
        self.factor = float(factor)
        self.clock = clock
        self.last = None
        self._probe = None
        if clock == "steady-cpu":
            from edgent.profile.hostspeed import shared_probe

            self._probe = shared_probe()

    def extra_s(self, elapsed_s: float) -> float:
        """Seconds to wait after work that took ``elapsed_s``."""
        return max(0.0, elapsed_s * (self.factor - 1.0))

    @staticmethod
    def _wait_until(deadline_s: float) -> None:
        """Sleep until 0.2 ms before ``deadline_s`` (a :func:`time.perf_counter` value), then spin to it."""
        left = deadline_s - time.perf_counter()
        if left > 0.0002:
            time.sleep(left - 0.0002)
        while time.perf_counter() < deadline_s:
            pass

    def wait_after(self, start_s: float) -> None:
        """Wait until ``factor`` x the time since ``start_s`` (a :func:`time.perf_counter` value) has passed."""
        if self.factor == 1.0:
            return
        now = time.perf_counter()
        self._wait_until(now + self.extra_s(now - start_s))

    def wait_cpu_after(self, start_s: float, cpu_start_s: float) -> None:
        """Wait until ``start_s`` (wall) plus ``factor`` x the thread's CPU time since ``cpu_start_s``."""
        self._wait_until(start_s + self.factor * (time.thread_time() - cpu_start_s))

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        start = time.perf_counter()
        if self.clock == "steady-cpu":
            done: list = []
            try:
                with self._probe.measure() as done:
                    yield
            finally:
                if done:
                    self.last = done[0]
                    self._wait_until(start + self.factor * self.last.steady_ms / 1e3)
            return
        if self.clock == "thread-cpu":
            cpu_start = time.thread_time()
            try:
                yield
            finally:
                self.wait_cpu_after(start, cpu_start)
            return
        try:
            yield
        finally:
            self.wait_after(start)

    def describe(self) -> str:
        return f"x{self.factor:g} of its {_CLOCK_WORDS.get(self.clock, 'elapsed time')} (sleeps after the work)"


@dataclass(frozen=True)
class DeviceEmulation:
    """How one machine role runs on this host: torch threads, real CPU quota, emulated slowdown.

    Attributes:
        threads: torch intra-op threads (real).
        cpu_quota: fraction of ``threads`` CPUs allowed by a cgroup-v1 quota (real kernel throttling), or None.
        slowdown: emulated multiplicative factor on the measured time (1 = none).
        period_us: CFS period of the quota.
        clock: what the slowdown multiplies at run time and what the role's work is timed by: ``"wall"``,
            ``"thread-cpu"`` (the thread's CPU time; for one thread only) or ``"steady-cpu"`` (that at the
            host's reference speed, :mod:`edgent.profile.hostspeed`; for one thread only).
    """

    threads: int = 1
    cpu_quota: float | None = None
    slowdown: float = 1.0
    period_us: int | None = DEFAULT_PERIOD_US
    clock: str = "wall"

    def __post_init__(self) -> None:
        if int(self.threads) < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads!r}")
        if self.cpu_quota is not None and not 0.0 < float(self.cpu_quota) <= 1.0:
            raise ConfigError(f"cpu_quota must be in (0, 1], got {self.cpu_quota!r}")
        if not float(self.slowdown) >= 1.0:
            raise ConfigError(f"slowdown must be >= 1, got {self.slowdown!r}")
        if self.clock not in CLOCKS:
            raise ConfigError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        if self.clock in CPU_CLOCKS and (int(self.threads) != 1 or self.cpu_quota):
            raise ConfigError(f"the {self.clock} clock times one thread's work: use it with threads=1 and no "
                              f"CPU quota")

    @property
    def real_quota_factor(self) -> float:
        """Nominal slowdown of the real quota (1 / fraction), 1 without a quota."""
        return 1.0 / self.cpu_quota if self.cpu_quota else 1.0

    @property
    def uses_quota(self) -> bool:
        return bool(self.cpu_quota)

    @property
    def timing_clock(self) -> str | None:
        """The clock this role's work must be timed by: the role's own CPU clock for a role slowed on one,
        ``"thread-cpu"`` for one thread under a quota (its wall time is the quota's, not the work's); None where
        the default clock (:func:`edgent.profile.timing.clock_name`) serves."""
        if self.clock in CPU_CLOCKS:
            return self.clock
        return "thread-cpu" if self.cpu_quota and self.threads == 1 else None

    def with_real_part(self, threads: int | None = None, cpu_quota: float | None = None) -> "DeviceEmulation":
        """The same role with other threads and/or CPU quota (None keeps it; a quota of 0 removes it). The
        CPU clocks time one unthrottled thread only, so a role given more threads or a quota falls back to the
        wall clock."""
        t = self.threads if threads is None else int(threads)
        q = self.cpu_quota if cpu_quota is None else (cpu_quota or None)
        clock = self.clock if t == 1 and not q else "wall"
        return DeviceEmulation(t, q, self.slowdown, self.period_us, clock)

    def without_slowdown(self) -> "DeviceEmulation":
        """The same role with the emulated slowdown removed (what is measured for real)."""
        return DeviceEmulation(self.threads, self.cpu_quota, 1.0, self.period_us, self.clock)

    @property
    def emulated(self) -> bool:
        """Whether anything about this role is emulated or throttled (a slowdown, a CPU clock, a CPU quota):
        False only for the machine as it is, timed on the wall clock."""
        return self.slowdown != 1.0 or bool(self.cpu_quota) or self.clock != "wall"

    def timed_on(self) -> str:
        """One label for every output that says how the role's times were taken: ``"wall clock"`` for the
        machine as it is, else ``"EMULATED: ..."`` with what is emulated."""
        return "wall clock" if not self.emulated else f"EMULATED: {self.describe()}"

    def describe(self) -> str:
        """What is real and what is emulated, in words, for every output."""
        real = f"real: {self.threads} torch thread(s) on this host"
        if self.cpu_quota:
            period = self.period_us or shortest_period_us(self.cpu_quota, self.threads)
            quota_us = round(self.cpu_quota * period * self.threads)
            real += (f", cgroup-v1 CPU quota {self.cpu_quota:g} of {self.threads} CPU(s) "
                     f"({quota_us} us per {period} us period, kernel throttling)")
        else:
            real += ", no CPU quota"
        on = f"the {_CLOCK_WORDS[self.clock]}" if self.clock in _CLOCK_WORDS else "measured time"
        emulated = (f"emulated: x{self.slowdown:g} slowdown (sleeps after the work; a multiplicative factor on "
                    f"{on})" if self.slowdown != 1.0 else "emulated: nothing")
        return f"{real}; {emulated}"

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["describe"] = self.describe()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "DeviceEmulation":
        return cls(threads=int(d.get("threads", 1)), cpu_quota=d.get("cpu_quota"),
                   slowdown=float(d.get("slowdown", 1.0)), period_us=d.get("period_us"),
                   clock=str(d.get("clock", "wall")))

    @contextlib.contextmanager
    def real_part(self) -> Iterator[QuotaCgroup | None]:
        """Apply the real part (threads, and the quota if any) to this process for the body; restore after.

        The emulated slowdown is not applied here: measured times are multiplied by :attr:`slowdown`.
        """
        import torch

        old_threads = torch.get_num_threads()
        torch.set_num_threads(int(self.threads))
        try:
            if self.cpu_quota:
                with cpu_quota(self.cpu_quota, self.period_us, cores=self.threads) as group:
                    yield group
            else:
                yield None
        finally:
            torch.set_num_threads(old_threads)


#: The two roles on this host. Edge: 2 threads, unthrottled. Device (the paper's Raspberry Pi 3 against its
#: desktop PC): 1 thread slowed x100 on its CPU clock at the host's reference speed, which puts
#: alexnet-cifar10 at about the paper's device/edge ratio (the measured ratio is in docs/latency.md).
#: Separate emulation options, not roles: the same on the plain CPU clock, :data:`DEVICE_THREAD_CPU`; 1 thread
#: under a real 10 % CFS quota times an emulated x7, :data:`DEVICE_QUOTA` (``edgent profile --cpu-quota 0.1
#: --slowdown 7``), whose single calls spread with the quota's phase (module docstring); a predictor fitted for
#: it prices its calls by the quota's time-averaged factor only (``quota_factor``).
EDGE = DeviceEmulation(threads=2)
DEVICE = DeviceEmulation(threads=1, slowdown=100.0, clock="steady-cpu")
DEVICE_THREAD_CPU = DeviceEmulation(threads=1, slowdown=100.0, clock="thread-cpu")
DEVICE_QUOTA = DeviceEmulation(threads=1, cpu_quota=0.1, slowdown=7.0)
ROLES: dict[str, DeviceEmulation] = {"edge": EDGE, "device": DEVICE}


def real_emulation(threads: int | None = None) -> DeviceEmulation:
    """This machine as it is, nothing emulated: ``threads`` torch threads (default: as many as torch uses now,
    what a program on this machine runs with), timed on the wall clock. What a real device profiles itself with
    (``edgent profile --role device`` without ``--emulate``)."""
    if threads is None:
        import torch

        threads = torch.get_num_threads()
    return DeviceEmulation(threads=int(threads))


def role_emulation(role: str) -> DeviceEmulation:
    """The :class:`DeviceEmulation` of ``role`` ("device" or "edge")."""
    if role not in ROLES:
        raise ConfigError(f"unknown machine role {role!r}; roles: {', '.join(ROLES)}")
    return ROLES[role]
