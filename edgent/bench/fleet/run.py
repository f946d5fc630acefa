"""The run of ``edgent bench fleet``: one edge (a real ``edgent serve`` process), N device processes, every
method at every fleet size, and the summary per (N, method)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from edgent.bench.fleet.options import METHODS, FleetOptions
from edgent.errors import ConfigError, EdgentError


class DevicePool:
    """``count`` device processes (:mod:`edgent.bench.fleet.device`), started at once, ready for segments."""

    def __init__(self, count: int, opts: FleetOptions, random_weights: bool) -> None:
        env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "edgent.bench.fleet.device", opts.model, str(opts.device_factor),
             str(opts.seed + i), "1" if random_weights else "0", opts.device_profile or "", opts.edge_profile or ""],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, start_new_session=True)
            for i in range(count)]
        for p in self.procs:
            line = p.stdout.readline()
            if line.strip() != "ready":
                self.close()
                raise EdgentError(f"a fleet device process did not start (it said {line!r})")

    def run(self, cmds: list[dict[str, Any]], timeout_s: float) -> list[dict[str, Any]]:
        """Send one segment to each of the first ``len(cmds)`` devices; their answers."""
        for p, c in zip(self.procs, cmds):
            p.stdin.write(json.dumps(c) + "\n")
            p.stdin.flush()
        out = []
        t_end = time.monotonic() + timeout_s
        for p in self.procs[:len(cmds)]:
            left = t_end - time.monotonic()
            ready, _, _ = select.select([p.stdout], [], [], max(left, 0.0))
            if not ready:
                raise EdgentError(f"a fleet device did not finish its segment within {timeout_s:.0f} s")
            out.append(json.loads(p.stdout.readline()))
        return out

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def wait_until_idle(port: int, timeout_s: float = 120.0) -> float:
    """Wait until the edge at ``port`` has nothing waiting or in service (what a previous run left it, e.g. the
    requests of devices that gave up), asking its load with a HELLO every 0.2 s; the seconds waited (raises
    EdgentError past ``timeout_s``). Every run then starts from an idle edge."""
    import socket

    from edgent.runtime.protocol import DEFAULT_MAX_PAYLOAD_BYTES, MsgType, encode_frame, recv_frame

    t0 = time.monotonic()
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
            sock.sendall(encode_frame(MsgType.HELLO, {"client": "fleet-bench"}))
            load = recv_frame(sock, DEFAULT_MAX_PAYLOAD_BYTES).meta.get("load") or {}
        if not load.get("queue_length") and not load.get("in_service"):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise EdgentError(f"the edge at port {port} was still busy {timeout_s:.0f} s after a run ({load})")
        time.sleep(0.2)


def summarise(answers: list[dict[str, Any]], opts: FleetOptions, accuracy_of_exit: dict[int, float]
              ) -> dict[str, Any]:
    """One (N, method): share of deadlines met, accuracy, edge throughput, latency percentiles, where the
    answers came from, over the requests that arrived after the warm-up."""
    reqs = [r for a in answers for r in a["requests"] if r[0] >= opts.warmup_s]
    errors = [a["error"] for a in answers if a.get("error")]
    window_s = opts.duration_s - opts.warmup_s
    if not reqs:
        return {"requests": 0, "errors": errors}
    total = np.array([r[1] for r in reqs])
    where = [r[3] for r in reqs]
    correct = [r[5] for r in reqs if r[5] is not None]
    return {
        "requests": len(reqs),
        "offered_per_s": round(len(reqs) / window_s, 2),
        "met_share": round(float(np.mean([r[2] for r in reqs])), 4),
        "accuracy": round(float(np.mean(correct)), 4) if correct else None,
        "card_accuracy_of_exits_used": round(float(np.mean([accuracy_of_exit[r[4]] for r in reqs])), 4),
        "edge_throughput_per_s": round(sum(w == "edge" for w in where) / window_s, 2),
        "p50_ms": round(float(np.percentile(total, 50)), 2),
        "p95_ms": round(float(np.percentile(total, 95)), 2),
        "where": {w: where.count(w) for w in sorted(set(where))},
        "exits": {str(e): sum(r[4] == e for r in reqs) for e in sorted({r[4] for r in reqs})},
        "errors": errors,
    }


def summarise_capacity(answers: list[dict[str, Any]], opts: FleetOptions) -> dict[str, Any]:
    """One edge's closed-loop run (:func:`edgent.bench.fleet.device.run_closed_loop`): the answers per second
    that ended after the warm-up, their latency and the edge's batch sizes."""
    done = [r for a in answers for r in a.get("answers", []) if opts.warmup_s <= r[0] < opts.duration_s]
    window_s = opts.duration_s - opts.warmup_s
    out: dict[str, Any] = {"clients": len(answers), "answers": len(done),
                           "failed": sum(a.get("failed", 0) for a in answers),
                           "failure_reasons": [r for a in answers for r in a.get("failure_reasons", [])][:5],
                           "errors": [a["error"] for a in answers if a.get("error")]}
    if not done:
        return out
    total = np.array([r[1] for r in done])
    sizes = np.array([r[2] for r in done])
    return {**out, "throughput_per_s": round(len(done) / window_s, 2),
            "p50_ms": round(float(np.percentile(total, 50)), 2), "p95_ms": round(float(np.percentile(total, 95)), 2),
            "mean_batch_size_per_answer": round(float(sizes.mean()), 2), "max_batch_size": int(sizes.max())}


