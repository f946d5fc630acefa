"""``edgent demo``: Edgent's dynamic configurator driving a slowed device through a changing link, live.

One run (see ``docs/demo.md``):

1. The testbed: a network namespace with the edge server behind a ``tc tbf``-shaped veth as root, else the
   emulated link (a token bucket in the device client), said in the output and the report.
2. The edge: a real ``edgent serve`` process on the edge side.
3. The scenario (:mod:`edgent.demo.scenario`): latency tables from the fitted latency models, the model card's
   accuracies, configuration maps built from other traces than the replayed one.
4. The run: the trace is replayed on the link (``testbed.replay``); every ``period`` the device (slowed as the
   "device" role, :mod:`edgent.demo.device`) asks :class:`~edgent.adapt.DynamicConfigurator` for (exit, partition,
   codec) through :class:`~edgent.runtime.session.DeviceRuntime` and co-infers one CIFAR-10 test image (or a
   synthetic input) with the edge over the shaped link; each answer's throughput sample feeds the change point
   detector. A live view shows it.
5. The baselines on the same trace and the same request times, in simulation (same latency tables), labelled so;
   the Edgent row is the measured run. A report folder: ``report.html``, PNG plots, ``report.json``,
   ``records.jsonl``.
"""

from __future__ import annotations

import math
import signal
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgent.errors import ConfigError, DataError, EdgentError

MODEL = "alexnet-cifar10"
CARD_DIR = Path(__file__).resolve().parents[1] / "model" / "weights"
METHOD_LABELS = {
    "edgent-dynamic": "Edgent dynamic (BOCPD + map), simulated",
    "edgent-dynamic-ph": "Edgent dynamic, Page-Hinkley detector, simulated",
    "edgent-static": "Edgent static planner on EWMA bandwidth, simulated",
    "neurosurgeon": "Neurosurgeon (partition only, EWMA), simulated",
    "device-only": "device only, simulated",
    "edge-only": "edge only, simulated",
    "oracle": "oracle (knows the future bandwidth), simulated",
}


@dataclass
class DemoOptions:
    """The command's options (see ``edgent demo --help``)."""

    duration_s: float = 60.0
    deadline_ms: float = 300.0
    trace: str | None = None
    scale: float = 1.0
    trace_start_s: float = 0.0
    period_ms: float = 300.0
    rtt_ms: float = 20.0
    seed: int = 0
    emulate: bool = False
    out_dir: str | None = None
    accuracies: list[float] | None = None
    random_weights: bool = False
    synthetic_inputs: bool = False
    live: bool | None = None
    synthetic_map: bool = False
    port: int = 8470


@dataclass
class RunState:
    """What the live view shows and the report plots, request by request."""

    t0: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    change_times_s: list[float] = field(default_factory=list)
    correct: int = 0
    labelled: int = 0
    met: int = 0
    fallbacks: int = 0
    card_acc_sum: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False
    probes: int = 0
    last_sample_bps: float | None = None
    edge_proc: Any = None
    edge_exit_note: str | None = None
    replay_note: str | None = None


# -- inputs and accuracies ---------------------------------------------------------------------------------------

def resolve_accuracies(opts: DemoOptions) -> tuple[list[float], str]:
    """Per-exit top-1: ``--accuracies`` (said to be assumed) or the model card (the normal case)."""
    if opts.accuracies:
        return list(opts.accuracies), "given with --accuracies (assumed, not measured)"
    from edgent.plan.sources import card_accuracies

    card = CARD_DIR / f"{MODEL}.card.json"
    return card_accuracies(MODEL), f"model card {card}"


