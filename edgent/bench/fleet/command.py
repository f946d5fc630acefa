"""The command line of ``edgent bench fleet``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgent import argtypes


def _print_table(result: dict[str, Any]) -> None:
    for n, per in result["results"].items():
        for m, s in per.items():
            print(f"N={n:>2} {m:<27} met {s.get('met_share', 0):.3f}  accuracy {s.get('accuracy') or 0:.3f}  "
                  f"edge {s.get('edge_throughput_per_s', 0):7.1f} req/s  p95 {s.get('p95_ms', 0):7.1f} ms")
    cap = result.get("capacity")
    if cap:
        for r, per in enumerate(cap["rounds"], start=1):
            for key in ("one_by_one", "batching"):
                s = per[key]
                print(f"capacity N={cap['clients']} round {r} {key:<10} {s.get('throughput_per_s', 0):7.1f} "
                      "answers/s  "
                      f"p95 {s.get('p95_ms', 0):7.1f} ms  mean batch {s.get('mean_batch_size_per_answer', 0):.1f}")
    print("checks:", result["checks"])


def run(args: argparse.Namespace) -> int:
    from edgent.bench.fleet.options import METHODS, FleetOptions
    from edgent.bench.fleet.plot import plot_fleet
    from edgent.bench.fleet.run import run_fleet
    from edgent.bench.record import common_options, emit, write_result
    from edgent.model.zoo import zoo_entry

    common = common_options(args)
    devices = tuple(int(x) for x in args.devices.split(",")) if args.devices else (
        (1, 2) if common.quick else (1, 2, 4, 8, 16, 32))
    methods = () if args.methods == "none" else tuple(args.methods.split(",")) if args.methods else tuple(METHODS)
    opts = FleetOptions(model=args.model, devices=devices, methods=methods,
                        rate_per_s=args.rate_per_s, duration_s=args.duration_s or (2.0 if common.quick else 20.0),
                        warmup_s=args.warmup_s if args.warmup_s is not None else (0.5 if common.quick else 4.0),
                        deadline_ms=args.deadline_ms, margin=args.margin, device_factor=args.device_factor,
                        link_rate_bps=args.link_rate_bps, link_delay_ms=args.link_delay_ms, backend=args.backend,
                        edge_threads=args.edge_threads, edge_torch_threads=args.edge_torch_threads,
                        edge_factor=args.edge_factor,
                        batch_window_ms=args.batch_window_ms, max_batch=args.max_batch, seed=args.seed,
                        device_profile=args.device_profile, edge_profile=args.edge_profile, capacity=args.capacity,
                        records_dir=Path(args.records_dir) if args.records_dir else None, out_dir=common.out_dir)
    entry = zoo_entry(args.model)
    random_weights = args.random_weights or entry.weights is None or not entry.weights.is_file()
    result = run_fleet(opts, random_weights, log=(lambda *_: None) if common.json else print)
    name = args.name or ("fleet-quick" if common.quick else "fleet")
    path = write_result(name, result, common.out_dir)
    plot_fleet(result, path.with_suffix(".png"))
    emit(result, path, common, _print_table)
    return 0


def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("fleet", help="many emulated devices against one edge: load-aware plans, batching")
    p.add_argument("--model", default="alexnet-cifar10")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights even if trained exist")
    p.add_argument("--devices", default="", help="fleet sizes, comma-separated (default 1,2,4,8,16,32; quick 1,2)")
    p.add_argument("--methods", default="",
                   help="methods, comma-separated (default: all five; none: only the capacity test)")
    p.add_argument("--capacity", action="store_true",
                   help="also measure each edge's capacity: the largest fleet in a closed loop (a request at the edge "
                        "at all times per device, edge only, no deadline), one by one and batching")
    p.add_argument("--device-profile", default=None,
                   help="the device's measured profile for the latency tables (edgent profile --model M --role "
                        "device --emulate --out F; default: the fitted latency model)")
    p.add_argument("--edge-profile", default=None,
                   help="the edge's measured profile for the latency tables (edgent profile --model M --role edge "
                        "--out F; default: the fitted latency model)")
    p.add_argument("--records-dir", default=None,
                   help="write each device's record per request (its plan, predicted and measured times, fallback "
                        "reason) as JSON lines under this folder, one file per N, method and device")
    p.add_argument("--name", default=None, help="results file name, without extension (default fleet; quick: "
                   "fleet-quick)")
    p.add_argument("--backend", default="local", help="passed to edgent serve --backend (default local)")
    p.add_argument("--rate-per-s", type=argtypes.number(0.0), default=8.0,
                   help="Poisson arrivals per device and second (default 8)")
    p.add_argument("--duration-s", type=argtypes.number(0.0), default=None,
                   help="length of each run (default 20; quick 2)")
    p.add_argument("--warmup-s", type=argtypes.number(0.0, allow_low=True), default=None,
                   help="first seconds of each run not counted (default 4; quick 0.5)")
    p.add_argument("--deadline-ms", type=argtypes.number(0.0), default=100.0, help="latency requirement (default 100)")
    p.add_argument("--margin", type=argtypes.number(0.0, allow_low=True, high=0.9), default=0.15,
                   help="share of the deadline plans keep in reserve (default 0.15)")
    p.add_argument("--device-factor", type=argtypes.number(1.0, allow_low=True), default=10.0,
                   help="each device is this many times slower than this host, on its thread's CPU time (default 10)")
    p.add_argument("--link-rate-bps", type=argtypes.number(0.0), default=20e6,
                   help="each device's emulated link rate, bit/s (default 2e7)")
    p.add_argument("--link-delay-ms", type=argtypes.number(0.0, allow_low=True), default=10.0,
                   help="each device's round-trip delay (default 10)")
    p.add_argument("--edge-threads", type=argtypes.integer(1), default=1, help="edgent serve --threads (default 1)")
    p.add_argument("--edge-torch-threads", type=argtypes.integer(1), default=1,
                   help="edgent serve --torch-threads (default 1)")
    p.add_argument("--edge-factor", type=argtypes.number(1.0, allow_low=True), default=1.0,
                   help="the edge is this many times slower than this host, on its computations' thread CPU time "
                        "(edgent serve --slowdown; default 1)")
    p.add_argument("--batch-window-ms", type=argtypes.number(0.0, allow_low=True), default=5.0,
                   help="the batching edge's window (default 5)")
    p.add_argument("--max-batch", type=argtypes.integer(1), default=32, help="the batching edge's largest batch")
    p.add_argument("--seed", type=argtypes.integer(0), default=0)
    add_common_options(p, "fleet sizes 1 and 2, 2 s runs (a smoke test)")
    p.set_defaults(func=run)