def _batching_flags(opts: FleetOptions, batching: bool) -> list[str]:
    """``edgent serve``'s flags for an edge that batches across devices or computes one by one: the local
    engine's window, or Ray Serve's own batching (its batch wait as the window; a batch of one for one by one)."""
    if opts.backend == "ray":
        return (["--ray-batch", str(opts.max_batch), "--ray-batch-wait-ms", str(opts.batch_window_ms)] if batching
                else ["--ray-batch", "1"])
    return ["--batch-window-ms", str(opts.batch_window_ms), "--max-batch", str(opts.max_batch)] if batching else []


def run_fleet(opts: FleetOptions, random_weights: bool, log: Any = print) -> dict[str, Any]:
    """Every method at every fleet size against one edge per edge setting (see :mod:`edgent.bench.fleet`)."""
    from edgent.plan.sources import table_for_model
    from edgent.runtime.local import free_port, serve_process, stop_process

    table = table_for_model(opts.model, device_profile=opts.device_profile, edge_profile=opts.edge_profile)
    acc = {e.exit: e.accuracy for e in table.exits}
    flags = ["--model", opts.model] + (["--random-weights", "--seed", "0"] if random_weights else [])
    base = ["--backend", opts.backend, "--threads", str(opts.edge_threads), "--torch-threads",
            str(opts.edge_torch_threads), "--max-queue", "1024", "--max-connections", "512"]
    if opts.backend != "ray":
        # (the edge's default: with more than one device connected, every request goes through the engine's queue,
        # where the load it reports and the devices' queue_ms see it; see EdgeCompute.connections)
        base += ["--slowdown", str(opts.edge_factor)]
    elif opts.edge_factor != 1.0:
        raise ConfigError("--edge-factor emulates a slower edge of --backend local only; use 1 with --backend ray")
    edges: dict[bool, tuple[Any, int]] = {}
    pool = None
    capacity: dict[str, Any] | None = None
    results: dict[str, dict[str, Any]] = {}
    load: list[float] = []
    try:
        for batching in sorted({METHODS[m][2] for m in opts.methods} | ({False, True} if opts.capacity else set())):
            port = free_port()
            extra = base + _batching_flags(opts, batching)
            edges[batching] = (serve_process(port, model_flags=flags, extra=extra), port)
        if opts.records_dir is not None:
            opts.records_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        pool = DevicePool(max(opts.devices), opts, random_weights)
        log(f"fleet: {max(opts.devices)} device processes ready in {time.monotonic() - t0:.1f} s")
        for n in opts.devices if opts.methods else ():
            results[str(n)] = {}
            for m in opts.methods:
                policy, aware, batching = METHODS[m]
                port = edges[batching][1]
                drained_s = wait_until_idle(port)
                t_start = time.monotonic() + 0.5
                cmds = [{"id": i, "port": port, "policy": policy, "load_aware": aware, "t_start": t_start,
                         "duration_s": opts.duration_s, "rate_per_s": opts.rate_per_s,
                         "deadline_ms": opts.deadline_ms, "margin": opts.margin,
                         "device_factor": opts.device_factor, "link_rate_bps": opts.link_rate_bps,
                         "link_delay_ms": opts.link_delay_ms, "seed": opts.seed * 1000 + n * 100 + i,
                         "records_path": None if opts.records_dir is None
                         else str(opts.records_dir / f"N{n}-{m}-device{i}.jsonl")}
                        for i in range(n)]
                answers = pool.run(cmds, opts.duration_s + 120.0)
                load.append(os.getloadavg()[0])
                s = summarise(answers, opts, acc)
                s["load_average_1min"] = round(load[-1], 2)
                s["edge_drain_before_s"] = round(drained_s, 2)
                results[str(n)][m] = s
                log(f"N={n:>2} {m:<27} met {s.get('met_share', 0):.3f}  acc {s.get('accuracy') or 0:.3f}  "
                    f"edge {s.get('edge_throughput_per_s', 0):7.1f}/s  p95 {s.get('p95_ms', 0):7.1f} ms  "
                    f"{s.get('where')}  load {load[-1]:.2f}")
        if opts.capacity:
            capacity = measure_capacity(pool, edges, opts, load, log)
    finally:
        if pool is not None:
            pool.close()
        for proc, _ in edges.values():
            stop_process(proc)
    return {"options": {k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
                        for k, v in asdict(opts).items()},
            "results": results, "capacity": capacity, "checks": checks(results, opts, capacity),
            "load_average_1min": {"min": round(min(load), 2), "max": round(max(load), 2)} if load else None,
            "weights": "random (seeded)" if random_weights else "trained"}


