"""Timing a callable: per-call medians when the CPU is not throttled, window means when it is.

Unthrottled, the median of many single calls (after a warm-up) is the robust figure. Under a cgroup CPU quota
single calls are bimodal (full speed, or stopped until the period ends), so the figure is the mean call time
over windows of many CFS periods; the median over several windows gives its spread.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

import numpy as np


def clock_name() -> str:
    """The default clock of per-call timings, used where a role does not name its own
    (:attr:`edgent.profile.throttle.DeviceEmulation.timing_clock`: the device role times on its CPU clock):
    ``"wall"`` (``time.perf_counter``) unless the environment variable ``EDGENT_PROFILE_CLOCK`` names another
    of :data:`TIMER_CLOCKS`. A CPU clock is for developing on a loaded host with one torch thread: it ignores
    the time the thread waits for a core (and so does not see a CPU quota, extra threads or I/O). Every
    profile and sweep records the clock used."""
    name = os.environ.get("EDGENT_PROFILE_CLOCK", "wall")
    if name not in TIMER_CLOCKS:
        from edgent.errors import ConfigError

        raise ConfigError(f"EDGENT_PROFILE_CLOCK must be one of {', '.join(TIMER_CLOCKS)}, got {name!r}")
    return name


#: the clocks a call can be timed by: wall time, the thread's CPU time, or that CPU time at the host's
#: reference speed (:mod:`edgent.profile.hostspeed`; the clock of the device role)
TIMER_CLOCKS: tuple[str, ...] = ("wall", "thread-cpu", "steady-cpu")


def call_timer(name: str | None = None) -> Callable[[Callable[[], Any]], float]:
    """A function that calls its argument once and returns how long the call took (ms) on clock ``name``
    (default :func:`clock_name`; see :data:`TIMER_CLOCKS`)."""
    name = name or clock_name()
    if name == "steady-cpu":
        from edgent.profile.hostspeed import shared_probe

        probe = shared_probe()
        return lambda fn: probe.time_call(fn)[1].steady_ms
    clk = time.thread_time if name == "thread-cpu" else time.perf_counter

    def timed(fn: Callable[[], Any]) -> float:
        t0 = clk()
        fn()
        return (clk() - t0) * 1e3

    return timed


def _method(name: str | None) -> str:
    """How a per-call figure was timed, for :attr:`TimingStats.method`."""
    name = name or clock_name()
    return "per-call" if name == "wall" else f"per-call {name}"


@dataclass(frozen=True)
class TimingStats:
    """One measurement: the figure (``median_ms``) and its spread, with how it was obtained.

    ``method`` is ``"per-call"`` (statistics of single calls) or ``"window-mean"`` (statistics of the mean
    call time of windows of ``window_s`` seconds each).
    """

    median_ms: float
    p10_ms: float
    p90_ms: float
    mean_ms: float
    samples: int
    calls: int
    method: str
    window_s: float = 0.0

    @property
    def spread(self) -> float:
        """(p90 - p10) / median, a relative spread."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _stats(samples_ms: list[float], calls: int, method: str, window_s: float = 0.0) -> TimingStats:
    a = np.asarray(samples_ms, dtype=float)
    return TimingStats(float(np.median(a)), float(np.percentile(a, 10)), float(np.percentile(a, 90)),
                       float(a.mean()), len(a), calls, method, window_s)


