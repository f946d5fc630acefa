"""``edgent bench runtime``: the runtime's own costs, measured on loopback.

- Framework overhead per request: total time minus device compute, minus edge compute, minus the wire time of the
  bytes (bytes over the loopback throughput, measured with large PROBE frames), for a real ``edgent serve`` process.
- Codec encode/decode throughput (bytes of the tensor per second) and payload size.
- Codec accuracy cost: top-1 agreement with float32 (and accuracy when CIFAR-10 labels are there) of each codec
  at several partition points.
- With ``--compare-grpc`` (needs the grpcio package): round-trip time of gRPC unary calls against this
  protocol's frames, the measurement behind the choice of transport.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from edgent.bench.record import tree_commit
from edgent.codec import get_codec, measure_throughput
from edgent.errors import ConfigError, EdgentError

TENSOR_CODECS = ["float32", "float16", "int8", "float32+zlib", "float16+zlib", "int8+zlib"]
PIXEL_CODECS = ["uint8", "uint8+zlib", "jpeg", "jpeg75"]


def codec_throughput(min_time_s: float = 0.2) -> list[dict[str, Any]]:
    """Encode/decode speed of every codec: tensors on a 4 MiB ReLU-like activation, pixels on 64 CIFAR images."""
    g = torch.Generator().manual_seed(0)
    act = torch.relu(torch.randn(16, 64, 32, 32, generator=g))
    pixels = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    try:
        from edgent.data.cifar10 import load_split

        pixels = torch.from_numpy(load_split("test").images[:64])
        pixel_source = "CIFAR-10 test images"
    except Exception:  # noqa: BLE001 - data missing: random pixels, said so
        pixel_source = "random pixels (CIFAR-10 not found)"
    out = []
    saved_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one core, as on a device (and stable when the machine is shared)
    try:
        results = [(name, measure_throughput(name, pixels if name in PIXEL_CODECS else act, min_time_s))
                   for name in TENSOR_CODECS + PIXEL_CODECS]
    finally:
        torch.set_num_threads(saved_threads)
    for name, r in results:
        t = pixels if name in PIXEL_CODECS else act
        out.append({"codec": name, "input": "16x64x32x32 ReLU activation" if t is act else f"64 {pixel_source}",
                    "tensor_bytes": r.tensor_bytes, "payload_bytes": r.payload_bytes,
                    "size_ratio": round(r.payload_bytes / r.tensor_bytes, 4),
                    "encode_GBps": round(r.encode_bytes_per_s / 1e9, 3),
                    "decode_GBps": round(r.decode_bytes_per_s / 1e9, 3)})
    return out


#: the edge server's hand-off settings compared by the overhead measurement (name -> `edgent serve` flags)
SERVER_VARIANTS = {
    "default": ["--threads", "1"],  # a worker thread, but an idle edge computes on the event loop
    "always_hand_off": ["--threads", "1", "--always-hand-off"],
    "inline": ["--threads", "0"],
}


#: with ``--ray``: the same device against ``edgent serve --backend ray`` (one replica, on the CPU), with Ray
#: Serve's batching as served by default and without it (a batch of one does not wait for company)
RAY_VARIANTS = {
    "ray": ["--threads", "1", "--backend", "ray", "--device", "cpu", "--replicas", "1"],
    "ray_batch1": ["--threads", "1", "--backend", "ray", "--device", "cpu", "--replicas", "1", "--ray-batch", "1"],
}


#: the parts of the framework overhead per request, in the order they happen (see :func:`overhead_row`)
OVERHEAD_PARTS = ("client", "edge_decode", "edge_encode", "edge_rest", "transport")


def overhead_row(r: Any, wire_ms: float) -> dict[str, float]:
    """One edge-answered request's times (ms): its total, device compute, edge compute, the bytes' wire time, the
    framework overhead (total less those three) and the overhead's parts, which add up to it:

    - ``client``: the device's own framework work (the request and its frame built, the codec's encode, the
      answer parsed and decoded): total less device compute less the send-to-answer time;
    - ``edge_decode``/``edge_encode``: the edge decoding the payload and readying the logits;
    - ``edge_rest``: the rest of the edge's time from the frame read to its answer built (checks, admission,
      the hand-off to compute, the answer's meta);
    - ``transport``: the send-to-answer time less the edge's time and the wire time (system calls, the two
      processes' wake-ups, the edge's event loop reading and writing the frames)."""
    t = r.server_timings_ms
    server_ms, compute_ms = t["server_ms"], t["compute_ms"]
    rtt_ms = (r.network_ms or 0.0) + server_ms
    row = {"total": r.total_ms, "device": r.device_ms, "edge_compute": compute_ms, "wire": wire_ms,
           "overhead": r.total_ms - r.device_ms - compute_ms - wire_ms, "encode": r.encode_ms,
           "edge_other": server_ms - compute_ms,
           "client": r.total_ms - r.device_ms - rtt_ms, "edge_decode": t.get("decode_ms", 0.0),
           "edge_encode": t.get("encode_ms", 0.0), "transport": rtt_ms - server_ms - wire_ms}
    row["edge_rest"] = row["edge_other"] - row["edge_decode"] - row["edge_encode"]
    return row


#: with ``--baseline-src``: the previous code's default setting, its server and its device from that source tree
BASELINE = "previous_default"
#: with ``--floor``: the least a Python co-inference costs on this host (:mod:`edgent.bench.runtime_floor`)
FLOOR = "floor"


class _DeviceProcess:
    """One device of the overhead measurement in a process of its own (:mod:`edgent.bench.runtime_device`, or
    with ``floor`` the floor's device, :mod:`edgent.bench.runtime_floor`), importing ``edgent`` from ``src``."""

    def __init__(self, src: Path, port: int, model: str, random_weights: bool, plans: list[tuple],
                 floor: bool = False) -> None:
        import subprocess

        args = json.dumps({"port": port, "model": model, "random_weights": random_weights, "plans": plans})
        if floor:
            cmd = [sys.executable, str(Path(__file__).with_name("runtime_floor.py")), "device", args]
        else:
            code = (Path(__file__).with_name("runtime_device.py")).read_text()
            cmd = [sys.executable, "-c", code, args]
        # the process imports from its working directory and PYTHONPATH, both ``src``
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=src,
                                     env={**os.environ, "PYTHONPATH": str(src)})
        hello = self._read()
        self.edgent_file = hello.get("edgent", "")
        if not Path(self.edgent_file).resolve().is_relative_to(src.resolve()):
            self.close()
            raise ConfigError(f"the device process for {src} imported edgent from {self.edgent_file}; give a source "
                              "tree with an edgent package (e.g. a `git worktree add` of the commit to compare)")

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise EdgentError(f"the device process exited (code {self.proc.poll()}) without an answer")
        return json.loads(line)

    def ask(self, cmd: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.ask({"do": "stop"})
            except (OSError, EdgentError, ValueError):
                pass
            try:
                self.proc.wait(10)
            except Exception:  # noqa: BLE001 - it is killed below
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def loopback_overhead(requests: int, model: str, random_weights: bool,
                      variants: dict[str, list[str]] | None = None,
                      baseline_src: str | Path | None = None, floor: bool = False) -> dict[str, dict[str, Any]]:
    """Median framework overhead per request against real `edgent serve` processes on loopback, one per server
    variant, each asked by a device process of its own (:mod:`edgent.bench.runtime_device`), all started at once
    and asked in rounds (one request per variant and round, the same plan, in a seeded order of its own per
    round), so that the variants see the same machine state, none always follows the same other one, and their
    figures can be compared side by side. With ``baseline_src`` (a source tree of the previous code), one
    more variant, :data:`BASELINE`: that tree's ``edgent serve`` with the default flags and that tree's device. With
    ``floor``, one more, :data:`FLOOR`: the same work with no framework (:mod:`edgent.bench.runtime_floor`, on the
    default event loop), the host's share of the overhead."""
    from edgent.model.zoo import load_for_inference
    from edgent.runtime.local import free_port, serve_process, stop_process

    load_at_start = os.getloadavg()[0]  # (the run's own processes raise the load average while it lasts)
    here = Path(__file__).resolve().parents[2]  # the source tree of this edgent
    variants = dict(variants or SERVER_VARIANTS)
    sources = {name: here for name in variants}
    if baseline_src is not None:
        src = Path(baseline_src).resolve()
        if not (src / "edgent" / "runtime" / "server.py").is_file():
            raise ConfigError(f"--baseline-src {baseline_src} holds no edgent source tree (edgent/runtime/server.py "
                              "is missing); make one with `git worktree add DIR COMMIT`")
        variants[BASELINE] = SERVER_VARIANTS["default"]
        sources[BASELINE] = src
    if floor:
        variants[FLOOR] = []
        sources[FLOOR] = here
    chain = load_for_inference(model, random_weights=random_weights, seed=0)
    plans = []
    for ep in chain.exit_points:
        n = ep.num_units
        plans += [(ep.exit, 0, "uint8"), (ep.exit, max(1, n // 3), "float32"), (ep.exit, n - 1, "float32")]
    flags = ["--model", model] + (["--random-weights", "--seed", "0"] if random_weights else [])
    procs, devices = {}, {}
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    wire_bps: dict[str, float] = {}
    try:
        for name, extra in variants.items():
            port = free_port()
            src = sources[name]
            if name == FLOOR:
                procs[name] = _floor_edge(port, model, random_weights, plans)
            else:
                procs[name] = serve_process(port, model_flags=flags, extra=["--torch-threads", "1", *extra],
                                            env={**os.environ, "PYTHONPATH": str(src)}, cwd=src)
            devices[name] = _DeviceProcess(src, port, model, random_weights, plans, floor=name == FLOOR)
        for name, d in devices.items():
            wire_bps[name] = d.ask({"do": "wire"})["wire_bps"]  # loopback throughput: 8 MiB PROBE frames
            d.ask({"do": "warm"})
        if floor:  # (the same host and kernel: the floor takes the default's loopback throughput)
            wire_bps[FLOOR] = wire_bps["default"]
        names = list(variants)
        order = random.Random(0)
        for round_ in range(requests):  # one request per setting and round, in a seeded order of its own per round
            for name in order.sample(names, len(names)):  # (no setting always follows the same one)
                r = SimpleNamespace(**devices[name].ask({"do": "infer", "plan": round_ % len(plans)}))
                if r.where != "edge":
                    raise EdgentError(f"a request of the overhead measurement ({name}) was not answered by the edge: "
                                      f"{r.fallback_reason}")
                wire_ms = 8 * (r.upload_bytes + r.download_bytes) / wire_bps[name] * 1e3
                rows[name].append(overhead_row(r, wire_ms))
    finally:
        for d in devices.values():
            d.close()
        for proc in procs.values():
            stop_process(proc)

    out = {}
    for name, rs in rows.items():
        def pct(key: str, q: float) -> float:
            return round(float(np.percentile([r[key] for r in rs], q)), 4)

        out[name] = {
            "requests": requests, "plans": len(plans), "serve_flags": variants[name],
            "source": "this tree" if sources[name] == here else str(sources[name]),
            "source_commit": tree_commit(sources[name]),
            "loopback_Gbps": round(wire_bps[name] / 1e9, 2),
            "overhead_ms": {"median": pct("overhead", 50), "p90": pct("overhead", 90), "p99": pct("overhead", 99)},
            "median_ms": {k: pct(k, 50) for k in ("total", "device", "edge_compute", "wire", "encode", "edge_other")},
            "overhead_breakdown_median_ms": {k: pct(k, 50) for k in OVERHEAD_PARTS},
            "target_median_overhead_ms": 0.5, "load_average_1min": round(os.getloadavg()[0], 2),
            "load_average_1min_at_start": round(load_at_start, 2),
            "weights": "random (seeded)" if random_weights else "trained"}
    return out


def _floor_edge(port: int, model: str, random_weights: bool, plans: list[tuple]) -> Any:
    """The floor's edge process (:mod:`edgent.bench.runtime_floor`), listening on ``port`` once this returns."""
    import subprocess

    args = json.dumps({"port": port, "model": model, "random_weights": random_weights, "plans": plans})
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("runtime_floor.py")), "serve", args],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        proc.kill()
        raise EdgentError(f"the floor's edge did not start (exit code {proc.wait(10)})")
    return proc


def versus_previous(overhead: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The default against the previous code's default (:data:`BASELINE`) of one run: both medians, their ratio
    (new / previous) and both breakdowns; None without a baseline."""
    if BASELINE not in overhead:
        return None
    new, old = overhead["default"], overhead[BASELINE]
    return {"previous_source": old["source"], "previous_commit": old["source_commit"],
            "median_overhead_ms": {"default": new["overhead_ms"]["median"], BASELINE: old["overhead_ms"]["median"]},
            "ratio_default_over_previous": round(new["overhead_ms"]["median"] / old["overhead_ms"]["median"], 3),
            "overhead_breakdown_median_ms": {"default": new["overhead_breakdown_median_ms"],
                                             BASELINE: old["overhead_breakdown_median_ms"]}}


def versus_floor(overhead: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The default against the floor (:data:`FLOOR`) of one run: both medians, their difference (what edgent's
    framework adds to the least a Python co-inference costs on this host) and both breakdowns; None without it."""
    if FLOOR not in overhead:
        return None
    new, floor = overhead["default"], overhead[FLOOR]
    return {"median_overhead_ms": {"default": new["overhead_ms"]["median"], FLOOR: floor["overhead_ms"]["median"]},
            "framework_ms": round(new["overhead_ms"]["median"] - floor["overhead_ms"]["median"], 4),
            "overhead_breakdown_median_ms": {"default": new["overhead_breakdown_median_ms"],
                                             FLOOR: floor["overhead_breakdown_median_ms"]}}


def codec_accuracy(model: str, random_weights: bool, n_images: int = 500) -> dict[str, Any]:
    """Top-1 agreement of each codec with float32 at several partition points of the main exit (and accuracy
    against the labels when CIFAR-10 is available)."""
    from edgent.model.zoo import load_for_inference
    from edgent.model.preprocess import default_preprocess, get_preprocess

    chain = load_for_inference(model, random_weights=random_weights, seed=0)
    labels = None
    try:
        from edgent.data.cifar10 import load_split

        split = load_split("test")
        idx = np.linspace(0, len(split) - 1, min(n_images, len(split))).astype(np.int64)  # every class
        pixels = torch.from_numpy(split.images[idx])
        labels = torch.from_numpy(split.labels[idx])
        source = f"{len(pixels)} CIFAR-10 test images spread over the split (JPEG-re-encoded mirror)"
    except Exception:  # noqa: BLE001
        pixels = torch.randint(0, 256, (n_images, *chain.input_shape), dtype=torch.uint8)
        source = "random pixels (CIFAR-10 not found): agreement only"
    x = get_preprocess(default_preprocess(model))(pixels)
    ep = chain.exit_point(None)
    n = ep.num_units
    points = sorted({0, 1, n // 4, n // 2, (3 * n) // 4, n - 1})
    out: dict[str, Any] = {"images": source, "exit": ep.exit, "weights": "random (seeded)" if random_weights
                           else "trained", "points": {}}
    with torch.inference_mode():
        ref = chain(x, exit=ep.exit)
        ref_cls = ref.argmax(1)
        if labels is not None:
            out["float32_accuracy"] = round(float((ref_cls == labels).float().mean()), 4)
        for p in points:
            h = chain.run_device(x, ep.exit, p)
            rows = {}
            for name in ("float16", "int8") + (("jpeg", "jpeg75") if p == 0 else ()):
                codec = get_codec(name)
                if codec.kind == "pixels":
                    dec = torch.cat([codec.decode(codec.encode(pixels[i:i + 100]), pixels[i:i + 100].shape)
                                     for i in range(0, len(pixels), 100)])
                    logits = chain(get_preprocess(default_preprocess(model))(dec), exit=ep.exit)
                    size = len(codec.encode(pixels[:100])) / 100
                else:
                    logits = torch.cat([chain.run_edge(codec.decode(codec.encode(h[i:i + 1]), h[i:i + 1].shape),
                                                       ep.exit, p) for i in range(len(h))])
                    size = codec.payload_bytes((1, *h.shape[1:]))
                cls = logits.argmax(1)
                row = {"agreement": round(float((cls == ref_cls).float().mean()), 4),
                       "payload_bytes_per_image": round(size, 1),
                       "max_abs_logit_error": round(float((logits - ref).abs().max()), 5)}
                if labels is not None:
                    row["accuracy"] = round(float((cls == labels).float().mean()), 4)
                rows[name] = row
            out["points"][str(p)] = {"tensor_shape": list(h.shape[1:]), "float32_bytes": 4 * int(h[0].numel()),
                                     **rows}
    return out


def compare_grpc(requests: int = 300) -> dict[str, Any] | None:
    """gRPC unary (raw bytes, no protobuf) against this protocol's PROBE frames, same payload sizes, loopback."""
    import importlib.util
    import subprocess

    if importlib.util.find_spec("grpc") is None:  # optional: pip install grpcio
        return None

    from edgent.runtime import DeviceClient
    from edgent.runtime.local import free_port, serve_process, stop_process
    from edgent.runtime.protocol import MsgType, encode_frame

    code = ("import grpc,sys\nfrom concurrent import futures\n"
            "h=grpc.method_handlers_generic_handler('edgent.Edge',{'Probe':grpc.unary_unary_rpc_method_handler("
            "lambda r,c: b'{\"received_bytes\":%d}'%len(r))})\n"
            "s=grpc.server(futures.ThreadPoolExecutor(2),options=[('grpc.max_receive_message_length',64<<20)])\n"
            "s.add_generic_rpc_handlers((h,));s.add_insecure_port('127.0.0.1:'+sys.argv[1]);s.start()\n"
            "print('ready',flush=True);s.wait_for_termination()\n")
    gport, fport = free_port(), free_port()
    gproc = subprocess.Popen([sys.executable, "-c", code, str(gport)], stdout=subprocess.PIPE, text=True)
    fproc = serve_process(fport)
    out: dict[str, Any] = {}
    try:
        gproc.stdout.readline()
        import grpc

        ch = grpc.insecure_channel(f"127.0.0.1:{gport}", options=[("grpc.max_send_message_length", 64 << 20)])
        call = ch.unary_unary("/edgent.Edge/Probe")
        from edgent.model.zoo import load_model

        c = DeviceClient("127.0.0.1", fport, load_model("alexnet-cifar10", pretrained=False), device_exit_ms={1: 1})
        c.connect()
        for size in (64, 12288, 262144, 4 << 20):
            payload = bytes(size)
            for name, send in (("grpc", lambda b: call(b)),
                               ("frames", lambda b: c._exchange(encode_frame(MsgType.PROBE, {"id": 1}, b), 10))):
                for _ in range(10):
                    send(payload)
                ts = []
                for _ in range(requests if size < 1e6 else 30):
                    t0 = time.perf_counter()
                    send(payload)
                    ts.append((time.perf_counter() - t0) * 1e3)
                out[f"{name}_{size}B_median_ms"] = round(statistics.median(ts), 4)
        c.close()
    finally:
        gproc.terminate()
        gproc.wait(10)
        stop_process(fproc)
    return out


def run(args: argparse.Namespace) -> int:
    from edgent.bench.record import write_result
    from edgent.model.zoo import zoo_entry

    entry = zoo_entry(args.model)
    random_weights = args.random_weights or entry.weights is None or not entry.weights.is_file()
    result: dict[str, Any] = {"model": args.model}
    variants = dict(SERVER_VARIANTS)
    if args.settings:
        names = [n.strip() for n in args.settings.split(",") if n.strip()]
        unknown = [n for n in names if n not in SERVER_VARIANTS]
        if unknown or "default" not in names:
            raise ConfigError(f"--settings takes a comma-separated list of {', '.join(SERVER_VARIANTS)} that holds "
                              f"default, got {args.settings!r}")
        variants = {n: SERVER_VARIANTS[n] for n in names}
    if args.ray:
        from edgent.runtime.ray_backend import import_ray

        import_ray()  # a clear error without Ray, before any server starts
        variants.update(RAY_VARIANTS)
    result["overhead"] = loopback_overhead(args.requests, args.model, random_weights, variants, args.baseline_src,
                                           args.floor)
    vs = versus_previous(result["overhead"])
    if vs is not None:
        result["overhead_vs_previous"] = vs
    vf = versus_floor(result["overhead"])
    if vf is not None:
        result["overhead_vs_floor"] = vf
    result["codecs"] = codec_throughput(args.min_time_s)
    if not args.quick:
        result["codec_accuracy"] = codec_accuracy(args.model, random_weights, args.images)
    if args.compare_grpc:
        result["transport_comparison"] = compare_grpc() or "grpcio not installed"
    f32 = next(c for c in result["codecs"] if c["codec"] == "float32")
    result["checks"] = {"median_overhead_le_0_5ms": result["overhead"]["default"]["overhead_ms"]["median"] <= 0.5,
                        "float32_encode_ge_1GBps": f32["encode_GBps"] >= 1.0,
                        "float32_decode_ge_1GBps": f32["decode_GBps"] >= 1.0}
    if vs is not None:
        result["checks"]["median_overhead_below_previous_default"] = vs["ratio_default_over_previous"] < 1.0
    path = write_result("runtime", result, args.out_dir)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for name, o in result["overhead"].items():
            print(f"framework overhead per request (loopback, {o['requests']} requests, server {name}: "
                  f"{' '.join(o['serve_flags'])}): median {o['overhead_ms']['median']:.3f} ms, "
                  f"p90 {o['overhead_ms']['p90']:.3f} ms; median parts: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in o["overhead_breakdown_median_ms"].items()))
        if vf is not None:
            print(f"default - floor: {vf['median_overhead_ms']['default']:.3f} - {vf['median_overhead_ms'][FLOOR]:.3f} "
                  f"ms = {vf['framework_ms']:.3f} ms of edgent's own per request")
        if vs is not None:
            print(f"default / previous default ({vs['previous_source']}, {vs['previous_commit']}): median overhead "
                  f"{vs['median_overhead_ms']['default']:.3f} / {vs['median_overhead_ms'][BASELINE]:.3f} ms = "
                  f"x{vs['ratio_default_over_previous']:.3f}")
        for c in result["codecs"]:
            print(f"  {c['codec']:>14}: encode {c['encode_GBps']:7.3f} GB/s, decode {c['decode_GBps']:7.3f} GB/s, "
                  f"size x{c['size_ratio']}")
        print(f"written to {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = sub.add_parser("runtime", help="runtime overhead on loopback, codec throughput and accuracy cost")
    p.add_argument("--model", default="alexnet-cifar10")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights even if trained exist")
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--images", type=int, default=500, help="test images for the codec accuracy cost")
    p.add_argument("--min-time-s", type=float, default=0.2, help="timing per codec and direction")
    p.add_argument("--ray", action="store_true",
                   help="also measure `edgent serve --backend ray` (needs Ray Serve): the overhead Ray adds per request")
    p.add_argument("--compare-grpc", action="store_true", help="also time gRPC against the frames (needs grpcio)")
    p.add_argument("--settings", metavar="NAMES",
                   help=f"server settings measured side by side, comma-separated (default: all of "
                        f"{', '.join(SERVER_VARIANTS)}); each server waits for the others' requests in between")
    p.add_argument("--floor", action="store_true",
                   help="also measure the floor: the same requests with no framework (a bare protocol callback and "
                        "socket), what this host costs any Python co-inference")
    p.add_argument("--baseline-src", metavar="DIR",
                   help="a source tree of the previous code (e.g. `git worktree add DIR COMMIT`): its `edgent serve` "
                        "and its device are measured side by side with this tree's, as setting previous_default")
    add_common_options(p, "skip the codec accuracy cost")
    p.set_defaults(func=run)