def measure_capacity(pool: DevicePool, edges: dict[bool, tuple[Any, int]], opts: FleetOptions, load: list[float],
                     log: Any, rounds: int = 2) -> dict[str, Any]:
    """Each edge's capacity: the largest fleet in a closed loop against the one-by-one edge, then the batching
    one (:func:`summarise_capacity`), ``rounds`` times in turn (so that a change of the machine's load falls on
    both); per edge its rounds and their mean answers per second, and the ratio of the means."""
    n = max(opts.devices)
    out: dict[str, Any] = {"clients": n, "rounds": []}
    for r in range(rounds):
        per: dict[str, Any] = {}
        for batching, key in ((False, "one_by_one"), (True, "batching")):
            port = edges[batching][1]
            drained_s = wait_until_idle(port)
            t_start = time.monotonic() + 0.5
            cmds = [{"id": i, "port": port, "closed_loop": True, "t_start": t_start, "duration_s": opts.duration_s,
                     "link_rate_bps": opts.link_rate_bps, "link_delay_ms": opts.link_delay_ms} for i in range(n)]
            s = summarise_capacity(pool.run(cmds, opts.duration_s + 120.0), opts)
            load.append(os.getloadavg()[0])
            s["load_average_1min"] = round(load[-1], 2)
            s["edge_drain_before_s"] = round(drained_s, 2)
            per[key] = s
            log(f"capacity N={n} round {r + 1} {key:<10} {s.get('throughput_per_s', 0):7.1f} answers/s  "
                f"p95 {s.get('p95_ms', 0):7.1f} ms  mean batch {s.get('mean_batch_size_per_answer', 0):.1f}  "
                f"failed {s['failed']}  load {load[-1]:.2f}")
        out["rounds"].append(per)
    for key in ("one_by_one", "batching"):
        values = [per[key].get("throughput_per_s") for per in out["rounds"]]
        out[f"{key}_per_s"] = round(float(np.mean(values)), 2) if all(values) else None
    one, bat = out["one_by_one_per_s"], out["batching_per_s"]
    out["ratio"] = round(bat / one, 3) if one and bat else None
    return out


def checks(results: dict[str, dict[str, Any]], opts: FleetOptions, capacity: dict[str, Any] | None = None
           ) -> dict[str, Any]:
    """The issue's two bars: load-aware Edgent meets >= 99 % wherever device-only exits meet >= 99 %, and
    load-aware with batching serves >= 2x the edge throughput of one by one at the largest N; with a capacity
    test, also whether the batching edge's own capacity is >= 2x the one-by-one edge's."""
    out: dict[str, Any] = {}
    if capacity is not None:
        out["capacity_ratio_batching_over_one_by_one"] = capacity.get("ratio")
        out["batching_capacity_2x"] = bool(capacity.get("ratio") and capacity["ratio"] >= 2.0)
    where_ok = [n for n, r in results.items() if r.get("device-only", {}).get("met_share", 0) >= 0.99]
    if "edgent-load-aware" in opts.methods and "device-only" in opts.methods:
        out["device_only_meets_99_at_N"] = [int(n) for n in where_ok]
        out["load_aware_meets_99_where_device_only_does"] = all(
            results[n]["edgent-load-aware"].get("met_share", 0) >= 0.99 for n in where_ok)
    big = str(max(opts.devices))
    if {"edgent-load-aware", "edgent-load-aware-batching"} <= set(opts.methods):
        one = results[big]["edgent-load-aware"].get("edge_throughput_per_s", 0)
        bat = results[big]["edgent-load-aware-batching"].get("edge_throughput_per_s", 0)
        out[f"batching_throughput_ratio_at_N{big}"] = round(bat / one, 3) if one else None
        out["batching_serves_2x_at_largest_N"] = bool(one and bat >= 2 * one)
    return out
