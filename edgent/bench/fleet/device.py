"""One emulated device of ``edgent bench fleet``, as its own process (``python -m edgent.bench.fleet.device``).

It loads the model and its latency table once, says ``ready`` on stdout, then runs one segment per JSON line on
stdin: an :class:`~edgent.runtime.agent.EdgentAgent` with the segment's policy against the edge at the given port,
over its own emulated link (:class:`~edgent.runtime.link.AppLink`) with its compute slowed
(:class:`~edgent.profile.throttle.Slowdown` on its thread's CPU time), requests arriving as a Poisson process from
the segment's start time (``time.monotonic``, shared by the processes of a host). A request that arrives while
the previous one is served waits, and its wait is part of its time. It answers one JSON line per segment: per
request (arrival s, total ms, met, where, exit used, correct or None). A ``closed_loop`` segment measures the
edge's capacity instead (:func:`run_closed_loop`): per answer (done s, total ms, batch size)."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _client(cmd: dict[str, Any], chain: Any, cands: Any, slowdown: Any = None) -> Any:
    """This device's client of the segment's edge: over its own emulated link, its fallback priced by the
    table, its compute slowed by ``slowdown`` (None: as it is)."""
    from edgent.runtime.bandwidth import BandwidthEstimator
    from edgent.runtime.client import DeviceClient
    from edgent.runtime.link import AppLink

    link = AppLink(delay_ms=cmd["link_delay_ms"], rate_bps=cmd["link_rate_bps"])
    return DeviceClient("127.0.0.1", cmd["port"], chain, link=link, estimator=BandwidthEstimator(shaper="app"),
                        slowdown=slowdown, device_exit_ms=cands.tables[0].fallback_device_ms(),
                        client_name=f"device-{cmd['id']}")


def run_segment(cmd: dict[str, Any], chain: Any, cands: Any, images: Any, labels: Any) -> dict[str, Any]:
    """Serve one segment's requests (see the module docstring)."""
    import numpy as np

    from edgent.profile.throttle import Slowdown
    from edgent.runtime.agent import AgentOptions, EdgentAgent

    client = _client(cmd, chain, cands, slowdown=Slowdown(cmd["device_factor"], "thread-cpu"))
    opts = AgentOptions(deadline_ms=cmd["deadline_ms"], policy=cmd["policy"], prior_rate_bps=cmd["link_rate_bps"],
                        prior_rtt_ms=cmd["link_delay_ms"], load_aware=cmd["load_aware"], margin=cmd["margin"])
    rng = np.random.default_rng(cmd["seed"])
    out = []
    # the agent's own record per request (its plan, predicted and measured times, fallback reason), when asked
    with EdgentAgent(client, cands, opts, records=cmd.get("records_path")) as agent:
        t0 = cmd["t_start"]
        t_end = t0 + cmd["duration_s"]
        t = t0 + rng.exponential(1.0 / cmd["rate_per_s"])
        k = int(rng.integers(0, len(images)))
        while t < t_end:
            now = time.monotonic()
            if t > now:
                time.sleep(t - now)
            # the arrival on this process's perf_counter clock (the agent counts from it)
            t_arr = time.perf_counter() - max(time.monotonic() - t, 0.0)
            label = None if labels is None else int(labels[k % len(images)])
            rec = agent.handle(images[k % len(images)], label, t_arrival=t_arr)
            out.append([round(t - t0, 4), rec["total_ms"], rec["met"], rec["where"], rec["exit_used"],
                        rec["correct"]])
            k += 1
            t += rng.exponential(1.0 / cmd["rate_per_s"])
    client.close()
    return {"id": cmd["id"], "requests": out}


def run_closed_loop(cmd: dict[str, Any], chain: Any, cands: Any, images: Any) -> dict[str, Any]:
    """Keep one request at the edge at all times from the segment's start to its end: the edge-only
    configuration (the main exit, everything on the edge, the table's input codec), over this device's link,
    without a deadline and without a fallback (an edge's capacity, not a deadline, is measured). A failed request
    is counted in ``failed``, its reason kept, and the next one sent."""
    from edgent.errors import EdgentError

    table = cands.tables[0]
    client = _client(cmd, chain, cands)
    main_exit = table.exits[-1].exit
    out, failed, reasons = [], 0, []
    t0 = cmd["t_start"]
    t_end = t0 + cmd["duration_s"]
    k = cmd["id"]
    now = time.monotonic()
    if t0 > now:
        time.sleep(t0 - now)
    while time.monotonic() < t_end:
        try:
            res = client.infer(images[k % len(images)], main_exit, 0, codec=table.input_codec, fallback=False)
            out.append([round(time.monotonic() - t0, 4), round(res.total_ms, 3),
                        int((res.server_timings_ms or {}).get("batch_size", 1))])
        except EdgentError as exc:
            failed += 1
            if len(reasons) < 3:
                reasons.append(f"{type(exc).__name__}: {exc}")
        k += 1
    client.close()
    return {"id": cmd["id"], "answers": out, "failed": failed, "failure_reasons": reasons}


def main() -> int:
    import torch

    torch.set_num_threads(1)  # the device's compute on its own thread: the slowdown counts its CPU time
    from edgent.adapt.config_map import Candidates
    from edgent.data.cifar10 import request_images
    from edgent.data.imagefolder import resize_batch
    from edgent.model.zoo import load_for_inference
    from edgent.plan.sources import table_for_model
    from edgent.profile.throttle import role_emulation

    model, factor, seed, random_weights = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    device_profile, edge_profile = (sys.argv[5] or None, sys.argv[6] or None) if len(sys.argv) > 6 else (None, None)
    chain = load_for_inference(model, random_weights=random_weights, seed=0)
    table = table_for_model(model, device_profile=device_profile, edge_profile=edge_profile).with_device_factor(
        factor / role_emulation("device").slowdown)
    cands = Candidates([table])
    images, labels, _ = request_images(256, seed=seed)
    # CIFAR-10 at the model's input size (bilinear, as `edgent eval` and `edgent infer` resize it)
    images = resize_batch(torch.from_numpy(images), chain.input_shape[1:]).numpy()
    print("ready", flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        cmd = json.loads(line)
        try:
            res = (run_closed_loop(cmd, chain, cands, images) if cmd.get("closed_loop")
                   else run_segment(cmd, chain, cands, images, labels))
        except Exception as exc:  # noqa: BLE001 - reported to the benchmark, which says so
            res = {"id": cmd.get("id"), "error": f"{type(exc).__name__}: {exc}", "requests": []}
        print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
