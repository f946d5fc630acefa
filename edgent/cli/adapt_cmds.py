"""``edgent map build`` / ``edgent map show``: the dynamic configurator's configuration map (see docs/dynamic.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgent.errors import EdgentError


def _build(args: argparse.Namespace) -> int:
    from edgent.adapt.config_map import Candidates, MapReward, StateGrid, build_config_map
    from edgent.adapt.detectors import make_detector
    from edgent.adapt.traces import load_trace_dir
    from edgent.model.card import parse_accuracies, resolve_accuracies
    from edgent.plan.sources import latency_tables

    traces = load_trace_dir(args.traces)
    if args.scale != 1.0:
        traces = [t.scaled(args.scale) for t in traces]
    model, num_exits = _map_model(args)
    resolved = resolve_accuracies(model, parse_accuracies(args.accuracies), args.card, num_exits=num_exits)
    accs, acc_source = list(resolved.values), resolved.source
    codecs = [c.strip() for c in args.codecs.split(",") if c.strip()]
    tables, spec = latency_tables(model, codecs, args.table_source, accs, args.device_slowdown)
    cands = Candidates(tables)
    info = {"detector": args.detector, "traces_dir": str(args.traces), "scale": args.scale,
            "accuracy_source": acc_source, "latency_table": {"source": spec.source, **spec.detail}}
    m = build_config_map(traces, cands, args.deadline_ms, lambda: make_detector(args.detector),
                         StateGrid(mean_step=args.bin_width), MapReward(met_target=args.met_target),
                         args.period_ms / 1e3, args.rtt_ms, args.warmup_s, info, args.smooth_bins)
    path = m.save(args.out)
    print(f"wrote {path}: {m.filled_cells} states, {len(m.configs)} distinct configurations, deadline weight "
          f"W = {m.info['deadline_weight']:.3g} (training met share {m.info['train_met_share_of_servable']:.4f})")
    return 0


def _map_model(args: argparse.Namespace) -> tuple[str, int]:
    """The model the map is for, and its exit count: --model, or the model of the saved table --table-source
    names (whose accuracies then come from --accuracies, --card, or that model's own card: never another's)."""
    from edgent.errors import ConfigError
    from edgent.model.zoo import load_model, model_name

    if args.table_source in ("auto", "predictor", "measure"):
        model = args.model or "alexnet-cifar10"
        return model, load_model(model, pretrained=False).num_exits
    from edgent.plan.table import LatencyTable

    table = LatencyTable.load(args.table_source)
    if args.model is not None:
        if model_name(args.model) != table.model:
            raise ConfigError(f"--table-source {args.table_source} is a table of {table.model!r}, not of "
                              f"{args.model!r}; drop --model or give that model's table")
        return args.model, len(table.exits)
    if not args.accuracies and args.card is None:
        try:
            model_name(table.model)
        except EdgentError:
            raise ConfigError(f"--table-source {args.table_source} is a table of {table.model!r}, which is not in "
                              f"the zoo: give its model folder with --model DIR, its card with --card F or its "
                              f"accuracies with --accuracies A1,A2,...") from None
    return table.model, len(table.exits)


def _show(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from edgent.adapt.config_map import ConfigurationMap

    m = ConfigurationMap.load(args.map)
    tab = Table(title=f"{args.map}: {m.model}, deadline {m.deadline_ms:g} ms, {m.filled_cells} states")
    for col in ("rate kbit/s", "spread (log)", "requests", "exit", "partition", "codec"):
        tab.add_column(col, justify="right")
    for c in m.to_json()["cells"]:
        cfg = m.configs[c["config"]]
        tab.add_row(f"{c['rate_lo_bps'] / 1e3:.0f}-{c['rate_hi_bps'] / 1e3:.0f}",
                    f"{c['std_lo']:.2f}-{c['std_hi']:.2f}",
                    str(c["requests"]), str(cfg.exit), str(cfg.partition), cfg.codec)
    Console().print(tab)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("map", help="build or show the dynamic configurator's configuration map")
    msub = p.add_subparsers(dest="map_command", metavar="ACTION")
    msub.required = True
    b = msub.add_parser("build", help="build a configuration map from bandwidth traces")
    b.add_argument("--traces", required=True, type=Path, help="folder of trace files (all are used)")
    b.add_argument("--scale", type=float, default=1.0, help="multiply every trace rate by this")
    b.add_argument("--model", default=None, help="zoo model or model folder (default: alexnet-cifar10, or the model of "
                   "the --table-source table)")
    b.add_argument("--card", default=None, help="model card with per-exit accuracy (default: the model's own)")
    b.add_argument("--deadline-ms", type=float, required=True)
    b.add_argument("--period-ms", type=float, default=500.0, help="request period along the traces")
    b.add_argument("--rtt-ms", type=float, default=20.0)
    b.add_argument("--warmup-s", type=float, default=5.0)
    b.add_argument("--table-source", default="auto", help="auto|predictor|measure|PATH of a saved latency table")
    b.add_argument("--device-slowdown", type=float, default=10.0)
    b.add_argument("--accuracies", default="", help="per-exit top-1 a1,a2,... (default: the model card)")
    b.add_argument("--codecs", default="float32")
    b.add_argument("--detector", default="bocpd", choices=("bocpd", "page-hinkley"))
    b.add_argument("--bin-width", type=float, default=0.1)
    b.add_argument("--met-target", type=float, default=0.995)
    b.add_argument("--smooth-bins", type=int, default=1)
    b.add_argument("--out", required=True, type=Path, help="where to write the map JSON")
    b.set_defaults(func=_build)
    s = msub.add_parser("show", help="print a configuration map")
    s.add_argument("map", type=Path)
    s.set_defaults(func=_show)
