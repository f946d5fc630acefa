"""``edgent demo``: the Edgent device agent (``edgent run``'s) driving a slowed device through a changing link, live.

One run (see ``docs/demo.md``):

1. The scenario (:mod:`edgent.demo.scenario`): latency tables from the fitted latency models, the model card's
   accuracies, configuration maps built from other traces than the replayed one.
2. The bed (:class:`edgent.testbed.bed.CoInferenceBed`): the link (a network namespace behind a ``tc
   tbf``-shaped veth as root, else the emulated link, said in the output and the report), the slowed device, a
   real ``edgent serve`` process on the edge side and the device's client.
3. The measured run (:mod:`edgent.demo.loop`): the trace is replayed on the link; every period the device agent
   (:class:`edgent.runtime.agent.EdgentAgent` with the BOCPD configuration map, the same code as ``edgent run``)
   serves one CIFAR-10 test image (or a synthetic input): it decides (exit, partition, codec), co-infers with the
   edge, falls back, learns and records. A live view shows it (:mod:`edgent.demo.live`).
4. The baselines on the same trace and request times, in simulation, labelled so (:mod:`edgent.demo.summary`),
   and the report folder (:mod:`edgent.demo.report`).
"""

from __future__ import annotations

import signal
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgent.demo.options import MODEL, DemoContext, DemoOptions, RunState
from edgent.errors import ConfigError, EdgentError
from edgent.testbed import MIN_REPLAY_BPS


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def check_options(opts: DemoOptions) -> None:
    """Reject options that cannot run, naming the option and the fix."""
    if not opts.duration_s > 0:
        raise ConfigError(f"--duration must be > 0 s, got {opts.duration_s}")
    if not opts.deadline_ms > 0:
        raise ConfigError(f"--deadline must be > 0 ms, got {opts.deadline_ms}")
    if not opts.period_ms > 0:
        raise ConfigError(f"--period must be > 0 ms, got {opts.period_ms}")


def load_trace_for(opts: DemoOptions, say: Any) -> Any:
    """The trace to replay: ``--trace`` (scaled, from ``--trace-start``) or the built-in synthetic one."""
    from edgent.demo.scenario import default_trace, file_trace

    scaled = f" scaled x{opts.scale:g}" if opts.scale != 1.0 else ""
    if opts.trace:
        trace = file_trace(opts.trace, opts.scale, opts.duration_s, opts.trace_start_s)
        say(f"trace: {opts.trace}{scaled}, {trace.end_s:g} s from {opts.trace_start_s:g} s")
        return trace
    trace = default_trace(opts.duration_s, opts.seed)
    if opts.scale != 1.0:
        trace = trace.scaled(opts.scale)
    say(f"trace: built-in synthetic piecewise trace (seed {opts.seed}{scaled.replace(' scaled', ', scaled')}), "
        f"{trace.rate_bps.min() / 1e6:.3f}-{trace.rate_bps.max() / 1e6:.3f} Mbit/s")
    return trace


