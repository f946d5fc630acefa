"""Timing a callable: per-call medians when the CPU is not throttled, window means when it is.

Unthrottled, the median of many single calls (after a warm-up) is the robust figure. Under a cgroup CPU quota
single calls are bimodal (full speed, or stopped until the period ends), so the figure is the mean call time
over windows of many CFS periods; the median over several windows gives its spread.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np


def clock_name() -> str:
    """Which clock per-call timings use: ``"wall"`` (``time.perf_counter``, the default and the only one for
    real figures) or ``"thread-cpu"`` (``time.thread_time``: CPU time of the calling thread), chosen by the
    environment variable ``EDGENT_PROFILE_CLOCK=thread-cpu``. The thread-CPU clock is for developing on a
    loaded host with one torch thread: it ignores the time the thread waits for a core (and so does not see a
    CPU quota, extra threads or I/O). Every profile and sweep records the clock used."""
    name = os.environ.get("EDGENT_PROFILE_CLOCK", "wall")
    if name not in ("wall", "thread-cpu"):
        from edgent.errors import ConfigError

        raise ConfigError(f"EDGENT_PROFILE_CLOCK must be 'wall' or 'thread-cpu', got {name!r}")
    return name


def _clock(name: str | None = None):
    return time.thread_time if (name or clock_name()) == "thread-cpu" else time.perf_counter


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
    ``clock``: "wall" or "thread-cpu" (default: :func:`clock_name`)."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    clock = _clock(clock)
    begin = time.perf_counter()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1e3)
        spent = time.perf_counter() - begin
        if len(samples) >= 3 and spent >= max_total_s:
            break
        if len(samples) >= reps and spent >= min_total_s:
            break
    return _stats(samples, len(samples), "per-call" if clock is time.perf_counter else "per-call thread-cpu")


def time_windows(fn: Callable[[], Any], window_s: float = 0.1, windows: int = 3, warmup: int = 1,
                 min_calls: int = 1) -> TimingStats:
    """Mean call time of ``fn`` over ``windows`` windows of at least ``window_s`` seconds (and ``min_calls``
    calls) each; the figure is the median of the window means. For throttled work (CPU quota)."""
    for _ in range(warmup):
        fn()
    means: list[float] = []
    calls = 0
    clock = time.perf_counter
    for _ in range(windows):
        n = 0
        t0 = clock()
        while True:
            fn()
            n += 1
            el = clock() - t0
            if el >= window_s and n >= min_calls:
                break
        means.append(el / n * 1e3)
        calls += n
    return _stats(means, calls, "window-mean", window_s)


def time_callable(fn: Callable[[], Any], throttled: bool, quick: bool = False,
                  clock: str | None = None) -> TimingStats:
    """The profiler's standard measurement: per-call medians unthrottled, window means under a quota."""
    if throttled:
        return time_windows(fn, window_s=0.06 if quick else 0.2, windows=3)
    return time_per_call(fn, reps=15 if quick else 30, min_total_s=0.02 if quick else 0.05,
                         max_total_s=0.3 if quick else 0.6, clock=clock)