def time_per_call(fn: Callable[[], Any], warmup: int = 3, reps: int = 30, min_total_s: float = 0.05,
                  max_total_s: float = 2.0, clock: str | None = None) -> TimingStats:
    """Median (and spread) of single calls of ``fn``: ``warmup`` calls first, then at least ``reps`` calls and
    at least ``min_total_s`` seconds, but stop after ``max_total_s`` seconds (with at least 3 calls).
    ``clock``: one of :data:`TIMER_CLOCKS` (default: :func:`clock_name`)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    timed = call_timer(clock)
    begin = time.perf_counter()
    while True:
        samples.append(timed(fn))
        spent = time.perf_counter() - begin
        if len(samples) >= 3 and spent >= max_total_s:
            break
        if len(samples) >= reps and spent >= min_total_s:
            break
    return _stats(samples, len(samples), _method(clock))


def run_window(fn: Callable[[], Any], window_s: float, min_calls: int = 1) -> tuple[float, int]:
    """Call ``fn`` back to back for at least ``window_s`` seconds (and ``min_calls`` calls); returns the wall
    time taken (s) and the number of calls."""
    n = 0
    t0 = time.perf_counter()
    while True:
        fn()
        n += 1
        el = time.perf_counter() - t0
        if el >= window_s and n >= min_calls:
            return el, n


def time_windows(fn: Callable[[], Any], window_s: float = 0.1, windows: int = 3, warmup: int = 1,
                 min_calls: int = 1) -> TimingStats:
    """Mean call time of ``fn`` over ``windows`` windows of at least ``window_s`` seconds (and ``min_calls``
    calls) each; the figure is the median of the window means. For throttled work (CPU quota)."""
    for _ in range(warmup):
        fn()
    means: list[float] = []
    calls = 0
    for _ in range(windows):
        el, n = run_window(fn, window_s, min_calls)
        means.append(el / n * 1e3)
        calls += n
    return _stats(means, calls, "window-mean", window_s)


def stats_from_samples(samples_ms: Sequence[float], method: str, figure: str = "median") -> TimingStats:
    """:class:`TimingStats` of ``samples_ms`` (one sample per call); ``figure`` "median" or "mean" (the
    figure for throttled work, whose single calls are bimodal)."""
    st = _stats(list(samples_ms), len(samples_ms), method)
    if figure == "mean":
        st = TimingStats(st.mean_ms, st.p10_ms, st.p90_ms, st.mean_ms, st.samples, st.calls, method)
    return st


_GAP_WARM = np.zeros(16, dtype=np.float32)


def idle_gap(gap_s: float = 0.004) -> None:
    """Leave the CPU idle for ``gap_s`` seconds, then run a trivial operation (so that the interpreter's own
    code is warm again). A role under a CPU quota runs in slices separated by such gaps, and work can run
    slower after one than back to back (``edgent bench idle`` measures it, docs/latency.md), so its layers
    are swept as they run after a gap."""
    time.sleep(gap_s)
    _GAP_WARM.sum()


def time_interleaved(fns: Sequence[Callable[[], Any]], throttled: bool, quick: bool = False,
                     clock: str | None = None, rounds: int | None = None, calls: int | None = None,
                     window_s: float | None = None, warmup: int = 2, round_budget_s: float = 0.02,
                     before: Callable[[], Any] | None = None) -> list[TimingStats]:
    """Time several callables in interleaved rounds, so that the host's slow and fast phases (other tenants,
    frequency changes: on a shared VM they last seconds and move a single-burst median by tens of percent,
    docs/latency.md "Timing on a shared VM") fall on all of them alike.

    Each round times every callable in turn: unthrottled, ``calls`` single calls (fewer for a callable slower
    than ``round_budget_s / calls``, at least one; the round's figure is their median); under a CPU quota, a window of at least ``window_s`` seconds of back-to-back calls (the round's
    figure is its mean call time, as single throttled calls are bimodal). The result per callable is the
    median over the rounds (unthrottled), or total time over total calls (throttled: the time average the
    quota guarantees), with the rounds' spread. ``before`` (unthrottled only) runs, untimed, before every
    timed call: e.g. :func:`idle_gap`, to time work as it runs after the CPU has been idle.
    """
    fns = list(fns)
    if not fns:
        return []
    rounds = rounds or (5 if quick else 15)
    calls = calls or (3 if quick else 5)
    window_s = window_s if window_s is not None else (0.03 if quick else 0.06)
    timed = call_timer("wall" if throttled else clock)
    n_calls = []
    for fn in fns:
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            fn()
            last_s = time.perf_counter() - t0
        # slow callables get fewer calls per round (at least one), so that a round stays short
        n_calls.append(max(1, min(calls, int(round_budget_s / max(last_s, 1e-9)))))
    per_round: list[list[float]] = [[] for _ in fns]
    totals = [[0.0, 0] for _ in fns]
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            if throttled:
                el, n = run_window(fn, window_s)
                per_round[i].append(el / n * 1e3)
                totals[i][0] += el * 1e3
                totals[i][1] += n
            else:
                ts = []
                for _ in range(n_calls[i]):
                    if before is not None:
                        before()
                    ts.append(timed(fn))
                per_round[i].append(float(np.median(ts)))
                totals[i][1] += n_calls[i]
    out = []
    for i in range(len(fns)):
        st = _stats(per_round[i], totals[i][1], "interleaved window-mean" if throttled else
                    f"interleaved {_method(clock)}", window_s if throttled else 0.0)
        if throttled:
            st = TimingStats(totals[i][0] / totals[i][1], st.p10_ms, st.p90_ms, st.mean_ms, st.samples, st.calls,
                             st.method, st.window_s)
        out.append(st)
    return out

