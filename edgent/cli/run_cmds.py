"""``edgent run``: the Edgent device agent against any edge server (``edgent serve`` on another machine).

Per request it estimates the bandwidth and RTT, detects changes (BOCPD), reads the configuration map (or plans
with the static planner), co-infers with the edge and falls back on an on-device exit when the edge is slow or
gone (:mod:`edgent.runtime.agent`). Output: a live view (a terminal, without ``--json``), one JSON line per request
on stdout with ``--json``, the per-request records file with ``--records``, and a summary at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from edgent import argtypes
from edgent.errors import ConfigError


@dataclass
class RunOptions:
    """What ``edgent run`` was asked to do (see ``edgent run --help``)."""

    host: str
    port: int
    model: str
    deadline_ms: float
    policy: str = "edgent"
    source: str = "testsplit"
    rate_per_s: float | None = None
    count: int | None = None
    duration_s: float | None = None
    json_lines: bool = False
    records: str | None = None
    token: str | None = None
    codecs: tuple[str, ...] = ("float32",)
    device_profile: str | None = None
    edge_profile: str | None = None
    rtt_ms: float = 20.0
    link_shaper: str | None = None
    emulate_link_bps: float | None = None
    emulate_device: bool = False
    quick_profile: bool = False
    reprofile: bool = False
    random_weights: bool = False
    seed: int = 0
    live: bool | None = None


def parse_edge(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"--edge takes HOST:PORT, got {text!r}")
    return host.strip("[]"), argtypes.port()(port)


def options_from(args: argparse.Namespace) -> RunOptions:
    from edgent.plan.units import parse_duration_ms, parse_rate_bps

    host, port = args.edge
    return RunOptions(
        host=host, port=port, model=args.model,
        deadline_ms=parse_duration_ms(args.deadline, what="--deadline", allow_zero=False),
        policy=args.policy, source=args.source, rate_per_s=args.rate, count=args.count,
        duration_s=None if args.duration is None else parse_duration_ms(args.duration, what="--duration") / 1e3,
        json_lines=args.json, records=args.records, token=args.token or None,
        codecs=tuple(c.strip() for c in args.codecs.split(",") if c.strip()),
        device_profile=args.device_profile, edge_profile=args.edge_profile,
        rtt_ms=parse_duration_ms(args.rtt, what="--rtt"),
        link_shaper=None if args.link_shaper == "none" else args.link_shaper,
        emulate_link_bps=None if args.emulate_link is None else parse_rate_bps(args.emulate_link,
                                                                               what="--emulate-link"),
        emulate_device=args.emulate_device, quick_profile=args.quick_profile, reprofile=args.reprofile,
        random_weights=args.random_weights, seed=args.seed,
        live=None if args.live == "auto" else args.live == "on")


def advertised_files(o: RunOptions, chain: Any) -> tuple[str | None, str | None, str]:
    """The edge's latency model and the model card, as the edge advertises them in its handshake, saved under
    ``$EDGENT_CACHE/edges/HOST-PORT/`` for the table builder: (edge latency model path, card path, what was
    done). ``--edge-profile`` wins over the advertised model; an edge that cannot be reached or advertises
    nothing leaves the shipped defaults."""
    from edgent.data.cifar10 import cache_dir
    from edgent.jsonio import write_json_file
    from edgent.runtime import AppLink, DeviceClient

    link = None if o.emulate_link_bps is None else AppLink(delay_ms=o.rtt_ms, rate_bps=o.emulate_link_bps)
    client = DeviceClient(o.host, o.port, chain, token=o.token, link=link, client_name="edgent-run")
    client.advertise = True
    try:
        client.connect(force=True)
    finally:
        client.close()
    ad = (client.advertised or {}).get("models", {}).get(o.model)
    if not isinstance(ad, dict):
        return o.edge_profile, None, (f"the edge at {o.host}:{o.port} advertised no latency model or card for "
                                      f"{o.model} ({client.last_connect_error or 'an older edge'}): using "
                                      + (o.edge_profile or "the shipped edge fit") + " and the local card")
    folder = cache_dir() / "edges" / f"{o.host}-{o.port}"
    edge_profile, card, got = o.edge_profile, None, []
    if o.edge_profile is None and isinstance(ad.get("edge_latency_model"), dict):
        edge_profile = str(write_json_file(folder / "edge_latency_model.json", ad["edge_latency_model"]))
        got.append("its latency model")
    if isinstance(ad.get("card"), dict):
        card = str(write_json_file(folder / f"{o.model}.card.json", ad["card"]))
        got.append("the model card")
    return edge_profile, card, (f"the edge at {o.host}:{o.port} advertised {' and '.join(got) or 'nothing usable'}"
                                + (f" (saved in {folder})" if got else ""))


def latency_model_timing(path: str | None, role: str = "device") -> str:
    """How the latency model in ``path`` (a measured profile or a fitted predictor; None: the shipped fit of
    ``role``) was timed: ``"wall clock"`` or ``"EMULATED: ..."`` (``"unknown"`` when the file does not say)."""
    from edgent.profile.throttle import DeviceEmulation

    if path is None:
        from edgent.latency.predictor import FITTED_DIR

        path = str(FITTED_DIR / f"{role}.json")
    try:
        doc = json.loads(open(path).read())
    except (OSError, ValueError):
        return "unknown"
    if isinstance(doc.get("timed_on"), str):
        return doc["timed_on"]
    try:
        return DeviceEmulation.from_json(doc["emulation"]).timed_on()
    except (KeyError, TypeError, ValueError, ConfigError):
        return "unknown"


def device_latency_model(o: RunOptions, chain: Any, say: Any) -> tuple[str | None, str]:
    """The device's latency model for the tables: (path or None for the shipped fit, how it was timed).
    ``--device-profile`` wins; an emulated device takes the shipped fit (the emulated device's); a real device
    its own profile, from this machine's cache or measured now (:func:`edgent.profile.selfprofile.device_profile`;
    the first lines of the output say which and how long it took)."""
    if o.device_profile is not None:
        timing = latency_model_timing(o.device_profile)
        say(f"device latency model: {o.device_profile} (timing: {timing})")
        return o.device_profile, timing
    if o.emulate_device:
        timing = latency_model_timing(None)
        say(f"device latency model: the shipped fit of the emulated device (timing: {timing})")
        return None, timing
    from edgent.profile.selfprofile import device_profile

    prof = device_profile(chain, quick=o.quick_profile, refresh=o.reprofile, progress=say)
    say(prof.describe())
    return str(prof.path), prof.timed_on


def run_agent(o: RunOptions) -> int:
    """Set up and run the agent; prints the summary; 0 when every request was answered."""
    import contextlib

    import torch
    from rich.console import Console

    from edgent.adapt.config_map import Candidates
    from edgent.adapt.training import map_for
    from edgent.data.sources import open_source
    from edgent.model.card import resolve_accuracies
    from edgent.model.zoo import load_for_inference
    from edgent.plan.sources import table_for_model
    from edgent.runtime import AppLink, BandwidthEstimator, DeviceClient
    from edgent.runtime.agent import AgentOptions, EdgentAgent

    if o.count is None and o.duration_s is None and o.source in ("testsplit", "synthetic"):
        raise ConfigError("give --count N or --duration S (the test split and synthetic inputs repeat forever)")
    err = Console(stderr=True, soft_wrap=True)  # paths and records stay on one line
    out = Console(stderr=o.json_lines)
    say = err.print
    chain = load_for_inference(o.model, random_weights=o.random_weights, seed=o.seed)
    edge_profile, card, edge_said = advertised_files(o, chain)
    say(edge_said)
    accs = resolve_accuracies(o.model, None, card, num_exits=chain.num_exits)
    device_model, model_timing = device_latency_model(o, chain, say)
    tables = [table_for_model(o.model, device_profile=device_model, edge_profile=edge_profile, codec=c,
                              accuracies=list(accs.values)) for c in o.codecs]
    cands = Candidates(tables)
    say(f"model {o.model}: {chain.num_exits} exits, accuracies from {accs.source}; latency tables: device "
        f"{device_model or 'the shipped fit'}, edge {edge_profile or 'the shipped fit'}")
    cmap = None
    if o.policy == "edgent":
        cmap, how = map_for(cands, o.deadline_ms, o.rtt_ms, o.seed)
        say(how)
    source = open_source(o.source, chain.input_shape, o.seed)
    say(f"inputs: {source.description}")
    slowdown = None
    stack = contextlib.ExitStack()
    if o.emulate_device:
        from edgent.profile.device import DeviceThrottle

        slowdown = stack.enter_context(DeviceThrottle())
        torch.set_num_threads(1)
        device_timing = f"EMULATED: {slowdown.describe()}"
    else:
        device_timing = "wall clock"
    say(f"device: this machine, timing: {device_timing}")
    link = None
    if o.emulate_link_bps is not None:
        link = AppLink(delay_ms=o.rtt_ms, rate_bps=o.emulate_link_bps)
        say(f"link: EMULATED in this process, {o.emulate_link_bps / 1e6:g} Mbit/s, {o.rtt_ms:g} ms RTT")
    shaper = o.link_shaper if o.emulate_link_bps is None else "app"
    client = DeviceClient(o.host, o.port, chain, token=o.token, link=link, slowdown=slowdown,
                          estimator=BandwidthEstimator(shaper=shaper), device_exit_ms=tables[0].fallback_device_ms(),
                          exit_accuracy={i + 1: float(a) for i, a in enumerate(accs.values)}, client_name="edgent-run")
    aopts = AgentOptions(deadline_ms=o.deadline_ms, policy=o.policy, prior_rtt_ms=o.rtt_ms,
                         device_timing=device_timing)
    with stack, client, EdgentAgent(client, cands, aopts, cmap, records=o.records) as agent:
        say(f"edge {o.host}:{o.port}: " + ("connected" if client.connected else
                                           f"not reachable yet ({client.last_connect_error}); requests run on the "
                                           "device until it is"))
        from rich.live import Live

        from edgent.runtime.liveview import AgentLiveView, NoLive

        live_on = err.is_terminal and not o.json_lines if o.live is None else o.live
        every = 1 if o.live is False else 20  # plain lines: every request with --live off, else every 20th
        view = AgentLiveView.for_candidates(f"edgent run: {o.model} -> {o.host}:{o.port}, policy {o.policy}, "
                                            f"deadline {o.deadline_ms:g} ms", o.deadline_ms, cands)

        def show(rec: dict[str, Any]) -> None:
            if o.json_lines:
                p = rec["prediction"]
                sys.stdout.write(json.dumps({"seq": rec["seq"], "class": p["class"], "confidence": p["confidence"],
                                             "exit": p["exit"], "where": rec["where"], "total_ms": rec["total_ms"],
                                             "met": rec["met"]}) + "\n")
                sys.stdout.flush()
            view.update(rec)
            if live_on:
                live.update(view.panel(), refresh=True)
            elif rec["seq"] % every == 0:
                say(view.line(), markup=False, highlight=False)

        with Live(view.panel(), console=err, auto_refresh=False, transient=False) if live_on else NoLive() as live:
            try:
                stats = agent.run(source, show, o.rate_per_s, o.count, o.duration_s)
            except KeyboardInterrupt:
                stats = agent.stats
                say("[yellow]interrupted[/yellow]")
        if live_on:
            err.print()
    summary = {"policy": o.policy, "deadline_ms": o.deadline_ms, "device": "emulated" if o.emulate_device else "real",
               "device_timing": device_timing, "device_latency_model": device_model or "shipped fit",
               "device_latency_model_timing": model_timing,
               "link": "emulated" if o.emulate_link_bps is not None else "real", **stats.to_json()}
    if o.json_lines:
        sys.stderr.write(json.dumps({"summary": summary}) + "\n")  # one line, not wrapped: machine-readable
    else:
        out.print(f"{summary['requests']} requests, {100 * summary['met_share']:.1f} % met {o.deadline_ms:g} ms; "
                  f"{summary['fallbacks']} fallbacks ({summary['fallbacks_met']} met), {summary['switches']} "
                  f"switches, {summary['changes_detected']} changes detected, exits used {summary['exits_used']}; "
                  f"card accuracy of the exits used {summary['mean_card_accuracy_of_exits_used'] or 0:.3f}"
                  + ("" if summary["measured_accuracy"] is None
                     else f", measured accuracy {summary['measured_accuracy']:.3f}"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    return run_agent(options_from(args))


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.runtime.agent import POLICIES

    p = sub.add_parser("run", help="the Edgent device agent against an edge server (edgent serve elsewhere)",
                       description=__doc__)
    p.add_argument("--edge", type=parse_edge, required=True, help="the edge server, HOST:PORT")
    p.add_argument("--model", default="alexnet-cifar10", help="zoo model (the edge must serve it)")
    p.add_argument("--deadline", required=True, help="latency requirement per request, e.g. 200ms")
    p.add_argument("--policy", choices=POLICIES, default="edgent",
                   help="edgent (map + BOCPD), static (planner at the estimate), edge-only, device-only, neurosurgeon")
    p.add_argument("--source", default="testsplit",
                   help="testsplit, synthetic, stdin (raw RGB frames of the input size), camera[:N], a folder of "
                        "images, or a video file (camera and video need OpenCV)")
    p.add_argument("--rate", type=argtypes.number(0.0), default=None,
                   help="requests per second (default: back to back)")
    p.add_argument("--count", type=argtypes.integer(1), default=None, help="stop after N requests")
    p.add_argument("--duration", default=None, help="stop after this long, e.g. 60s")
    p.add_argument("--json", action="store_true", help="one JSON line per prediction on stdout")
    p.add_argument("--records", type=argtypes.new_file("records file"), default=None,
                   help="append one JSON record per request to this file")
    p.add_argument("--token", default=None, help="the edge's shared token")
    p.add_argument("--codecs", default="float32", help="codecs of the intermediate tensor to plan with, e.g. "
                   "float32,int8")
    p.add_argument("--device-profile", default=None,
                   help="the device's latency model (a measured profile or a fitted predictor, JSON); default: "
                        "this machine's own profile, cached, measured on the first run")
    p.add_argument("--quick-profile", action="store_true",
                   help="when the device profiles itself: a quick profile (fewer repetitions; cached apart)")
    p.add_argument("--reprofile", action="store_true", help="profile the device again even when cached")
    p.add_argument("--edge-profile", default=None, help="the edge's fitted latency model (JSON)")
    p.add_argument("--rtt", default="20ms", help="round-trip time assumed before it is measured")
    p.add_argument("--link-shaper", choices=("none", "app", "packets"), default="none",
                   help="a token-bucket shaper on the link whose burst the bandwidth samples correct for "
                        "(packets: tc tbf on a veth, as the testbed)")
    p.add_argument("--emulate-link", default=None, help="emulate a link of this rate in this process (testing)")
    p.add_argument("--emulate-device", action="store_true",
                   help="emulate the weak device role (slowdown) instead of timing this machine as it is")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (testing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--live", choices=("auto", "on", "off"), default="auto",
                   help="a live view (on; auto: on a terminal without --json) or plain lines (off: one per request)")
    p.set_defaults(func=cmd_run)
