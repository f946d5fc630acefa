"""``edgent bench paper`` as a command: its options (:class:`PaperOptions`), the run (:func:`run_paper`: bring the
bed up, calibrate the wire model, run the three experiments per input variant, write the JSON and the plots) and
the command line (:func:`register`; the parsed arguments become a :class:`PaperOptions` here and go no further).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgent.bench.experiments import (BANDWIDTHS_KBIT, DEADLINE_A_MS, DEADLINES_B_MS, DEADLINES_C_MS,
                                      QUICK_BANDWIDTHS_KBIT, QUICK_DEADLINES_B_MS, QUICK_DEADLINES_C_MS, RATE_B_KBIT,
                                      RATE_C_KBIT, compute_ratio, with_input_bytes)
from edgent.bench.paper.measure import (MIN_GAP_S, MODEL, VARIANTS, CpuWitness, Measurer, PaperRun,
                                        calibrate_wire)
from edgent.bench.paper.plot import plot_paper
from edgent.bench.paper.summary import MET_SHARE, STAGE_NOTES, WITHIN_ABS_MS, WITHIN_REL, print_summary, summarize
from edgent.bench.record import BenchOptions, add_common_options, common_options
from edgent.errors import ConfigError
from edgent.plan.overhead import OverheadModel

#: measured requests per configuration: a full run and a quick one
REQUESTS, QUICK_REQUESTS = 20, 4
#: input images drawn (in a seeded order) for a full run and a quick one
INPUTS, QUICK_INPUTS = 10000, 500


@dataclass(frozen=True)
class PaperOptions:
    """The command's options (see ``edgent bench paper --help``).

    Attributes:
        common: the options of every benchmark (results folder, JSON output, quick run).
        requests: measured requests per configuration (each after one unrecorded warm-up).
        rtt_ms: round-trip delay added on the link.
        variants: what is sent at partition point 0, names of :data:`~edgent.bench.paper.measure.VARIANTS`.
        oracle: measure the oracle's candidates in (c).
        fluid: plan with the paper's fluid link formula instead of the wire model (both are reported).
        emulate: the emulated link even as root.
        synthetic_inputs: seeded random images instead of CIFAR-10.
        random_weights: seeded random weights on both sides.
        accuracies: top-1 per exit instead of the model card's.
        seed: seed of the input order and of random weights.
        port: the edge server's port in the namespace.
        raw_dir: folder for the device's records and the edge's log (None: ``runs/bench-paper-<time>``).
    """

    common: BenchOptions = field(default_factory=BenchOptions)
    requests: int = REQUESTS
    rtt_ms: float = 20.0
    variants: tuple[str, ...] = tuple(VARIANTS)
    oracle: bool = True
    fluid: bool = False
    emulate: bool = False
    synthetic_inputs: bool = False
    random_weights: bool = False
    accuracies: tuple[float, ...] | None = None
    seed: int = 0
    port: int = 8471
    raw_dir: Path | None = None

    @property
    def quick(self) -> bool:
        return self.common.quick

    def check(self) -> None:
        """Reject options that cannot run, naming the option."""
        if self.requests < 1:
            raise ConfigError(f"--requests must be at least 1, got {self.requests}")
        if not self.rtt_ms >= 0:
            raise ConfigError(f"--rtt must be >= 0 ms, got {self.rtt_ms}")
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"unknown input variant {v!r}; known: {', '.join(VARIANTS)}")

    def to_json(self) -> dict[str, Any]:
        """The options as the result records them (``options`` of ``paper.json``)."""
        return {"requests": self.requests, "quick": self.quick, "rtt_ms": self.rtt_ms,
                "variants": list(self.variants), "oracle": self.oracle, "fluid": self.fluid,
                "emulate": self.emulate, "synthetic_inputs": self.synthetic_inputs,
                "random_weights": self.random_weights,
                "accuracies": None if self.accuracies is None else list(self.accuracies), "seed": self.seed,
                "port": self.port, "out_dir": str(self.common.out_dir),
                "raw_dir": None if self.raw_dir is None else str(self.raw_dir)}


def _sigterm_as_interrupt(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise KeyboardInterrupt


def run_paper(opts: PaperOptions, console: Any = None) -> dict[str, Any]:
    """Run the experiments, write the JSON and the plots, print the summary (or the JSON with ``--json``);
    returns the result. The bed is torn down also on errors, Ctrl-C and SIGTERM."""
    import torch
    from rich.console import Console

    from edgent.bench.record import emit, write_result
    from edgent.data.cifar10 import request_images
    from edgent.model.card import resolve_accuracies
    from edgent.model.zoo import zoo_entry
    from edgent.plan.sources import table_for_model
    from edgent.testbed.bed import BedOptions, CoInferenceBed

    console = console or Console()
    opts.check()
    t_start = time.perf_counter()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    raw = Path(opts.raw_dir) if opts.raw_dir else Path("runs") / f"bench-paper-{stamp}"
    raw.mkdir(parents=True, exist_ok=True)
    rates = QUICK_BANDWIDTHS_KBIT if opts.quick else BANDWIDTHS_KBIT
    deadlines_b = QUICK_DEADLINES_B_MS if opts.quick else DEADLINES_B_MS
    deadlines_c = QUICK_DEADLINES_C_MS if opts.quick else DEADLINES_C_MS

    resolved = resolve_accuracies(MODEL, opts.accuracies)
    accs = list(resolved.values)
    base = table_for_model(MODEL, accuracies=accs)
    tables = {v: with_input_bytes(base, VARIANTS[v][0], raw_input=VARIANTS[v][1] == "uint8") for v in opts.variants}
    torch.manual_seed(opts.seed)
    weights_file = zoo_entry(MODEL).weights
    random_weights = opts.random_weights or weights_file is None or not weights_file.is_file()
    notes = []
    if random_weights and not opts.random_weights:
        notes.append(f"no trained weights at {weights_file}: both sides use the same seeded random weights")
    images, labels, input_source = request_images(QUICK_INPUTS if opts.quick else INPUTS, opts.seed,
                                                  opts.synthetic_inputs)
    result: dict[str, Any] = {
        "model": MODEL, "quick": opts.quick, "options": opts.to_json(), "accuracy_per_exit": accs,
        "accuracy_source": resolved.source, "inputs": input_source, "notes": notes,
        "criteria": {"within": f"|measured - predicted| <= max({WITHIN_REL:g} x predicted, {WITHIN_ABS_MS:g} ms)",
                     "met": f"a point meets its requirement when >= {MET_SHARE:.0%} of its requests do",
                     "requests": "isolated: the link idle until the shaper's bucket is full (at least "
                                 f"{MIN_GAP_S * 1e3:g} ms) before each; one unrecorded warm-up per configuration",
                     "sharing": "one configuration on one link is measured once per experiment; points of (b) "
                                "and (c) that chose it share it"},
        "stages": STAGE_NOTES, "compute_predicted": compute_ratio(base),
        "latency_models": "edgent.latency.default_predictor('device'|'edge') (edgent/latency/fitted/)",
        "raw_dir": str(raw), "variants": {},
    }
    bed_opts = BedOptions(model=MODEL, rate_bps=2e6, rtt_ms=opts.rtt_ms, emulate=True if opts.emulate else None,
                          port=opts.port, random_weights=random_weights, seed=opts.seed, edge_torch_threads=2,
                          log_dir=raw, client_name="edgent-bench-paper")
    old_term = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        with CoInferenceBed(bed_opts, base, accs) as bed, open(raw / "records.jsonl", "w") as records:
            desc = bed.describe()
            result["testbed"] = {"kind": desc["kind"], "describe": desc["testbed"],
                                 "rtt_delay_ms": desc["rtt_delay_ms"]}
            result["device"] = desc["device"]
            console.print(("testbed: " if bed.kind == "netns" else "") + desc["testbed"], highlight=False)
            console.print(desc["device"], highlight=False)
            console.print(f"inputs: {input_source}", highlight=False)
            # not recorded: the first forward passes on both sides, then the framing and runtime cost per variant
            bed.warm_up(images[0])
            calib = {v: calibrate_wire(bed.client, images[0], VARIANTS[v][1], VARIANTS[v][0],
                                       base.exits[-1].result_bytes, bed.kind == "netns") for v in opts.variants}
            overheads = {v: OverheadModel(fixed_ms_per_message=ms / 2).with_framing(fr)
                         for v, (fr, ms) in calib.items()}
            result["wire_framing"] = {v: fr.to_json() for v, (fr, _) in calib.items()}
            result["runtime_overhead_ms_per_request"] = {v: round(ms, 4) for v, (_, ms) in calib.items()}
            witness = CpuWitness([os.getpid(), bed.edge_process.pid])
            measurer = Measurer(bed.testbed, bed.client, images, labels, records, opts.requests, console, witness)
            for v in opts.variants:
                console.rule(f"{v}: {VARIANTS[v][0]} bytes sent at partition point 0 ({VARIANTS[v][1]})")
                run = PaperRun(v, tables[v], overheads[v], measurer, opts.fluid, console)
                out = {"input_bytes": VARIANTS[v][0], "input_codec": VARIANTS[v][1]}
                out["a_bandwidth_sweep"] = run.bandwidth_sweep(rates, DEADLINE_A_MS)
                out["b_deadline_sweep"] = run.deadline_sweep(RATE_B_KBIT, deadlines_b)
                out["c_policies"] = run.policies(RATE_C_KBIT, deadlines_c, opts.oracle)
                out["measurements"] = run.measurements
                result["variants"][v] = out
            measurer.close()
            result["calibration"] = measurer.calibration.to_json()
    finally:
        signal.signal(signal.SIGTERM, old_term)
    result["summary"] = summarize(result["variants"])
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    name = "paper-quick" if opts.quick else "paper"
    path = write_result(name, result, opts.common.out_dir)
    plots = plot_paper(result, opts.common.out_dir, prefix=name)

    def show(r: dict[str, Any]) -> None:
        print_summary(console, r)
        console.print(f"plots {', '.join(str(p) for p in plots)}; device records and edge log in {raw}",
                      highlight=False)

    emit(result, path, opts.common, show)
    return result


# -- the command line ----------------------------------------------------------------------------------------------

def register(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser("paper", help="the paper's static experiments measured on the testbed (JSON + PNG)",
                             description="Run the three static experiments of the paper on the real co-inference "
                                         "system (testbed link, slowed device, edge server) and compare the "
                                         "measured latency of every plan with its prediction.")
    add_common_options(p, quick_help="smoke run: as_sent only, 2 points per experiment, "
                                     f"{QUICK_REQUESTS} requests (writes paper-quick.json)")
    p.add_argument("--requests", type=int, default=None,
                   help=f"measured requests per configuration (default {REQUESTS}; --quick: {QUICK_REQUESTS})")
    p.add_argument("--rtt", type=float, default=20.0, help="round-trip delay added on the link, ms (default 20)")
    p.add_argument("--inputs", default=None,
                   help="comma-separated variants of what is sent at point 0: as_sent (3072 B uint8 pixels), "
                        "float32_input (12288 B); default both (--quick: as_sent)")
    p.add_argument("--no-oracle", action="store_true", help="skip the oracle's candidate measurements in (c)")
    p.add_argument("--fluid", action="store_true",
                   help="plan with the paper's fluid link formula instead of the wire model (both are reported)")
    p.add_argument("--emulate", action="store_true", help="use the emulated link even as root")
    p.add_argument("--synthetic-inputs", action="store_true", help="random images instead of CIFAR-10")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights on both sides")
    p.add_argument("--accuracies", default="", help="per-exit top-1 a1,..,a5 instead of the model card")
    p.add_argument("--seed", type=int, default=0, help="seed of the input order (and of random weights)")
    p.add_argument("--port", type=int, default=8471, help="edge port in the namespace (default 8471)")
    p.add_argument("--raw-dir", default=None,
                   help="folder for the device's records.jsonl and the edge's log (default runs/bench-paper-<time>)")
    p.set_defaults(func=_main)


def options_from_args(args: argparse.Namespace) -> PaperOptions:
    """The parsed command line as :class:`PaperOptions` (the defaults that depend on ``--quick`` applied)."""
    from edgent.model.card import parse_accuracies

    common = common_options(args)
    variants = (tuple(v.strip() for v in args.inputs.split(",") if v.strip()) if args.inputs
                else ("as_sent",) if common.quick else tuple(VARIANTS))
    accuracies = parse_accuracies(args.accuracies)
    return PaperOptions(common=common,
                        requests=args.requests if args.requests is not None else
                        QUICK_REQUESTS if common.quick else REQUESTS,
                        rtt_ms=args.rtt, variants=variants, oracle=not args.no_oracle, fluid=args.fluid,
                        emulate=args.emulate, synthetic_inputs=args.synthetic_inputs,
                        random_weights=args.random_weights,
                        accuracies=None if accuracies is None else tuple(accuracies), seed=args.seed,
                        port=args.port, raw_dir=Path(args.raw_dir) if args.raw_dir else None)


def _main(args: argparse.Namespace) -> int:
    import sys

    from rich.console import Console

    opts = options_from_args(args)
    # with --json the result is the only thing on stdout: the progress goes to stderr
    stream = sys.stderr if opts.common.json else sys.stdout
    run_paper(opts, Console(stderr=opts.common.json, width=None if stream.isatty() else 160))
    return 0
