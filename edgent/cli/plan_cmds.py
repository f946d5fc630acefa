"""``edgent plan``: the static configurator on the command line (which exit and partition to use)."""

from __future__ import annotations

import argparse
import json

from edgent.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.plan.planner import POLICIES
    from edgent.plan.transfer import CODECS

    p = sub.add_parser("plan", help="pick the exit point and partition point for a bandwidth and a deadline",
                       description="Plan one request: the exit and partition point that meet the deadline with the "
                                   "best accuracy (Edgent), or a baseline policy's choice. Rates in bit/s with a unit "
                                   "(bit, kbit, Mbit, Gbit, optional /s), times with a unit (us, ms, s).")
    p.add_argument("--model", default=None, help="zoo model or model folder (default: alexnet-cifar10, or the "
                   "--table's model)")
    p.add_argument("--bandwidth", required=True, help="uplink rate device -> edge, e.g. 400kbit or 2Mbit/s")
    p.add_argument("--downlink", default=None, help="downlink rate edge -> device (default: same as --bandwidth)")
    p.add_argument("--deadline", required=True, help="latency requirement, e.g. 300ms")
    p.add_argument("--rtt", default="0ms", help="round-trip time of the link (default 0ms)")
    p.add_argument("--queue", default="0ms", help="expected queueing delay at the edge (default 0ms)")
    p.add_argument("--policy", default="edgent", choices=POLICIES)
    p.add_argument("--codec", default=None, choices=CODECS, help="codec of the intermediate tensor (default float32)")
    p.add_argument("--device-profile", default=None,
                   help="device latency model: a fitted predictor, or a measured profile of this model (edgent "
                        "profile --model M --role device); default: the model folder's, else the fitted one")
    p.add_argument("--edge-profile", default=None, help="edge latency model (as --device-profile)")
    p.add_argument("--device-runtime", default=None, choices=("torch", "onnx"),
                   help="what runs the device part: eager PyTorch (default) or ONNX Runtime (plans with the model "
                        "folder's device-onnx profile)")
    p.add_argument("--codecs", default="card",
                   help="codecs the plan may choose besides --codec: 'card' (every codec the model card has a "
                        "measured accuracy for; the default), 'none', or a comma-separated list")
    p.add_argument("--card", default=None, help="model card with per-exit accuracy (default: the zoo's card)")
    p.add_argument("--accuracies", default=None, help="comma-separated top-1 per exit, instead of a card")
    p.add_argument("--table", default=None, help="plan from a saved latency table (JSON) instead of the models")
    p.add_argument("--save-table", default=None, help="write the latency table used to this JSON file")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=_plan)


def _codec_list(text: str | None) -> str | list[str] | None:
    if text is None or text in ("card", "none"):
        return text
    return [c.strip() for c in text.split(",") if c.strip()]


def table_with_accuracies(args: argparse.Namespace):
    """The saved table of ``--table``, with ``--accuracies`` or ``--card`` applied (resolved by the one
    accuracy resolution, for the table's model and exit count); options a saved table cannot honour are errors."""
    import dataclasses

    from edgent.model.card import parse_accuracies, resolve_accuracies
    from edgent.plan.table import LatencyTable

    for opt, value, why in (("--device-profile", args.device_profile, "its device times are in the table"),
                            ("--edge-profile", args.edge_profile, "its edge times are in the table"),
                            ("--device-runtime", args.device_runtime, "its device times were priced for one runtime")):
        if value is not None:
            raise ConfigError(f"{opt} cannot apply to --table {args.table} ({why}); drop {opt}, or drop --table to "
                              "build the table from the latency models")
    table = LatencyTable.load(args.table)
    if args.model is not None:
        from edgent.model.zoo import model_name

        if model_name(args.model) != table.model:
            raise ConfigError(f"--table {args.table} is for model {table.model!r}, not {args.model!r}; drop --model "
                              "or give that model's table")
    if args.codec is not None and args.codec != table.codec:
        raise ConfigError(f"--codec {args.codec} cannot apply to --table {args.table}, which was built for codec "
                          f"{table.codec}; rebuild it with `edgent plan --model M --codec {args.codec} --save-table F`")
    accs = parse_accuracies(args.accuracies)
    if accs is None and args.card is None:
        return table
    resolved = resolve_accuracies(args.model or table.model, accs, args.card, num_exits=len(table.exits))
    return dataclasses.replace(table, exits=tuple(dataclasses.replace(e, accuracy=float(a))
                                                  for e, a in zip(table.exits, resolved.values)))


def _plan(args: argparse.Namespace) -> int:
    from edgent.model.card import parse_accuracies
    from edgent.plan.link import Link
    from edgent.plan.planner import Planner
    from edgent.plan.sources import table_for_model
    from edgent.plan.table import LatencyTable
    from edgent.plan.units import format_rate, parse_duration_ms, parse_rate_bps

    uplink = parse_rate_bps(args.bandwidth, what="--bandwidth")
    downlink = parse_rate_bps(args.downlink, what="--downlink") if args.downlink is not None else uplink
    deadline = parse_duration_ms(args.deadline, what="--deadline", allow_zero=False)
    link = Link(uplink, downlink, parse_duration_ms(args.rtt, what="--rtt"))
    queue = parse_duration_ms(args.queue, what="--queue")
    if args.table is not None:
        table = table_with_accuracies(args)
    else:
        table = table_for_model(args.model or "alexnet-cifar10", device_profile=args.device_profile,
                                edge_profile=args.edge_profile, codec=args.codec or "float32",
                                accuracies=parse_accuracies(args.accuracies), card=args.card,
                                codecs=_codec_list(args.codecs), device_runtime=args.device_runtime or "torch")
    if args.save_table:
        table.save(args.save_table)
    plan = Planner(table).plan(link, deadline, args.policy, edge_queue_ms=queue)
    if args.json:
        print(json.dumps({**plan.to_json(), "link": link.to_json()}))
        return 0
    b = plan.breakdown
    n = table.exit_costs(plan.exit).num_units
    status = "meets" if plan.feasible else "MISSES"
    where = ("edge only" if plan.partition == 0 else "device only" if plan.partition == n
             else f"device runs units 0..{plan.partition - 1}, edge the rest")
    print(f"{table.model}, {args.policy}: exit {plan.exit}, partition {plan.partition}/{n} ({where}), "
          f"codec {plan.codec}, accuracy {plan.accuracy:.3f}")
    print(f"predicted {plan.predicted_ms:.1f} ms, {status} the deadline {deadline:g} ms at "
          f"{format_rate(uplink)} up / {format_rate(downlink)} down, rtt {link.rtt_ms:g} ms")
    print(f"  device {b.device_ms:.2f} | upload {b.upload_ms:.2f} | edge {b.edge_ms:.2f} | download "
          f"{b.download_ms:.2f} | rtt {b.rtt_ms:.2f} | serialization {b.serialization_ms:.3f} | queue {b.queue_ms:.2f}")
    if plan.reason:
        print(plan.reason)
    return 0
