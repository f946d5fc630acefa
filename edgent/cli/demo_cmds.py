"""``edgent demo``: Edgent end to end on the testbed (see ``docs/demo.md``)."""

from __future__ import annotations

import argparse

from edgent import argtypes


def _cmd(args: argparse.Namespace) -> int:
    from edgent.demo import DemoOptions, run_demo
    from edgent.model.card import parse_accuracies

    opts = DemoOptions(
        duration_s=args.duration, deadline_ms=args.deadline, trace=args.trace, scale=args.scale,
        trace_start_s=args.trace_start, period_ms=args.period, rtt_ms=args.rtt, seed=args.seed,
        emulate=args.emulate, out_dir=args.out, accuracies=parse_accuracies(args.accuracies),
        random_weights=args.random_weights, synthetic_inputs=args.synthetic_inputs,
        live={"auto": None, "on": True, "off": False}[args.live],
        synthetic_map=args.synthetic_map, port=args.port, codecs=args.codecs)
    run_demo(opts)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="Edgent live: a slowed device, an edge server, a changing link, a deadline",
                       description="Set up the testbed (network namespace + tc as root, else an emulated link), "
                                   "start the edge server, replay a bandwidth trace on the link and co-infer "
                                   "with Edgent's dynamic configurator; live view, summary against the baselines "
                                   "and an HTML report.")
    positive, non_negative = argtypes.number(0.0), argtypes.number(0.0, allow_low=True)
    p.add_argument("--duration", type=positive, default=60.0, help="seconds of trace to run (default 60)")
    p.add_argument("--deadline", type=positive, default=300.0, help="latency requirement in ms (default 300)")
    p.add_argument("--trace", default=None, type=argtypes.existing_file("the trace file"),
                   help="bandwidth trace file (Norway 3G text, Belgium 4G JSON, Mahimahi; default: the built-in "
                        "synthetic trace)")
    p.add_argument("--scale", type=positive, default=1.0, help="multiply the trace's rates by this (default 1)")
    p.add_argument("--trace-start", type=non_negative, default=0.0, help="start this many seconds into --trace")
    p.add_argument("--period", type=positive, default=300.0, help="one request every this many ms (default 300)")
    p.add_argument("--rtt", type=non_negative, default=20.0, help="round-trip delay of the link in ms (default 20)")
    p.add_argument("--seed", type=argtypes.integer(0), default=0, help="seed of the built-in trace and the input order")
    p.add_argument("--emulate", action="store_true", help="use the emulated link even as root")
    p.add_argument("--out", default=None, help="report folder (default runs/demo-<UTC time>)")
    p.add_argument("--accuracies", default="", help="per-exit top-1 a1,..,a5 instead of the model card "
                                                    "(shown as assumed)")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights on both sides")
    p.add_argument("--synthetic-inputs", action="store_true", help="random images instead of CIFAR-10")
    p.add_argument("--live", choices=("auto", "on", "off"), default="auto",
                   help="live view (auto: when the output is a terminal; otherwise a line every 5 s)")
    p.add_argument("--synthetic-map", action="store_true",
                   help="with --trace: build the maps from synthetic traces only (default: also the other files "
                        "of the trace's folder)")
    p.add_argument("--port", type=argtypes.port(), default=8470, help="edge port in the namespace (default 8470)")
    p.add_argument("--codecs", default="card",
                   help="codecs the configurator may choose: card (every codec the model card has a measured "
                        "accuracy for: JPEG input, int8 cuts, the learned bottleneck; the default), none, or a list")
    p.set_defaults(func=_cmd)
