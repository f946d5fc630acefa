"""``edgent bench idle``: how this host runs work after the CPU was idle, and under a real CPU quota.

The measurements behind the latency stage's account of the emulated device and of the CPU idle states
(``docs/latency.md``):

- one alexnet-cifar10 forward (1 torch thread) back to back, and right after sleeps of 1, 3 and 9 ms, by the
  thread's CPU time (a slower call after a sleep means the work itself ran slower, not that it waited);
- the same forward after writing a 64 MB buffer (evicting the caches without idling);
- under the real CPU quota of the quota emulation option (:data:`edgent.profile.throttle.DEVICE_QUOTA`; root
  and cgroup v1 only): wall time over CPU time of windows of back to back forwards (how exact the quota is),
  and the CPU time per forward;
- the full forward with the edge role's 2 threads back to back and after 50 ms idle (wall time: what the edge
  server's compute sees between requests);
- the 1-thread forward after 100 ms idle with the CPUs allowed to sleep and kept awake
  (:mod:`edgent.profile.cpuidle`), in alternating blocks: its CPU time and how steady it is (the share of
  calls within +-10 % of the median), which is what the device role's x100 makes of every request.

Everything but that comparison runs as the other commands do: with the CPUs kept awake where root can, unless
``edgent --allow-cpu-sleep``.

Results: ``benchmarks/results/idle.json``.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any, Callable

import numpy as np
import torch

SLEEPS_MS = (0.0, 1.0, 3.0, 9.0)


def _cpu_ms(fn: Callable[[], Any], before: Callable[[], Any] | None, reps: int) -> float:
    """Median thread CPU time (ms) of ``fn``, with ``before`` run untimed before each call."""
    out = []
    for _ in range(reps):
        if before is not None:
            before()
        c0 = time.thread_time()
        fn()
        out.append((time.thread_time() - c0) * 1e3)
    return float(np.median(out))


def _wall_ms(fn: Callable[[], Any], gap_s: float, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        if gap_s:
            time.sleep(gap_s)
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def after_idle_by_cpu_state(fn: Callable[[], Any], reps: int, gap_s: float = 0.1, blocks: int = 3
                            ) -> dict[str, Any]:
    """Thread CPU time of ``fn`` right after ``gap_s`` of idle, with the CPUs allowed to sleep and kept awake,
    ``blocks`` alternating blocks of ``reps // blocks`` calls each; per state the median, p10, p90 and the
    share of calls within +-10 % of that state's median (how steady a x100 device built on it is)."""
    from edgent.profile.cpuidle import cpus_awake

    samples: dict[str, list[float]] = {"may_sleep": [], "awake": []}
    why = ""
    for _ in range(blocks):
        for state in samples:
            with cpus_awake(enabled=state == "awake") as st:
                if state == "awake" and not st.awake:
                    why = st.why
                for _ in range(max(1, reps // blocks)):
                    time.sleep(gap_s)
                    c0 = time.thread_time()
                    fn()
                    samples[state].append((time.thread_time() - c0) * 1e3)
    out: dict[str, Any] = {"gap_ms": gap_s * 1e3, "blocks": blocks}
    if why:
        out["awake_not_held"] = why
    for state, v in samples.items():
        a = np.asarray(v)
        med = float(np.median(a))
        out[state] = {"median_ms": med, "p10_ms": float(np.percentile(a, 10)), "p90_ms": float(np.percentile(a, 90)),
                      "within_10pct_of_median": float(np.mean(np.abs(a - med) <= 0.1 * med)), "calls": len(v)}
    return out


def run(quick: bool = False, allow_cpu_sleep: bool = False) -> dict[str, Any]:
    """The whole benchmark (see the module docstring); returns the result document."""
    from edgent.errors import ConfigError
    from edgent.profile.cpuidle import cpus_awake
    from edgent.profile.profiler import load_chain
    from edgent.profile.throttle import DEVICE_QUOTA, QuotaCgroup, role_emulation
    from edgent.profile.timing import run_window

    reps = 10 if quick else 30
    chain = load_chain("alexnet-cifar10").eval()
    x = torch.randn(1, *chain.input_shape)
    fwd = lambda: chain.forward(x)  # noqa: E731
    old_threads = torch.get_num_threads()
    out: dict[str, Any] = {"model": chain.name, "reps": reps}
    try:
        with torch.no_grad():
            torch.set_num_threads(1)
            for _ in range(5):
                fwd()
            out["cpu_state_after_100ms_idle"] = after_idle_by_cpu_state(fwd, reps)
        with torch.no_grad(), cpus_awake(not allow_cpu_sleep) as cpu:
            out["cpu_idle"] = cpu.describe()
            out["cpu_ms_after_sleep"] = {f"{s:g}": _cpu_ms(fwd, (lambda s=s: time.sleep(s / 1e3)) if s else None, reps)
                                         for s in SLEEPS_MS}
            buf = torch.empty(64 * 2 ** 20 // 4)
            out["cpu_ms_after_64mb_write"] = _cpu_ms(fwd, lambda: buf.add_(1.0), reps)
            dev = DEVICE_QUOTA  # the quota emulation option: 1 thread under a 10 % quota
            try:
                group = QuotaCgroup(dev.cpu_quota, dev.period_us, cores=dev.threads)
            except ConfigError as exc:
                out["quota"] = {"skipped": str(exc)}
            else:
                windows = []
                tid = threading.get_native_id()
                try:
                    group.add_pid(tid)
                    fwd()
                    for _ in range(2 if quick else 4):
                        c0 = time.thread_time()
                        wall_s, n = run_window(fwd, 0.5)
                        cpu_s = time.thread_time() - c0
                        windows.append({"wall_over_cpu": wall_s / cpu_s, "cpu_ms_per_call": cpu_s / n * 1e3,
                                        "wall_ms_per_call": wall_s / n * 1e3})
                finally:
                    group.close()
                out["quota"] = {"describe": dev.describe(), "windows": windows}
            torch.set_num_threads(role_emulation("edge").threads)
            for _ in range(5):
                fwd()
            edge = {}
            for name, gap in (("back_to_back", 0.0), ("after_50ms_idle", 0.05)):
                w = _wall_ms(fwd, gap, reps)
                edge[name] = {"median_ms": float(np.median(w)), "p10_ms": float(np.percentile(w, 10)),
                              "p90_ms": float(np.percentile(w, 90))}
            out["edge_threads_wall"] = edge
    finally:
        torch.set_num_threads(old_threads)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = sub.add_parser("idle", help="how work runs after the CPU was idle, and under a real CPU quota")
    add_common_options(p, "fewer repetitions")
    p.set_defaults(func=_cmd, manages_cpu_idle=True)


def _cmd(args: argparse.Namespace) -> int:
    import sys

    from edgent.bench.record import write_result

    result = run(args.quick, getattr(args, "allow_cpu_sleep", False))
    path = write_result("idle", result, args.out_dir)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        s = result["cpu_ms_after_sleep"]
        print("alexnet-cifar10 forward, 1 thread, CPU ms: " + ", ".join(f"after {k} ms sleep {v:.2f}" for k, v in s.items())
              + f"; after a 64 MB write {result['cpu_ms_after_64mb_write']:.2f}")
        q = result["quota"]
        if "windows" in q:
            print("under the quota: " + "; ".join(f"wall/CPU {w['wall_over_cpu']:.2f}, CPU {w['cpu_ms_per_call']:.2f} ms"
                                                   for w in q["windows"]))
        else:
            print(f"quota skipped: {q['skipped']}")
        c = result["cpu_state_after_100ms_idle"]
        print("1 thread after 100 ms idle, CPU ms median (p10-p90, share within 10 % of the median): " + "; ".join(
            f"{k} {c[k]['median_ms']:.2f} ({c[k]['p10_ms']:.2f}-{c[k]['p90_ms']:.2f}, "
            f"{c[k]['within_10pct_of_median']:.0%})" for k in ("may_sleep", "awake")))
        e = result["edge_threads_wall"]
        print(f"edge threads, wall ms: back to back {e['back_to_back']['median_ms']:.2f}, after 50 ms idle "
              f"{e['after_50ms_idle']['median_ms']:.2f} (p10-p90 {e['after_50ms_idle']['p10_ms']:.2f}-"
              f"{e['after_50ms_idle']['p90_ms']:.2f})")
    print(f"written: {path}", file=sys.stderr)
    return 0
