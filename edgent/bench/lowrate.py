"""``edgent bench lowrate``: one static point of the paper's setting measured with and without the codec knob.

At one bandwidth and one latency requirement (by default the paper's lowest rate, 50 kbit/s, and 300 ms), on the
co-inference bed (``edgent.testbed.bed.CoInferenceBed``: the namespace testbed as root, the slowed device, a real
edge server), Edgent plans once with the table's own codec only (exit, partition) and once with every codec of
the model card as the third dimension (exit, partition, codec; ``edgent.plan.sources.with_codecs``); each plan
is then served for ``--requests`` CIFAR-10 test images (seeded order), each request isolated (the shaper's
bucket refilled before it; the client's give-up point follows the plan's prediction,
``edgent.runtime.client.DeviceClient.reserves``). Reported per plan: the measured top-1, the share of requests
within the requirement,
latency percentiles, the bytes sent, and the prediction. The link the planner is given is the shaped rate, the
measured base round trip and the shaper's burst, with the framing measured on the bed (``calibrate_wire``).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

MODEL = "alexnet-cifar10"


def _measure(bed, plan, images, labels, requests: int, gap_s: float, deadline_ms: float) -> dict[str, Any]:
    total, correct, sent, where, reserved = [], [], [], [], []
    stages: dict[str, list[float]] = {"device_ms": [], "encode_ms": [], "network_ms": [], "server_ms": []}
    for i in range(requests + 1):
        time.sleep(gap_s)
        r = bed.client.infer(images[i % len(images)], plan.exit, plan.partition, plan.codec, deadline_ms=deadline_ms,
                             predicted_ms=plan.predicted_ms,
                             predicted_device_ms=None if plan.breakdown is None else plan.breakdown.device_ms)
        if i == 0:
            continue  # one unrecorded warm-up of this configuration
        total.append(r.total_ms)
        correct.append(bool(r.classes[0] == int(labels[i % len(images)])))
        sent.append(int(r.upload_bytes or 0))
        where.append(r.where)
        reserved.append(r.give_up_reserved)
        stages["device_ms"].append(float(r.device_ms))
        stages["encode_ms"].append(float(getattr(r, "encode_ms", 0.0) or 0.0))
        stages["network_ms"].append(float(r.network_ms or 0.0))
        stages["server_ms"].append(float((r.server_timings_ms or {}).get("server_ms", 0.0)))
    t = np.asarray(total)
    return {"exit": plan.exit, "partition": plan.partition, "codec": plan.codec, "card_accuracy": plan.accuracy,
            "predicted_ms": plan.predicted_ms, "requests": requests, "measured_top1": float(np.mean(correct)),
            "met_share": float(np.mean(t <= deadline_ms)),
            "latency_ms": {"median": float(np.median(t)), "p95": float(np.percentile(t, 95)),
                           "p99": float(np.percentile(t, 99)), "max": float(t.max())},
            "upload_bytes_mean": float(np.mean(sent)), "fallbacks": int(sum(w == "fallback" for w in where)),
            "give_up_reserved": sum(bool(g) for g in reserved),
            "stages_median_ms": {k: float(np.median(v)) for k, v in stages.items()},
            "stages_p99_ms": {k: float(np.percentile(v, 99)) for k, v in stages.items()},
            "total_ms": [round(v, 2) for v in total]}


def run(rate_bps: float = 50e3, deadline_ms: float = 300.0, requests: int = 100, rtt_ms: float = 20.0,
        emulate: bool | None = None, seed: int = 0, port: int = 8472) -> dict[str, Any]:
    """Bring the bed up, plan with and without the codec knob, measure both plans (see the module docstring)."""
    from edgent.data.cifar10 import request_images
    from edgent.model.card import resolve_accuracies
    from edgent.plan.link import Link, shaper_burst_bytes
    from edgent.plan.overhead import OverheadModel
    from edgent.plan.planner import Planner
    from edgent.plan.sources import table_for_model, with_codecs
    from edgent.testbed.bed import BedOptions, CoInferenceBed, calibrate_wire

    accs = list(resolve_accuracies(MODEL).values)
    base = table_for_model(MODEL, accuracies=accs)
    table = with_codecs(base, "card")
    images, labels, source = request_images(max(requests, 200) + 1, seed)
    opts = BedOptions(model=MODEL, rate_bps=2e6, rtt_ms=rtt_ms, emulate=emulate, port=port, seed=seed,
                      client_name="edgent-bench-lowrate")
    out: dict[str, Any] = {"model": MODEL, "rate_bps": rate_bps, "deadline_ms": deadline_ms, "inputs": source,
                           "codecs": list(table.codecs)}
    with CoInferenceBed(opts, base, accs) as bed:
        out["testbed"] = bed.describe()
        bed.warm_up(images[0])
        framing, overhead_ms = calibrate_wire(bed.client, images[0], "uint8", 3072, base.exits[-1].result_bytes,
                                              bed.kind == "netns")
        overhead = OverheadModel(fixed_ms_per_message=overhead_ms / 2).with_framing(framing)
        bed.testbed.set_rate(rate_bps)
        burst = float(shaper_burst_bytes(rate_bps))
        gap_s = max(0.05, 1.25 * 8.0 * burst / rate_bps + 0.01)
        rtts = []
        for _ in range(5):
            time.sleep(gap_s)
            t0 = time.perf_counter()
            bed.client.health()
            rtts.append((time.perf_counter() - t0) * 1e3)
        link = Link(rate_bps, rate_bps, float(min(rtts)), burst)
        out["link"] = link.to_json()
        for name, t in (("without_codecs", base), ("with_codecs", table)):
            plan = Planner(t, overhead).plan(link, deadline_ms)
            out[name] = {"plan": plan.to_json(), **_measure(bed, plan, images[1:], labels[1:], requests, gap_s,
                                                             deadline_ms)}
    return out


def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("lowrate", help="one static point (default 50 kbit/s, 300 ms) measured on the bed, "
                                             "Edgent with and without the codec knob")
    p.add_argument("--bandwidth", default="50kbit", help="link rate (default 50kbit)")
    p.add_argument("--deadline", default="300ms", help="latency requirement (default 300ms)")
    p.add_argument("--requests", type=int, default=100, help="measured requests per plan (default 100)")
    p.add_argument("--rtt", default="20ms", help="round-trip delay the device adds (default 20ms)")
    p.add_argument("--emulate", action="store_true", help="the emulated link even as root")
    add_common_options(p, "10 requests per plan")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edgent.bench.record import common_options, emit, write_result
    from edgent.plan.units import parse_duration_ms, parse_rate_bps

    common = common_options(args)
    result = run(parse_rate_bps(args.bandwidth, what="--bandwidth"),
                 parse_duration_ms(args.deadline, what="--deadline", allow_zero=False),
                 10 if common.quick else args.requests, parse_duration_ms(args.rtt, what="--rtt"),
                 True if args.emulate else None)
    path = write_result("lowrate-quick" if common.quick else "lowrate", result, common.out_dir)
    emit(result, path, common, _print_result)
    return 0


def _print_result(result: dict) -> None:
    for name in ("without_codecs", "with_codecs"):
        r = result[name]
        print(f"{name:>15}: exit {r['exit']} partition {r['partition']} codec {r['codec']}: predicted "
              f"{r['predicted_ms']:.1f} ms, measured median {r['latency_ms']['median']:.1f} ms p99 "
              f"{r['latency_ms']['p99']:.1f} ms, met {100 * r['met_share']:.1f} %, top-1 {r['measured_top1']:.4f} "
              f"({r['requests']} requests, {r['upload_bytes_mean']:.0f} B up)")
