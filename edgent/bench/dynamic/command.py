"""``edgent bench dynamic`` on the command line: options to :class:`DynamicOptions`, the run, the table."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from edgent.bench.dynamic.options import DynamicOptions
from edgent.bench.record import add_common_options, common_options, emit, write_result
from edgent.errors import ConfigError

QUICK_MAX_FILES = 6


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def options_from_args(args: argparse.Namespace) -> DynamicOptions:
    """The command line's options as a :class:`DynamicOptions`."""
    from edgent.model.card import parse_accuracies

    common = common_options(args)
    max_files = args.max_files or (QUICK_MAX_FILES if common.quick else 0)
    return DynamicOptions(
        traces=args.traces, scale=args.scale, model=args.model, deadline_ms=args.deadline_ms,
        period_ms=args.period_ms, rtt_ms=args.rtt_ms, warmup_s=args.warmup_s, table_source=args.table_source,
        device_slowdown=args.device_slowdown, accuracies=parse_accuracies(args.accuracies),
        codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()), train_every=args.train_every,
        codec_variants=args.codec_variants,
        max_files=max_files, bin_width=args.bin_width, last_edges=_floats(args.last_edges, "--last-edges"),
        met_target=args.met_target, smooth_bins=args.smooth_bins, w_min=args.w_min, hysteresis=args.hysteresis,
        name=args.name, testbed_seconds=args.testbed_seconds, emulate=args.emulate, common=common)


def _cmd(args: argparse.Namespace) -> int:
    from edgent.bench.dynamic.run import run_benchmark

    opts = options_from_args(args)
    result = run_benchmark(opts)
    path = write_result(opts.result_name, result, opts.common.out_dir)
    emit(result, path, opts.common, _print_table)
    print(f"plot: {result['plot']}", file=sys.stderr if opts.common.json else sys.stdout)
    return 0


def _print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"{result['model']} on {result['traces']['dir']} (x{result['traces']['scale']:g}), "
                      f"deadline {result['deadline_ms']:g} ms, held-out traces")
    tab.add_column("method", no_wrap=True)
    for col in ("met %", "met % where oracle meets", "accuracy %", "throughput rps", "decision us"):
        tab.add_column(col, justify="right")
    for m, s in result["methods"].items():
        w = s.get("met_share_where_oracle_meets")
        tab.add_row(m, f"{100 * s['deadline_met_share']:.2f}", "-" if w is None else f"{100 * w:.2f}",
                    f"{100 * s['mean_accuracy']:.2f}", f"{s['throughput_rps']:.1f}", f"{s['decision_us_mean']:.1f}")
    Console().print(tab)
    sc = result["step_cost"]
    m = sc.get("map", {})
    print(f"detection + lookup step (map hits, {100 * sc['map_hit_share']:.1f}% of steps): median "
          f"{m.get('median_us', float('nan')):.1f} us, p99 {m.get('p99_us', float('nan')):.1f} us")


def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("dynamic", help="dynamic configurator vs baselines on held-out bandwidth traces "
                                             "(simulation)")
    p.add_argument("--traces", required=True, help="folder of trace files (cooked text, Belgium JSON or Mahimahi)")
    p.add_argument("--scale", type=float, default=1.0, help="multiply every trace rate by this (default 1)")
    p.add_argument("--model", default="alexnet-cifar10", help="zoo model (default alexnet-cifar10)")
    p.add_argument("--deadline-ms", type=float, default=300.0, help="latency requirement (default 300)")
    p.add_argument("--period-ms", type=float, default=500.0, help="one request every this many ms (default 500)")
    p.add_argument("--rtt-ms", type=float, default=20.0, help="round-trip time of the link (default 20)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="first request at this time of each trace")
    p.add_argument("--table-source", default="auto",
                   help="latency tables: auto|predictor|measure|PATH of a saved table (default auto)")
    p.add_argument("--device-slowdown", type=float, default=10.0,
                   help="with --table-source measure: device = this CPU's unit times x this (default 10)")
    p.add_argument("--accuracies", default="", help="per-exit top-1 a1,a2,... (default: the model card)")
    p.add_argument("--codecs", default="float32", help="codecs of the intermediate tensor, comma-separated")
    p.add_argument("--codec-variants", default="none",
                   help="further codecs every method (oracle and baselines too) may choose: none (the default), "
                        "card (every codec the model card has a measured accuracy for: JPEG input, int8, the "
                        "learned bottleneck, ...) or a comma-separated list")
    p.add_argument("--train-every", type=int, default=2, help="file i builds the map when i %% K == 0 (default 2)")
    p.add_argument("--max-files", type=int, default=0, help="use only the first N files (sorted), 0 = all")
    p.add_argument("--bin-width", type=float, default=0.1, help="map bin width of log-throughput (default 0.1)")
    p.add_argument("--last-edges", default="",
                   help="map cells also by the latest sample's offset from the state mean, cut at these log "
                        "offsets, e.g. -0.2,0.2 (default: none, the paper's (mean, spread) state)")
    p.add_argument("--met-target", type=float, default=0.995,
                   help="map reward: share of servable training requests that must meet the deadline (default "
                        "0.995); 1 = deadline strictly first")
    p.add_argument("--smooth-bins", type=int, default=1,
                   help="map: pool each state's training requests with those within K mean bins (default 1)")
    p.add_argument("--w-min", type=float, default=1.0,
                   help="map reward: lowest deadline weight W (default 1: a met deadline outweighs any accuracy "
                        "difference on one request; below 1 that order is no longer strict, for ablations)")
    p.add_argument("--hysteresis", type=float, default=0.5, help="bin widths a state may stray (default 0.5)")
    p.add_argument("--name", default="", help="result name (default dynamic-<traces folder>)")
    p.add_argument("--testbed-seconds", type=float, default=0.0,
                   help="also run the first S seconds of one held-out trace on the real testbed (shaped link, "
                        "edge server, slowed device), every method, and compare with the simulation (default 0: "
                        "simulation only)")
    p.add_argument("--emulate", action="store_true", help="with --testbed-seconds: the emulated link even as root")
    add_common_options(p, "only the first 6 trace files (a smoke run; figures are not comparable)")
    p.set_defaults(func=_cmd)