def load_inputs(opts: DemoOptions, n: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``n`` CIFAR-10 test images (uint8, seeded order) and labels, or synthetic images and no labels."""
    rng = np.random.default_rng(opts.seed)
    if not opts.synthetic_inputs:
        try:
            from edgent.data.cifar10 import load_split

            split = load_split("test")
            idx = rng.permutation(len(split))[:n]
            return split.images[idx], split.labels[idx], f"CIFAR-10 test images ({split.source}), seeded order"
        except DataError as exc:
            why = f"CIFAR-10 is not available ({str(exc).splitlines()[0]})"
    else:
        why = "--synthetic-inputs"
    imgs = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return imgs, None, (f"SYNTHETIC random inputs ({why}): accuracy is the model card's accuracy of the exits used, "
                        "not measured")


# -- the live view ------------------------------------------------------------------------------------------------

def live_panel(st: RunState, opts: DemoOptions, trace: Any, now_s: float, cands: Any, testbed_kind: str) -> Any:
    """The rich renderable of the live view."""
    from rich.panel import Panel
    from rich.table import Table

    n = len(st.records)
    tab = Table.grid(padding=(0, 2))
    tab.add_column(style="bold")
    tab.add_column()
    true_bps = float(trace.rate_at(min(now_s, trace.end_s - 1e-6)))
    last = st.last
    est = st.last_sample_bps
    state = last.get("state_mean_bps")
    tab.add_row("time", f"{now_s:5.1f} / {opts.duration_s:g} s   requests {n}   link: {testbed_kind}")
    tab.add_row("bandwidth", f"true {true_bps / 1e6:6.3f} Mbit/s   measured "
                             f"{'-' if not est else f'{est / 1e6:6.3f}'} Mbit/s (last sample)   state "
                             f"{'-' if not state else f'{state / 1e6:6.3f}'} Mbit/s (BOCPD)")
    cps = ", ".join(f"{t:.1f}" for t in st.change_times_s[-6:])
    tab.add_row("changes detected", f"{len(st.change_times_s)}" + (f"  (at {cps} s)" if cps else ""))
    if last:
        cfg = last["plan"]
        n_units = int(cands.tables[0].exits[cfg["exit"] - 1].num_units)
        where = ("edge only" if cfg["partition"] == 0 else "device only" if cfg["partition"] >= n_units
                 else f"{cfg['partition']}/{n_units} units on device")
        tab.add_row("configuration", f"exit {cfg['exit']}, partition {cfg['partition']} ({where}), "
                                     f"codec {cfg['codec']}  [{last['source']}]")
        lat, dl = last["latency_ms"], opts.deadline_ms
        color = "green" if lat <= dl else "red"
        tab.add_row("latency", f"[{color}]{lat:7.1f} ms[/{color}] vs deadline {dl:g} ms "
                               f"(predicted {last['predicted_ms']:.0f} ms; {last['where']})")
        tab.add_row("deadline met", f"{100 * st.met / n:5.1f} %   fallbacks {st.fallbacks}")
        if st.labelled:
            tab.add_row("accuracy so far", f"{100 * st.correct / st.labelled:5.1f} % measured on "
                                           f"{st.labelled} test images (card accuracy of the exits used "
                                           f"{100 * st.card_acc_sum / n:.1f} %)")
        else:
            tab.add_row("accuracy so far", f"{100 * st.card_acc_sum / n:5.1f} % (model card, synthetic inputs)")
    return Panel(tab, title=f"edgent demo: {MODEL}, deadline {opts.deadline_ms:g} ms", expand=False)


# -- the run -------------------------------------------------------------------------------------------------------

class _Configurator:
    """The DynamicConfigurator behind DeviceRuntime's hook: remembers its decision, sends raw uint8 pixels at
    partition 0 (what the latency table assumes), and attaches the table's prediction at the current estimate."""

    def __init__(self, conf: Any, cands: Any, rtt_ms: float) -> None:
        self.conf, self.cands, self.rtt_ms = conf, cands, rtt_ms
        self.last: Any = None
        self.last_index = -1
        self.last_predicted_ms = math.nan
        self.rate_bps: float | None = None  # the latest burst-corrected sample (what the prediction uses)

    def __call__(self, bandwidth_bps: float | None, rtt_ms: float | None, edge_load: Any) -> Any:
        from edgent.adapt.dynamic import edge_queue_ms
        from edgent.plan.link import Link
        from edgent.runtime.session import Plan

        d = self.conf.decide(bandwidth_bps, self.rtt_ms, edge_queue_ms(edge_load))
        self.last = d
        k = self.cands.index(d.config)
        self.last_index = k
        rate = self.rate_bps or (d.state.mean_rate_bps if d.state is not None else bandwidth_bps or 1e6)
        pred = float(self.cands.latency_ms(Link(rate, rate, self.rtt_ms))[k])
        self.last_predicted_ms = pred
        exit, partition, codec = d.config.as_tuple()
        if partition == 0:
            codec = "uint8"
        return Plan(exit, partition, codec, {"total": round(pred, 3)})


#: the lowest rate set on the link (tc tbf needs > 0)
MIN_LINK_BPS = 1000.0
#: TCP payload per Ethernet frame that tc tbf counts (1448 of 1514 bytes)
FRAME_OVERHEAD = 1514 / 1448


def corrected_sample_bps(size_up: int, size_down: int, sample_bps: float | None, kind: str) -> float | None:
    """The link rate behind one throughput sample of the runtime, without the shaper's bucket: ``tc tbf`` (and
    the emulated link) let one burst (:func:`edgent.testbed.tbf_args`: max(1600 bytes, 2 ms)) through at once
    after an idle spell, so a 3 KB request reads about twice the rate; the bytes beyond the burst, in each
    direction, took the time. On the namespace testbed the bucket also counts Ethernet framing (+4.6%).
    None when no byte was shaped (the sample says nothing)."""
    if not sample_bps or sample_bps <= 0:
        return None
    link_s = 8.0 * (size_up + size_down) / sample_bps
    burst = max(1600.0, sample_bps / 8 * 0.002)
    shaped = max(size_up - burst, 0.0) + max(size_down - burst, 0.0)
    if shaped <= 0 or link_s <= 0:
        return None
    return 8.0 * shaped * (FRAME_OVERHEAD if kind == "netns" else 1.0) / link_s


def timeout_bound_bps(upload_bytes: float, res: Any) -> float:
    """The highest rate consistent with a request the edge did not answer in time (``res``, a fallback): its
    upload was still under way when the device gave up waiting, so the rate was at most its bytes over the
    time it waited. The wait is the request's total minus the device's own work (``device_ms`` of a fallback
    counts both the part before sending and the fallback's compute) and the encoding; at least 1 ms."""
    waited_ms = float(res.total_ms) - float(res.device_ms) - float(getattr(res, "encode_ms", 0.0) or 0.0)
    return 8.0 * float(upload_bytes) / (max(waited_ms, 1.0) / 1e3)


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def run_demo(opts: DemoOptions, console: Any = None) -> Path:
    """Run the demo and write its report; returns the report folder. Always removes the testbed and stops the
    edge server, also on errors and Ctrl-C (the report is still written for what ran)."""
    import torch
    from rich.console import Console

    from edgent.adapt.dynamic import DynamicConfigurator
    from edgent.adapt.detectors import make_detector
    from edgent.demo.device import DeviceThrottle
    from edgent.demo.scenario import build_scenario, default_trace, file_trace
    from edgent.runtime.client import DeviceClient
    from edgent.runtime.session import DeviceRuntime
    from edgent.testbed import open_testbed, replay_steps, start_edge_server

    console = console or Console()
    if not opts.duration_s > 0:
        raise ConfigError(f"--duration must be > 0 s, got {opts.duration_s}")
    if not opts.deadline_ms > 0:
        raise ConfigError(f"--deadline must be > 0 ms, got {opts.deadline_ms}")
    if not opts.period_ms > 0:
        raise ConfigError(f"--period must be > 0 ms, got {opts.period_ms}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = Path(opts.out_dir) if opts.out_dir else Path("runs") / f"demo-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    def say(msg: str) -> None:
        console.print(msg)
        notes.append(msg)

    t_setup = time.perf_counter()
    # ---- trace
    if opts.trace:
        trace = file_trace(opts.trace, opts.scale, opts.duration_s, opts.trace_start_s)
        say(f"trace: {opts.trace}" + (f" scaled x{opts.scale:g}" if opts.scale != 1.0 else "")
            + f", {trace.end_s:g} s from {opts.trace_start_s:g} s")
    else:
        trace = default_trace(opts.duration_s, opts.seed)
        if opts.scale != 1.0:
            trace = trace.scaled(opts.scale)
        say(f"trace: built-in synthetic piecewise trace (seed {opts.seed}"
            + (f", scaled x{opts.scale:g}" if opts.scale != 1.0 else "") + "), "
            f"{trace.rate_bps.min() / 1e6:.3f}-{trace.rate_bps.max() / 1e6:.3f} Mbit/s")
    duration_s = min(opts.duration_s, trace.end_s)
    # ---- model, accuracies, scenario
    accs, acc_source = resolve_accuracies(opts)
    say(f"accuracy per exit {', '.join(f'{a:.3f}' for a in accs)} from {acc_source}")
    with console.status("latency tables (fitted latency models) and configuration maps ..."):
        sc = build_scenario(MODEL, accs, acc_source, opts.deadline_ms, opts.rtt_ms, opts.seed,
                            trace_file=opts.trace, scale=opts.scale, synthetic_only=opts.synthetic_map)
    say(f"configuration maps built in {sc.map_build_s:.1f} s from {sc.training} (not the replayed trace); "
        f"BOCPD map: {sc.maps['bocpd'].filled_cells} states, {len(sc.maps['bocpd'].configs)} configurations")
    sc.maps["bocpd"].save(out / "map.json")
    torch.set_num_threads(1)  # the device role: one thread
    torch.manual_seed(opts.seed)
    from edgent.cli.runtime_cmds import load_runtime_model

    weights_file = CARD_DIR / f"{MODEL}.safetensors"
    random_weights = opts.random_weights or not weights_file.is_file()
    if random_weights and not opts.random_weights:
        say(f"NOTE: no trained weights at {weights_file}: device and edge use the same seeded random weights, "
            "so measured accuracy is meaningless (chance level)")
    chain = load_runtime_model(MODEL, random_weights=random_weights, seed=opts.seed)
    n_req_max = int(duration_s * 1000 / opts.period_ms) + 2
    images, labels, input_source = load_inputs(opts, max(n_req_max, 1))
    say(f"inputs: {input_source}")

    st = RunState()
    old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    # Ctrl-C must reach us even when started from a shell that ignores SIGINT for background jobs
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    sim_results: dict[str, Any] = {}
    tb_desc = dev_desc = ""
    testbed_kind = "?"
    try:
        # rates under 1 kbit/s (outages: tc tbf needs a rate > 0; an emulated link at a few bit/s would take minutes
        # per request) run at 1 kbit/s, from the first rate on
        with open_testbed(max(float(trace.rate_bps[0]), MIN_LINK_BPS), opts.rtt_ms,
                          emulate=True if opts.emulate else None) as tb, \
                DeviceThrottle() as throttle:
            testbed_kind = tb.kind
            tb_desc, dev_desc = tb.describe(), throttle.describe()
            say(("testbed: " if tb.kind == "netns" else "") + tb_desc)
            say(dev_desc)
            extra = ["--threads", "0", "--torch-threads", "2"]
            if random_weights:
                extra += ["--random-weights", "--seed", str(opts.seed)]
            with console.status("starting the edge server ..."):
                st.edge_proc, port = start_edge_server(tb, MODEL, opts.port, out / "edge.log", extra)
            say(f"edge server: edgent serve in {'the namespace' if tb.kind == 'netns' else 'a process on loopback'}"
                f" at {tb.edge_host}:{port} (2 torch threads, inline)")
            device_ms = {e.exit: float(sum(e.device_unit_ms) + e.device_part_ms) for e in sc.tables[0].exits}
            client = DeviceClient(tb.edge_host, port, chain, link=tb.link, slowdown=throttle,
                                  exit_accuracy={i + 1: a for i, a in enumerate(accs)}, device_exit_ms=device_ms,
                                  client_name="edgent-demo")
            # the configurator budgeted the edge path up to the deadline: wait for the edge until then (the
            # default reserve would give up at deadline - fastest device exit and miss by falling back)
            client.fallback_reserve = False
            conf = DynamicConfigurator(sc.maps["bocpd"], sc.candidates, make_detector("bocpd"))
            hook = _Configurator(conf, sc.candidates, opts.rtt_ms)
            steps = replay_steps(trace.time_s, trace.rate_bps, 0.0, duration_s, MIN_LINK_BPS)
            if any(r < MIN_LINK_BPS for r in trace.rate_bps):
                say(f"note: the trace's rates under {MIN_LINK_BPS / 1e3:g} kbit/s (outages) run at "
                    f"{MIN_LINK_BPS / 1e3:g} kbit/s on the link")
            setup_s = time.perf_counter() - t_setup
            say(f"set-up took {setup_s:.1f} s; running {duration_s:g} s, one request every {opts.period_ms:g} ms")
            with client, DeviceRuntime(client, hook, opts.deadline_ms, records=out / "records.jsonl") as rt:
                if not client.connect(force=True):
                    raise EdgentError(f"the device cannot reach the edge at {tb.edge_host}:{port}: "
                                      f"{getattr(client, 'last_connect_error', '?')}")
                _run_loop(opts, st, tb, client, rt, conf, hook, sc, trace, steps, duration_s, images, labels,
                          accs, console, tb.kind)
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
    report = write_report(out, opts, st, sc, trace, summary, sim_results, notes, tb_desc, dev_desc, testbed_kind,
                          input_source)
    print_summary(console, summary, opts, testbed_kind)
    console.print(f"report: [bold]{report}[/bold]")
    if st.interrupted:
        console.print("(interrupted run: the figures cover only the requests that ran)")
    return out


def _run_loop(opts: DemoOptions, st: RunState, tb: Any, client: Any, rt: Any, conf: Any, hook: _Configurator,
              sc: Any, trace: Any, steps: list, duration_s: float, images: np.ndarray, labels: np.ndarray | None,
              accs: list[float], console: Any, kind: str) -> None:
    """Replay the trace on the link and send one request every period until the duration has passed."""
    from rich.live import Live

    period_s = opts.period_ms / 1e3
    live_on = console.is_terminal if opts.live is None else opts.live
    last_print = -1e9
    probe_bytes = 4096
    with Live(live_panel(st, opts, trace, 0.0, sc.candidates, kind), console=console, auto_refresh=False,
              transient=False) if live_on else _NoLive() as live:
        # warm-up, not recorded: the edge's and the device's first forward passes (lazy initialisation) and the
        # connection; then the replay and the clock start
        client.infer(images[0], int(sc.tables[0].exits[-1].exit), 0, "uint8", fallback=False)
        first = sc.tables[0].exits[0]
        client.infer(images[0], int(first.exit), int(first.num_units))
        replayer = tb.replay(steps)
        st.t0 = time.monotonic()
        # a first throughput sample (small probe) so that the configurator starts from a measurement
        try:
            sample = client.probe(probe_bytes)
            st.probes += 1
        except EdgentError:  # a link too slow to carry the probe in time: the configurator starts from the trace
            sample = None
        rate = None if sample is None else corrected_sample_bps(sample.size_bytes, 0, sample.rate_bps, kind)
        conf.observe(rate if rate else float(trace.rate_bps[0]))  # (a sample is needed to start)
        st.last_sample_bps = hook.rate_bps = rate
        k = 0
        while True:
            now = time.monotonic() - st.t0
            if now >= duration_s:
                break
            # no traffic for a while (device-only plans): one small probe keeps the samples coming
            if client.estimator.idle_for_s() > 1.0:
                try:
                    sample = client.probe(probe_bytes, timeout_s=2.0)
                    st.probes += 1
                    rate = None if sample is None else corrected_sample_bps(sample.size_bytes, 0,
                                                                             sample.rate_bps, kind)
                    if rate:
                        st.last_sample_bps = hook.rate_bps = rate
                        if conf.observe(rate):
                            st.change_times_s.append(time.monotonic() - st.t0)
                except EdgentError:
                    pass
            t_req = time.monotonic() - st.t0
            i = k % len(images)
            label = None if labels is None else int(labels[i])
            res = rt.infer(images[i], label=label)
            rate = corrected_sample_bps(res.upload_bytes, res.download_bytes, res.bandwidth_sample_bps, kind)
            bound = False
            k_c = hook.last_index
            if rate is None and res.where == "fallback" and sc.candidates.crosses[k_c]:
                # the edge did not answer in time (an upper bound; without it a configurator stuck on an edge
                # plan during an outage would see no sample at all)
                rate = timeout_bound_bps(float(sc.candidates.tx_bytes[k_c]), res)
                bound = True
            if rate:
                st.last_sample_bps = hook.rate_bps = rate
                if conf.observe(rate):
                    st.change_times_s.append(time.monotonic() - st.t0)
            d = hook.last
            met = bool(res.total_ms <= opts.deadline_ms)
            st.met += met
            st.fallbacks += res.where == "fallback"
            st.card_acc_sum += accs[res.exit - 1]
            if label is not None:
                st.labelled += 1
                st.correct += int(res.classes[0] == label)
            rec = {
                "time_s": round(t_req, 4), "true_bps": float(trace.rate_at(t_req)),
                "estimate_bps": client.estimator.rate_bps, "raw_sample_bps": res.bandwidth_sample_bps,
                "sample_bps": rate, "sample_is_timeout_bound": bound,
                "last_sample_bps": st.last_sample_bps,
                "plan": {"exit": d.config.exit, "partition": d.config.partition,
                         "codec": rt_codec(d.config)}, "source": d.source, "candidate": hook.last_index,
                "exit_used": res.exit, "where": res.where, "fallback_reason": res.fallback_reason,
                "latency_ms": round(res.total_ms, 3), "device_ms": round(res.device_ms, 3),
                "network_ms": None if res.network_ms is None else round(res.network_ms, 3),
                "edge_ms": (res.server_timings_ms or {}).get("server_ms"),
                "predicted_ms": round(hook.last_predicted_ms, 3), "met": met,
                "label": label, "predicted_class": int(res.classes[0]),
                "correct": None if label is None else bool(res.classes[0] == label),
                "card_accuracy": accs[res.exit - 1],
                "state_mean_bps": None if d.state is None else d.state.mean_rate_bps,
            }
            st.records.append(rec)
            st.last = rec
            k += 1
            if st.edge_exit_note is None and st.edge_proc is not None and st.edge_proc.poll() is not None:
                st.edge_exit_note = (f"WARNING: the edge server exited (code {st.edge_proc.returncode}) at "
                                     f"{t_req:.1f} s; from then on the device falls back on itself (see edge.log)")
                console.print(f"[red]{st.edge_exit_note}[/red]")
            now = time.monotonic() - st.t0
            if live_on:
                live.update(live_panel(st, opts, trace, now, sc.candidates, kind), refresh=True)
            elif now - last_print >= 5.0:
                last_print = now
                console.print(f"t={now:5.1f}s  true {rec['true_bps'] / 1e6:.3f} Mbit/s  measured "
                              f"{(st.last_sample_bps or 0) / 1e6:.3f}  changes {len(st.change_times_s)}  exit "
                              f"{rec['plan']['exit']} part {rec['plan']['partition']}  {rec['latency_ms']:.0f} ms "
                              f"({'met' if met else 'MISSED'})  met {100 * st.met / len(st.records):.0f}%")
            nxt = t_req + period_s
            wait = nxt - (time.monotonic() - st.t0)
            if wait > 0:
                time.sleep(wait)
        elapsed = time.monotonic() - st.t0
        due = sum(1 for step in steps if step.time_s < elapsed - 0.5)
        if len(replayer.applied) < due:
            st.replay_note = (f"WARNING: the trace replay stopped after {len(replayer.applied)} of {due} rate "
                              "changes (a tc command failed); the link kept its last rate")
            console.print(f"[red]{st.replay_note}[/red]")
    if live_on:
        console.print()


def rt_codec(cfg: Any) -> str:
    """The codec actually sent for a configuration (raw pixels at partition 0)."""
    return "uint8" if cfg.partition == 0 else cfg.codec


class _NoLive:
    def __enter__(self) -> "_NoLive":
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None


# -- baselines, summary, report ------------------------------------------------------------------------------------

def simulate_baselines(sc: Any, trace: Any, st: RunState, opts: DemoOptions) -> dict[str, Any]:
    """Every method of ``edgent bench dynamic`` on the same trace at the same request times, in simulation (the
    same latency tables); also the table's latency of the configurations the real run chose."""
    from edgent.bench.dynamic import METHODS, SimulatedExecutor, decide_trace

    from edgent.adapt.traces import BandwidthTrace

    # pre-roll: every simulated method starts, like the measured run (its first probe), with one sample of the
    # first rate: the trace gets one extra second in front and the request times move by it
    pre = BandwidthTrace(trace.name, np.concatenate([[0.0], trace.time_s + 1.0]),
                         np.concatenate([trace.rate_bps[:1], trace.rate_bps]), trace.end_s + 1.0)
    trace = pre
    times = np.array([r["time_s"] for r in st.records]) + 1.0
    sim = SimulatedExecutor(sc.candidates, opts.rtt_ms)
    true_lat = sim.matrix(trace, times)
    dec = decide_trace(trace, times, sc.candidates, opts.deadline_ms, sc.maps, opts.rtt_ms,
                       true_latency_ms=true_lat)
    out: dict[str, Any] = {}
    for m in METHODS:
        ch = dec.choice[m]
        lat = true_lat[np.arange(times.size), ch]
        out[m] = {"latency_ms": lat, "choice": ch, "accuracy": sc.candidates.accuracy[ch]}
    real_ch = np.array([r["candidate"] for r in st.records])
    out["_real_choice_simulated_ms"] = true_lat[np.arange(times.size), real_ch]
    out["_oracle_servable"] = (true_lat <= opts.deadline_ms).any(axis=1)
    return out


def summarize_run(st: RunState, sim: dict[str, Any], opts: DemoOptions, sc: Any) -> list[dict[str, Any]]:
    """One row per method: the measured Edgent run first, then the simulated ones."""
    dl = opts.deadline_ms
    lat = np.array([r["latency_ms"] for r in st.records])
    plans = [(r["plan"]["exit"], r["plan"]["partition"]) for r in st.records]
    servable = sim["_oracle_servable"]
    rows = [{
        "method": "Edgent dynamic (BOCPD + map), MEASURED on the testbed",
        "key": "edgent-dynamic-measured", "mode": "measured",
        "requests": int(lat.size), "met_share": float((lat <= dl).mean()),
        "met_share_where_oracle_meets": float((lat[servable] <= dl).mean()) if servable.any() else None,
        "card_accuracy": float(np.mean([r["card_accuracy"] for r in st.records])),
        "measured_top1": (st.correct / st.labelled) if st.labelled else None,
        "mean_latency_ms": float(lat.mean()), "p95_latency_ms": float(np.percentile(lat, 95)),
        "switches": int(sum(a != b for a, b in zip(plans, plans[1:]))),
        "fallbacks": st.fallbacks,
    }]
    for m, label in METHODS_ORDER:
        r = sim[m]
        ml = r["latency_ms"]
        rows.append({
            "method": label, "key": m, "mode": "simulated", "requests": int(ml.size),
            "met_share": float((ml <= dl).mean()),
            "met_share_where_oracle_meets": float((ml[servable] <= dl).mean()) if servable.any() else None,
            "card_accuracy": float(r["accuracy"].mean()), "measured_top1": None,
            "mean_latency_ms": float(ml.mean()), "p95_latency_ms": float(np.percentile(ml, 95)),
            "switches": int(np.count_nonzero(np.diff(r["choice"]))), "fallbacks": None,
        })
    return rows


METHODS_ORDER = [(m, METHOD_LABELS[m]) for m in ("edgent-dynamic", "edgent-dynamic-ph", "edgent-static",
                                                  "neurosurgeon", "device-only", "edge-only", "oracle")]
SUMMARY_COLUMNS = ["method", "mode", "requests", "deadline met %", "met % where oracle meets",
                   "accuracy % (card, exits used)", "measured top-1 %", "mean latency ms", "p95 latency ms",
                   "config switches"]


def _fmt_row(r: dict[str, Any]) -> list[str]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f}"

    return [r["method"], r["mode"], str(r["requests"]), pct(r["met_share"]), pct(r["met_share_where_oracle_meets"]),
            pct(r["card_accuracy"]), pct(r["measured_top1"]), f"{r['mean_latency_ms']:.1f}",
            f"{r['p95_latency_ms']:.1f}", str(r["switches"])]


def print_summary(console: Any, rows: list[dict[str, Any]], opts: DemoOptions, kind: str) -> None:
    from rich.table import Table

    from rich import box

    tab = Table(box=box.SIMPLE_HEAD, pad_edge=False, title=f"{MODEL}, deadline {opts.deadline_ms:g} ms, {rows[0]['requests']} requests; the same trace "
                      f"and request times for every row ({'namespace testbed' if kind == 'netns' else 'EMULATED link'})")
    short = ["method", "met%", "srv%", "acc%", "top1%", "mean ms", "p95 ms", "sw"]
    for c in short:
        tab.add_column(c, justify="left" if c == "method" else "right", no_wrap=True)
    for r in rows:
        f = _fmt_row(r)
        name = "edgent-dynamic REAL" if r["mode"] == "measured" else r["key"]
        tab.add_row(name, *f[3:7], f"{r['mean_latency_ms']:.0f}", f"{r['p95_latency_ms']:.0f}", f[9],
                    style="bold" if r["mode"] == "measured" else None)
    console.print("REAL: measured on the testbed; every other row is simulated with the same latency tables, "
                  "trace and request times. met%: deadline met; srv%: met among the requests the oracle can serve; "
                  "acc%: model card accuracy of the exits used; top1%: measured on the test images; sw: "
                  "configuration switches", highlight=False)
    console.print(tab)


def plot_summary(rows: list[dict[str, Any]], path: Path, deadline_ms: float) -> Path:
    """Bars: deadline met % and accuracy % per method (the measured row highlighted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["key"] for r in rows]
    y = np.arange(len(rows))
    fig, ax = plt.subplots(1, 2, figsize=(11, 0.5 * len(rows) + 1.5), sharey=True)
    colors = ["tab:red" if r["mode"] == "measured" else "tab:gray" for r in rows]
    ax[0].barh(y, [100 * r["met_share"] for r in rows], color=colors)
    ax[0].set_xlabel(f"requests meeting the {deadline_ms:g} ms deadline (%)")
    ax[0].set_xlim(0, 100)
    ax[1].barh(y, [100 * r["card_accuracy"] for r in rows], color=colors, label="card accuracy of exits used")
    meas = [(i, 100 * r["measured_top1"]) for i, r in enumerate(rows) if r["measured_top1"] is not None]
    if meas:
        ax[1].plot([v for _, v in meas], [i for i, _ in meas], "k*", ms=10, label="measured top-1")
        ax[1].legend(loc="lower right", fontsize=8)
    accs = [100 * r["card_accuracy"] for r in rows]
    every = accs + [v for _, v in meas]
    ax[1].set_xlim(max(0.0, min(every) - 5), min(100.0, max(every) + 5))
    ax[1].set_xlabel("accuracy (%)")
    ax[0].set_yticks(y)
    ax[0].set_yticklabels(names, fontsize=8)
    ax[0].invert_yaxis()
    fig.suptitle("red: measured on the testbed; gray: simulated on the same trace and request times", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(out: Path, opts: DemoOptions, st: RunState, sc: Any, trace: Any, rows: list[dict[str, Any]],
                 sim: dict[str, Any], notes: list[str], tb_desc: str, dev_desc: str, kind: str,
                 input_source: str) -> Path:
    """``report.html`` + ``timeline.png`` + ``summary.png`` + ``report.json`` in ``out``."""
    from edgent.report.html import RunTimeline, plot_timeline, write_html_report

    tl = RunTimeline()
    for r in st.records:
        tl.time_s.append(r["time_s"])
        tl.true_bps.append(r["true_bps"])
        tl.measured_bps.append(r["last_sample_bps"])  # the latest burst-corrected sample the configurator saw
        tl.exit.append(r["plan"]["exit"])
        tl.partition.append(r["plan"]["partition"])
        tl.latency_ms.append(r["latency_ms"])
        tl.predicted_ms.append(r["predicted_ms"])
        tl.met.append(r["met"])
        tl.fallback.append(r["where"] == "fallback")
    tl.change_times_s = list(st.change_times_s)
    link = "namespace testbed, tc tbf" if kind == "netns" else "EMULATED link"
    timeline = plot_timeline(tl, opts.deadline_ms, out / "timeline.png",
                             f"edgent demo: {MODEL}, measured run ({link})")
    summary_png = plot_summary(rows, out / "summary.png", opts.deadline_ms)
    sim_real = sim["_real_choice_simulated_ms"]
    meas = np.array([r["latency_ms"] for r in st.records])
    within = np.abs(meas - sim_real) <= np.maximum(0.1 * sim_real, 5.0)
    extra_notes = [
        "Only the first row is measured: real co-inference of the slowed device with the edge server over the "
        "shaped link while the trace is replayed on it. The other rows are SIMULATED with the same latency "
        "tables (fitted latency models), the same trace and the same request times (edgent bench dynamic's "
        "simulation); the simulated methods see the trace's true samples once per second, the measured run only "
        "what its own traffic measures.",
        f"Measured latency of the configurations chosen vs the simulation's latency for them: "
        f"{100 * within.mean():.0f}% within +-10% (or 5 ms); median measured/simulated "
        f"{np.median(meas / np.maximum(sim_real, 1e-9)):.2f}.",
    ]
    if st.edge_exit_note:
        extra_notes.insert(0, st.edge_exit_note)
    if st.replay_note:
        extra_notes.insert(0, st.replay_note)
    if st.interrupted:
        extra_notes.insert(0, "INTERRUPTED run (Ctrl-C / SIGTERM): the figures cover only the requests that ran.")
    all_notes = list(dict.fromkeys(extra_notes + notes))
    data = {
        "model": MODEL, "options": asdict(opts), "testbed": {"kind": kind, "describe": tb_desc},
        "device": dev_desc, "inputs": input_source, "interrupted": st.interrupted,
        "trace": {"name": trace.name, "time_s": trace.time_s.tolist(), "rate_bps": trace.rate_bps.tolist(),
                  "end_s": trace.end_s},
        "accuracy": {"per_exit": sc.accuracies, "source": sc.accuracy_source},
        "map": {"training": sc.training, "build_s": sc.map_build_s,
                "filled_cells": {k: m.filled_cells for k, m in sc.maps.items()},
                "configs": [c.as_tuple() for c in sc.maps["bocpd"].configs]},
        "latency_table": {"exit_device_only_ms": [float(sum(e.device_unit_ms) + e.device_part_ms)
                                                  for e in sc.tables[0].exits],
                          "input_bytes": sc.tables[0].exits[0].transfer_bytes[0]},
        "summary": rows,
        "change_times_s": st.change_times_s,
        "probes": st.probes,
        "measured_vs_simulated_within_10pct_share": float(within.mean()),
        "requests": st.records,
        "simulated_latency_ms": {m: sim[m]["latency_ms"].tolist() for m, _ in METHODS_ORDER},
    }
    return write_html_report(out, f"edgent demo: {MODEL}, deadline {opts.deadline_ms:g} ms", all_notes,
                             SUMMARY_COLUMNS, [_fmt_row(r) for r in rows],
                             [("configuration, bandwidth and latency over time (measured run)", timeline),
                              ("summary: measured Edgent run vs simulated baselines", summary_png)], data)


__all__ = ["DemoOptions", "corrected_sample_bps", "run_demo", "simulate_baselines", "summarize_run", "write_report"]