def run_demo(opts: DemoOptions, console: Any = None) -> Path:
    """Run the demo and write its report; returns the report folder. Always removes the testbed and stops the
    edge server, also on errors and Ctrl-C (the report is still written for what ran)."""
    import torch
    from rich.console import Console

    from edgent.adapt.detectors import make_detector
    from edgent.data.cifar10 import request_images
    from edgent.demo.loop import DemoSession, run_loop
    from edgent.demo.report import write_report
    from edgent.demo.scenario import build_scenario
    from edgent.demo.summary import print_summary, simulate_baselines, summarize_run
    from edgent.model.card import resolve_accuracies
    from edgent.model.zoo import zoo_entry
    from edgent.runtime.agent import AgentOptions, EdgentAgent
    from edgent.testbed import replay_steps
    from edgent.testbed.bed import BedOptions, CoInferenceBed

    console = console or Console()
    check_options(opts)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(opts.out_dir) if opts.out_dir else Path("runs") / f"demo-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def say(msg: str) -> None:
        console.print(msg)
        notes.append(msg)

    t_setup = time.perf_counter()
    trace = load_trace_for(opts, say)
    duration_s = min(opts.duration_s, trace.end_s)
    resolved = resolve_accuracies(MODEL, opts.accuracies)
    accs = list(resolved.values)
    say(f"accuracy per exit {', '.join(f'{a:.3f}' for a in accs)} from {resolved.source}")
    with console.status("latency tables (fitted latency models) and configuration maps ..."):
        sc = build_scenario(MODEL, accs, resolved.source, opts.deadline_ms, opts.rtt_ms, opts.seed,
                            trace_file=opts.trace, scale=opts.scale, synthetic_only=opts.synthetic_map,
                            codec_variants=opts.codecs)
    say(f"configuration maps built in {sc.map_build_s:.1f} s from {sc.training} (not the replayed trace); "
        f"BOCPD map: {sc.maps['bocpd'].filled_cells} states, {len(sc.maps['bocpd'].configs)} configurations")
    sc.maps["bocpd"].save(out / "map.json")
    torch.manual_seed(opts.seed)
    weights_file = zoo_entry(MODEL).weights
    random_weights = opts.random_weights or weights_file is None or not weights_file.is_file()
    if random_weights and not opts.random_weights:
        say(f"NOTE: no trained weights at {weights_file}: device and edge use the same seeded random weights, "
            "so measured accuracy is meaningless (chance level)")
    n_req_max = int(duration_s * 1000 / opts.period_ms) + 2
    images, labels, input_source = request_images(max(n_req_max, 1), opts.seed, opts.synthetic_inputs)
    say(f"inputs: {input_source}")
    ctx = DemoContext(opts, sc, trace, duration_s, input_source, notes=notes)

    st = RunState()
    old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT for background jobs
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    # rates under the replay's floor (outages: tc tbf needs a rate > 0; an emulated link at a few bit/s would take
    # minutes per request) run at the floor, from the first rate on
    bed_opts = BedOptions(model=MODEL, rate_bps=max(float(trace.rate_bps[0]), MIN_REPLAY_BPS), rtt_ms=opts.rtt_ms,
                          emulate=True if opts.emulate else None, port=opts.port, random_weights=random_weights,
                          seed=opts.seed, log_dir=out, client_name="edgent-demo")
    try:
        with console.status("starting the testbed and the edge server ..."):
            bed = CoInferenceBed(bed_opts, sc.tables[0], accs).start()
        with bed:
            desc = bed.describe()
            ctx.testbed_kind, ctx.testbed_description, ctx.device_description = (
                bed.kind, desc["testbed"], desc["device"])
            say(("testbed: " if bed.kind == "netns" else "") + desc["testbed"])
            say(desc["device"])
            say(f"edge server: {desc['edge']}")
            steps = replay_steps(trace.time_s, trace.rate_bps, 0.0, duration_s)
            if any(r < MIN_REPLAY_BPS for r in trace.rate_bps):
                say(f"note: the trace's rates under {MIN_REPLAY_BPS / 1e3:g} kbit/s (outages) run at "
                    f"{MIN_REPLAY_BPS / 1e3:g} kbit/s on the link")
            say(f"set-up took {time.perf_counter() - t_setup:.1f} s; running {duration_s:g} s, one request every "
                f"{opts.period_ms:g} ms")
            aopts = AgentOptions(deadline_ms=opts.deadline_ms, policy="edgent", prior_rtt_ms=opts.rtt_ms,
                                 device_timing=f"EMULATED: {desc['device']}")
            with EdgentAgent(bed.client, sc.candidates, aopts, sc.maps["bocpd"], make_detector("bocpd"),
                             records=out / "records.jsonl") as agent:
                run_loop(DemoSession(ctx, bed, agent, steps, images, labels, accs, console), st)
    except KeyboardInterrupt:
        st.interrupted = True
        console.print("[yellow]interrupted: the testbed and the edge server were removed; writing the report "
                      "of what ran[/yellow]")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGINT, old_int)
    if not st.records:
        if st.interrupted:
            raise KeyboardInterrupt
        raise EdgentError("the demo finished without a single request; see the messages above")
    sim_results = simulate_baselines(sc, trace, st, opts)
    summary = summarize_run(st, sim_results, opts, sc)
    report = write_report(out, ctx, st, summary, sim_results)
    print_summary(console, summary, opts, ctx.testbed_kind)
    console.print(f"report: [bold]{report}[/bold]")
    if st.interrupted:
        console.print("(interrupted run: the figures cover only the requests that ran)")
    return out


__all__ = ["DemoOptions", "run_demo"]
