"""``edgent serve``, ``edgent infer`` and ``edgent testbed up|down|run``: the co-inference runtime on the command
line (see docs/runtime.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from edgent import argtypes
from edgent.errors import ConfigError, EdgentError, ModelError
from edgent.jsonio import dumps_finite
from edgent.model.zoo import load_for_inference
from edgent.testbed import MIN_REPLAY_BPS


# ---------------------------------------------------------------------------------------------- shared helpers
def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="alexnet-cifar10", help="zoo model name (default: alexnet-cifar10)")
    p.add_argument("--weights", type=argtypes.existing_file("the weights file"),
                   help="weights file (.safetensors) instead of the committed ones")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights (before training finishes; use the same --seed on device and edge)")
    p.add_argument("--seed", type=argtypes.integer(0), default=0, help="seed for --random-weights (default 0)")


def model_flags(args: argparse.Namespace) -> list[str]:
    """The model flags of ``args`` as command-line words (to start a matching edge server)."""
    out = ["--model", args.model, "--seed", str(args.seed)]
    if args.weights:
        out += ["--weights", args.weights]
    if args.random_weights:
        out.append("--random-weights")
    return out


def _token(args: argparse.Namespace) -> str | None:
    """The shared token: --token-file (already read and checked when parsed), --token, or $EDGENT_TOKEN."""
    if getattr(args, "token_file", None):
        if args.token:
            raise ConfigError("give the token with --token or --token-file, not both")
        return args.token_file
    return args.token or os.environ.get("EDGENT_TOKEN", "").strip() or None


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exit", type=argtypes.integer(1), default=None, help="exit (1-based; default: the main exit)")
    p.add_argument("--partition", type=argtypes.integer(0), default=0,
                   help="partition point (0 = edge only, N = device only)")
    p.add_argument("--codec", default="float32", help="codec of the crossing tensor (float32, float16, int8, "
                   "uint8, jpeg, with optional +zlib)")
    p.add_argument("--deadline-ms", type=argtypes.number(0.0), default=None, help="latency requirement per request")
    p.add_argument("--count", type=argtypes.integer(1), default=1, help="requests to send")
    p.add_argument("--index", type=argtypes.integer(0), default=0, help="first CIFAR-10 test image (default 0)")
    p.add_argument("--random-input", action="store_true", help="random pixels instead of CIFAR-10 test images")
    p.add_argument("--token", type=argtypes.token, help="shared token (also $EDGENT_TOKEN)")
    p.add_argument("--token-file", type=argtypes.token_file, help="file holding the shared token")
    p.add_argument("--tls-ca", type=argtypes.existing_file("the CA file"),
                   help="enable TLS; trust this CA/certificate file (PEM)")
    p.add_argument("--records", type=argtypes.new_file("the records file"),
                   help="append one JSON line per request to this file")
    p.add_argument("--edge-only", action="store_true",
                   help="no answer on the device: a request the edge does not answer fails (its record says why) "
                        "and the command exits with code 1 (default: fall back on the device and say why)")
    p.add_argument("--slowdown", type=argtypes.number(1.0, allow_low=True), default=None,
                   help="emulate a device this many times slower")
    p.add_argument("--cpu-quota", type=argtypes.number(0.0, high=1.0), default=None,
                   help="limit the device to this fraction of one CPU (cgroup v1 quota, root)")
    p.add_argument("--delay-ms", type=argtypes.number(0.0, allow_low=True), default=0.0,
                   help="round-trip delay added by the application")
    p.add_argument("--rate-bps", type=argtypes.number(MIN_REPLAY_BPS, allow_low=True), default=None,
                   help=f"emulated link rate, at least {MIN_REPLAY_BPS:g} bit/s (token bucket in the client; "
                        "without root)")
    p.add_argument("--json", action="store_true", help="print one JSON object per request")
    p.add_argument("--device-runtime", default="torch", choices=("torch", "onnx"),
                   help="what runs the device part: eager PyTorch (default) or ONNX Runtime (each part exported "
                        "once and cached, edgent.model.onnx_parts)")


def _device_context(args: argparse.Namespace):
    """Slowdown / CPU quota for the device role, from edgent.profile.throttle (imported only when asked)."""
    slowdown = None
    stack = contextlib.ExitStack()
    if args.slowdown is not None or args.cpu_quota is not None:
        try:
            from edgent.profile import throttle
        except ImportError as exc:
            raise ConfigError(f"--slowdown/--cpu-quota need edgent.profile.throttle, which is missing: {exc}") from exc
        if args.slowdown is not None:
            slowdown = throttle.Slowdown(args.slowdown)
        if args.cpu_quota is not None:
            stack.enter_context(throttle.cpu_quota(args.cpu_quota))
    return slowdown, stack


def _inputs(args: argparse.Namespace, chain) -> tuple[Any, list[int | None]]:
    import torch

    n = args.count
    if args.random_input or len(chain.input_shape) != 3 or chain.input_shape[0] != 3 or chain.num_classes != 10:
        g = torch.Generator().manual_seed(args.index)
        return torch.randint(0, 256, (n, *chain.input_shape), dtype=torch.uint8, generator=g), [None] * n
    from edgent.data.cifar10 import load_split
    from edgent.data.imagefolder import resize_batch

    split = load_split("test")
    idx = [(args.index + i) % len(split) for i in range(n)]
    images = resize_batch(torch.from_numpy(split.images[idx]), chain.input_shape[1:])  # CIFAR-10 at the model's size
    return images, [int(split.labels[i]) for i in idx]


def _device_warnings() -> logging.Handler:
    """Show the device client's warnings (a refused token, a TLS certificate that does not verify) on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("edgent.device")
    logger.addHandler(handler)
    logger.propagate = False
    return handler


def run_device_requests(args: argparse.Namespace, host: str, port: int, link=None, chain=None) -> int:
    """The body of `edgent infer` (also used by `edgent testbed run`): ``--count`` requests, one line each.

    An edge-side failure is answered on the device (the line and the record say why) unless ``--edge-only``;
    then the request fails, its record says why, and the exit code is 1. A refused token or a TLS certificate
    that does not verify is also warned about on stderr."""
    from edgent.runtime.client import DeviceClient, client_ssl_context
    from edgent.runtime.link import AppLink
    from edgent.runtime.session import DeviceRuntime, fixed_plan

    chain = chain or load_for_inference(args.model, args.weights, args.random_weights, args.seed)
    if getattr(args, "device_runtime", "torch") == "onnx":
        from edgent.model.onnx_parts import OnnxDeviceChain

        chain = OnnxDeviceChain(chain)
        chain.prepare(args.exit or chain.num_exits, args.partition)  # export the device part now, not in request 1
    exit_ = args.exit or chain.num_exits
    if not 1 <= exit_ <= chain.num_exits:
        raise ConfigError(f"--exit {exit_} is out of range: {chain.name} has exits 1..{chain.num_exits}")
    n_units = chain.exit_point(exit_).num_units
    if not 0 <= args.partition <= n_units:
        raise ConfigError(f"--partition {args.partition} is out of range: exit {exit_} of {chain.name} has points "
                          f"0..{n_units} (0: all on the edge, {n_units}: all on the device)")
    from edgent.codec import get_codec

    get_codec(args.codec)  # an unknown codec is refused before anything starts
    slowdown, stack = _device_context(args)
    link = link or AppLink(delay_ms=args.delay_ms, rate_bps=args.rate_bps)
    if link.emulated and getattr(args, "_say_emulated", True):
        print(f"edgent: EMULATED link: {link.rate_bps / 1e6:g} Mbit/s enforced by a token bucket in this client "
              "(no tc shaping)", file=sys.stderr)
    try:
        ssl_ctx = client_ssl_context(args.tls_ca) if args.tls_ca else None
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"--tls-ca {args.tls_ca} is not a PEM certificate file: {exc}") from None
    x, labels = _inputs(args, chain)
    met = served = failed = 0
    handler = _device_warnings()
    edge_only = getattr(args, "edge_only", False)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(logging.getLogger("edgent.device").removeHandler, handler)
        cleanup.enter_context(stack)
        client = cleanup.enter_context(DeviceClient(host, port, chain, token=_token(args), ssl_context=ssl_ctx,
                                                    link=link, slowdown=slowdown))
        runtime = cleanup.enter_context(DeviceRuntime(
            client, getattr(args, "_configurator", None) or fixed_plan(exit_, args.partition, args.codec),
            deadline_ms=args.deadline_ms, records=args.records, fallback=not edge_only))
        for i in range(args.count):
            try:
                r = runtime.infer(x[i : i + 1], label=labels[i])
            except EdgentError as exc:
                if not edge_only:
                    raise
                failed += 1
                print(f"#{i}: FAILED (--edge-only): {exc}", file=sys.stderr)
                continue
            served += r.where == "edge"
            met += bool(r.met_deadline)
            if args.json:
                print(dumps_finite(runtime.record(runtime_plan(r), r, client.estimator.rate_bps,
                                                client.estimator.rtt_ms, labels[i])))
            else:
                from edgent.data.cifar10 import CLASSES

                cls = r.classes[0]
                name = CLASSES[cls] if chain.num_classes == 10 else str(cls)
                bw = client.estimator.rate_bps
                print(f"#{i}: class {name} (label {labels[i]}) exit {r.exit} partition {r.partition} "
                      f"on {r.where}{' (' + r.fallback_reason + ')' if r.fallback_reason else ''}; "
                      f"total {r.total_ms:.2f} ms (device {r.device_ms:.2f}, network "
                      f"{'-' if r.network_ms is None else f'{r.network_ms:.2f}'}); bandwidth estimate "
                      f"{'-' if bw is None else f'{bw / 1e6:.3f} Mbit/s'}"
                      + ("" if r.deadline_ms is None else f"; deadline {'met' if r.met_deadline else 'MISSED'}"))
    if failed:
        print(f"edgent: {failed} of {args.count} requests failed: the edge did not answer them (--edge-only)",
              file=sys.stderr)
        return 1
    return 0


def runtime_plan(r):
    from edgent.plan.planner import Plan

    return Plan.fixed(r.requested["exit"], r.requested["partition"], r.requested.get("codec") or "float32")


# ---------------------------------------------------------------------------------------------- commands
def cmd_serve(args: argparse.Namespace) -> int:
    import torch

    from edgent.runtime.server import EdgeServer, ServerConfig, make_server_ssl_context

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    chains = [load_for_inference(name, args.weights, args.random_weights, args.seed) for name in args.model]
    models = {c.name: c for c in chains}  # a model folder is served under its model name
    ssl_ctx = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise ConfigError("TLS needs both --tls-cert and --tls-key")
        ssl_ctx = make_server_ssl_context(args.tls_cert, args.tls_key)
    cfg = ServerConfig(host=args.host, port=args.port, token=_token(args), max_queue=args.max_queue,
                       threads=args.threads, max_payload_bytes=int(args.max_payload_mb * 1024 * 1024),
                       max_connections=args.max_connections, ssl_context=ssl_ctx,
                       inline_when_idle=not args.always_hand_off, handshake_timeout_s=args.handshake_timeout_s,
                       idle_timeout_s=args.idle_timeout_s, body_timeout_s=args.body_timeout_s,
                       min_rate_bps=args.min_rate_bps, rate_grace_s=args.rate_grace_s,
                       write_timeout_s=args.write_timeout_s, control_frames_per_s=args.control_frames_per_s,
                       read_buffer_bytes=args.read_buffer_kb * 1024,
                       write_buffer_bytes=args.write_buffer_kb * 1024, latency_model=args.latency_model,
                       batch_window_ms=args.batch_window_ms, max_batch=args.max_batch, slowdown=args.slowdown)
    cfg.check()
    server = EdgeServer(models, cfg, compute=_serve_engine(args, models, cfg))
    try:
        asyncio.run(server.serve_until_signal(args.ready_file))
    except OSError as exc:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    return 0


def _serve_engine(args: argparse.Namespace, models: dict, cfg) -> Any:
    """The compute engine of ``edgent serve`` from ``--backend`` and the placement options."""
    if args.backend == "ray":
        from edgent.runtime.ray_backend import RayCompute, import_ray

        import_ray()  # without Ray: a clear error before anything starts
        if cfg.batch_window_ms is not None or cfg.slowdown != 1.0:
            raise ConfigError("--batch-window-ms and --slowdown are options of --backend local; with --backend ray "
                              "use --ray-batch / --ray-batch-wait-ms (Ray Serve's own batching)")
        return RayCompute(models, _model_sources(args, models), _ray_options(args))
    from edgent.model.placement import PartRunner, choose_placement
    from edgent.runtime.server import local_compute

    for option in ("replicas", "max_replicas", "ray_address"):
        if getattr(args, option) is not None:
            raise ConfigError(f"--{option.replace('_', '-')} is an option of --backend ray")
    placement, why = choose_placement(list(models), args.device, args.fp16, args.edge_mode, args.compile_mode)
    print(f"edgent serve: parts on {placement.describe()} ({why})", file=sys.stderr)
    runners = {name: PartRunner(chain, placement) for name, chain in models.items()}
    runners = {name: r for name, r in runners.items() if not r.trivial}
    return local_compute(models, cfg, runners)


def _model_sources(args: argparse.Namespace, models: dict) -> dict:
    """How Ray's replicas load each served model: as it was given to ``edgent serve`` (served under its name)."""
    from edgent.model.zoo import model_name
    from edgent.runtime.ray_backend import ModelSource

    out = {}
    for ref in args.model:
        p = Path(ref)
        ref = str(p.resolve()) if p.exists() else ref  # a model folder: the same absolute path on every node
        out[model_name(ref)] = ModelSource(ref, str(Path(args.weights).resolve()) if args.weights else None,
                                           bool(args.random_weights), int(args.seed))
    return {name: out[name] for name in models}


def _ray_options(args: argparse.Namespace) -> Any:
    """``--backend ray``'s options as :class:`edgent.runtime.ray_backend.RayOptions` (checked)."""
    from edgent.runtime.ray_backend import RayOptions

    d = RayOptions()
    opts = RayOptions(
        address=args.ray_address, replicas=args.replicas or d.replicas, max_replicas=args.max_replicas,
        target_ongoing_requests=args.target_ongoing, max_ongoing_requests=args.max_ongoing,
        max_batch_size=args.ray_batch, batch_wait_timeout_s=args.ray_batch_wait_ms / 1e3,
        replica_cpus=args.replica_cpus, replica_gpus=args.replica_gpus, upscale_delay_s=args.upscale_delay_s,
        downscale_delay_s=args.downscale_delay_s,
        placement={"device": args.device, "fp16": args.fp16, "mode": args.edge_mode,
                   "compile_mode": args.compile_mode})
    opts.check()
    return opts


def cmd_infer(args: argparse.Namespace) -> int:
    return run_device_requests(args, args.host, args.port)


def cmd_testbed_up(args: argparse.Namespace) -> int:
    from edgent.testbed import NetnsTestbed, is_root, state_dir

    if not is_root():
        raise ConfigError("`edgent testbed up` creates a network namespace and needs root; without root use "
                          "`edgent testbed run`, which emulates the link in the client")
    tb = NetnsTestbed(args.rate_bps, args.delay_ms, persistent_name=args.name)
    state = state_dir()
    state.mkdir(parents=True, exist_ok=True)
    (state / f"{args.name}.json").write_text(json.dumps(tb.state()))
    print(tb.describe())
    print(f"run the edge with: ip netns exec {tb.netns} edgent serve --host {tb.edge_host} ...; "
          f"remove with: edgent testbed down --name {args.name}")
    return 0


def cmd_testbed_down(args: argparse.Namespace) -> int:
    from edgent.testbed import PERSISTENT_PREFIX, run_command, cleanup_leftovers, is_root, state_dir

    if not is_root():
        raise ConfigError("`edgent testbed down` needs root")
    files = sorted(state_dir().glob("*.json")) if args.all else [state_dir() / f"{args.name}.json"]
    for f in files:
        if not f.exists():
            print(f"no testbed called {f.stem}")
            continue
        st = json.loads(f.read_text())
        run_command(["ip", "link", "del", st["dev_if"]], check=False)
        run_command(["ip", "netns", "del", st["netns"]], check=False)
        f.unlink()
        print(f"removed testbed {f.stem} (netns {st['netns']})")
    if args.all:
        for line in run_command(["ip", "netns", "list"], check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(PERSISTENT_PREFIX):
                run_command(["ip", "netns", "del", name], check=False)
                print(f"removed {name}")
    removed = cleanup_leftovers()
    if removed:
        print(f"removed leftovers: {', '.join(removed)}")
    return 0


def _attached_testbed(name: str) -> Any:
    """The running testbed ``edgent testbed up --name NAME`` made."""
    from edgent.testbed import NetnsTestbed, state_dir

    f = state_dir() / f"{name}.json"
    if not f.is_file():
        raise ConfigError(f"no testbed called {name!r} is up (start one with: edgent testbed up --name {name})")
    return NetnsTestbed.attach(json.loads(f.read_text()))


def _remember_rate(tb: Any, name: str) -> None:
    from edgent.jsonio import write_json_file
    from edgent.testbed import state_dir

    write_json_file(state_dir() / f"{name}.json", tb.state())


def cmd_testbed_set_rate(args: argparse.Namespace) -> int:
    from edgent.plan.units import parse_rate_bps
    from edgent.testbed import MIN_REPLAY_BPS as floor

    rate = parse_rate_bps(args.rate, what="the rate")
    tb = _attached_testbed(args.name)
    tb.set_rate(max(rate, floor))
    _remember_rate(tb, args.name)
    print(f"testbed {args.name}: {tb.rate_bps / 1e6:g} Mbit/s each way (tc tbf)"
          + (f"; rates under {floor:g} bit/s run at {floor:g}" if rate < floor else ""))
    return 0


def cmd_testbed_replay(args: argparse.Namespace) -> int:
    from edgent.adapt.traces import load_trace
    from edgent.testbed import replay_steps

    trace = load_trace(args.trace).scaled(args.trace_scale)
    steps = replay_steps(trace.time_s, trace.rate_bps)
    tb = _attached_testbed(args.name)
    print(f"testbed {args.name}: replaying {args.trace} ({len(steps)} steps, {trace.end_s:g} s, scale "
          f"{args.trace_scale:g}{', looping' if args.loop else ''}; rates under {MIN_REPLAY_BPS:g} bit/s run at "
          f"{MIN_REPLAY_BPS:g}); Ctrl-C stops it and the link keeps its last rate", file=sys.stderr)
    rep = tb.replay(steps, loop=args.loop)
    try:
        while rep.is_alive():
            rep.join(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        tb.close()
        _remember_rate(tb, args.name)
    n = len(rep.applied)
    print(f"testbed {args.name}: {n} rate changes applied; now {tb.rate_bps / 1e6:g} Mbit/s")
    return 0 if args.loop or n == len(steps) else 1


def cmd_testbed_run(args: argparse.Namespace) -> int:
    import subprocess

    from edgent.adapt.traces import load_trace
    from edgent.testbed import open_testbed, replay_steps, serve_argv, temp_ready_file

    steps = None
    if args.trace:  # read before anything starts: a bad file is refused at once
        trace = load_trace(args.trace).scaled(args.trace_scale)
        steps = replay_steps(trace.time_s, trace.rate_bps)
    tb = open_testbed(args.rate_bps, args.delay_ms, emulate=True if args.emulate else None)
    with tb:
        print(f"edgent testbed: {tb.describe()}", file=sys.stderr)
        ready = temp_ready_file()
        extra = model_flags(args)[2:]
        try:
            tb.start_edge(serve_argv(args.model, args.port, ready,
                                     host="0.0.0.0" if tb.kind == "netns" else "127.0.0.1", extra=extra),
                          stdout=subprocess.DEVNULL)
            port = int(Path(ready).read_text().split()[0])  # the port the edge bound (--port 0: a free one)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(ready)
        if steps is not None:
            tb.replay(steps, loop=True)
            print(f"edgent testbed: replaying {args.trace} ({len(steps)} steps, scale {args.trace_scale:g}; rates "
                  f"under {MIN_REPLAY_BPS:g} bit/s run at {MIN_REPLAY_BPS:g})", file=sys.stderr)
        if args.device_command:
            cmd = [c for c in args.device_command if c != "--"]
            env = dict(os.environ, EDGENT_EDGE_HOST=tb.edge_host, EDGENT_EDGE_PORT=str(port))
            return subprocess.call(cmd, env=env)
        args._say_emulated = False
        return run_device_requests(args, tb.edge_host, port, link=tb.link)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """``edgent serve``'s choice of compute engine (``--backend``), of where the parts run (``--device``,
    ``--fp16``, ``--edge-mode``), and the Ray engine's options (docs/scale.md)."""
    from edgent.model.placement import FP16_CHOICES, MODES
    from edgent.runtime.ray_backend import RayOptions

    e = p.add_argument_group("engine and placement (docs/scale.md)")
    e.add_argument("--backend", choices=("local", "ray"), default="local",
                   help="what computes the edge parts: this process (local, default) or Ray Serve deployments on a "
                        "Ray cluster (ray; needs `pip install \"edgent[ray]\"`)")
    e.add_argument("--device", default="cpu",
                   help="where the parts run: cpu (default: the same arithmetic as a device's CPU), cuda, cuda:N, or "
                        "auto (a CUDA GPU where torch sees one, else the CPU); with --backend ray, resolved on each "
                        "replica's machine")
    e.add_argument("--fp16", choices=FP16_CHOICES, default="auto",
                   help="float16 on a GPU: auto (default: where every served model's card records a float16 "
                        "accuracy close enough to float32), on, or off")
    e.add_argument("--edge-mode", choices=MODES, default=None,
                   help="how the parts run: eager PyTorch, graph (CUDA graphs, one per exit, partition and batch "
                        "shape, recorded at first use) or compile (torch.compile); default: graph on a GPU, eager on "
                        "the CPU")
    e.add_argument("--compile-mode", default=None,
                   help="torch.compile's mode with --edge-mode compile (e.g. max-autotune-no-cudagraphs, "
                        "reduce-overhead; default torch's)")
    d = RayOptions()
    r = p.add_argument_group("--backend ray (docs/scale.md)")
    r.add_argument("--ray-address", default=None,
                   help="join this Ray cluster (host:port of its head, or auto: the one `ray start` made on this "
                        "machine); default: start a local cluster here and stop it on exit")
    r.add_argument("--replicas", type=argtypes.integer(1), default=None,
                   help=f"replicas of each model (the autoscaling minimum; default {d.replicas})")
    r.add_argument("--max-replicas", type=argtypes.integer(1), default=None,
                   help="autoscale each model up to this many replicas on the requests ongoing per replica "
                        "(default: --replicas, no autoscaling)")
    r.add_argument("--target-ongoing", type=argtypes.number(0.0), default=d.target_ongoing_requests,
                   help=f"requests ongoing or queued per replica the autoscaler aims at (default "
                        f"{d.target_ongoing_requests:g})")
    r.add_argument("--max-ongoing", type=argtypes.integer(1), default=d.max_ongoing_requests,
                   help=f"requests a replica takes at once; more wait at the front (default {d.max_ongoing_requests})")
    r.add_argument("--ray-batch", type=argtypes.integer(1, 256), default=d.max_batch_size,
                   help=f"largest batch Ray Serve makes of requests to one replica (default {d.max_batch_size})")
    r.add_argument("--ray-batch-wait-ms", type=argtypes.number(0.0, allow_low=True),
                   default=d.batch_wait_timeout_s * 1e3,
                   help="how long a replica waits for a batch to fill (default "
                        f"{d.batch_wait_timeout_s * 1e3:g} ms)")
    r.add_argument("--replica-cpus", type=argtypes.number(0.0), default=d.replica_cpus,
                   help=f"Ray CPUs per replica (default {d.replica_cpus:g}; also its torch threads, at least 1)")
    r.add_argument("--replica-gpus", type=argtypes.number(0.0, allow_low=True), default=d.replica_gpus,
                   help=f"Ray GPUs per replica where the parts run on a GPU (default {d.replica_gpus:g}; 0.5: two "
                        "replicas per GPU)")
    r.add_argument("--upscale-delay-s", type=argtypes.number(0.0, allow_low=True), default=d.upscale_delay_s,
                   help=f"how long the load must stay high before a replica is added (default {d.upscale_delay_s:g})")
    r.add_argument("--downscale-delay-s", type=argtypes.number(0.0, allow_low=True), default=d.downscale_delay_s,
                   help=f"how long it must stay low before one is removed (default {d.downscale_delay_s:g})")


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.runtime.server import DEFAULT_PORT

    from edgent.runtime.server import ServerConfig

    d = ServerConfig()
    p = sub.add_parser("serve", help="run the edge server (finishes the DNN for devices)")
    p.add_argument("--model", action="append", default=None, help="model to serve (repeatable; default "
                   "alexnet-cifar10)")
    p.add_argument("--weights", type=argtypes.existing_file("the weights file"),
                   help="weights file instead of the committed ones")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (see --seed)")
    p.add_argument("--seed", type=argtypes.integer(0), default=0)
    p.add_argument("--latency-model", type=argtypes.existing_file("the latency model"), default=None,
                   help="this edge's fitted latency model (JSON, from edgent profile and fit on this machine), "
                        "advertised to devices in the handshake (default: the shipped edge fit)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=argtypes.port(allow_zero=True), default=DEFAULT_PORT,
                   help=f"port to listen on (default {DEFAULT_PORT}; 0: any free port, see --ready-file)")
    p.add_argument("--token", type=argtypes.token, help="require this shared token from devices (also $EDGENT_TOKEN)")
    p.add_argument("--token-file", type=argtypes.token_file, help="file holding the shared token")
    p.add_argument("--tls-cert", type=argtypes.existing_file("the TLS certificate"),
                   help="TLS certificate chain (PEM)")
    p.add_argument("--tls-key", type=argtypes.existing_file("the TLS key"), help="TLS private key (PEM)")
    p.add_argument("--max-queue", type=argtypes.integer(1), default=d.max_queue,
                   help="requests waiting for a worker before 'overloaded'")
    p.add_argument("--threads", type=argtypes.integer(0), default=d.threads,
                   help="worker threads running the edge part (0: compute inline on the event loop, lowest latency "
                   "for one device, no health answers during a computation)")
    p.add_argument("--always-hand-off", action="store_true",
                   help="hand every request to a worker thread, also when the edge is idle (by default an idle "
                   "edge with one device connected computes on the event loop and saves the thread hand-off and "
                   "back; its cost is measured by `edgent bench runtime`, see docs/runtime.md)")
    p.add_argument("--torch-threads", type=argtypes.integer(0), default=0,
                   help="torch intra-op threads (0: torch's default)")
    p.add_argument("--batch-window-ms", type=argtypes.number(0.0, allow_low=True), default=None,
                   help="batch requests of the same model, exit, partition and codec that arrive within this many "
                        "ms (never past the point where a request's deadline would be missed; default: no "
                        "batching, one request at a time)")
    p.add_argument("--max-batch", type=argtypes.integer(1), default=d.max_batch,
                   help=f"the most requests in one batch (with --batch-window-ms; default {d.max_batch})")
    p.add_argument("--slowdown", type=argtypes.number(1.0, allow_low=True), default=1.0,
                   help="emulate an edge this many times slower than this host: each computation takes this many "
                        "times its thread's CPU time (use with --torch-threads 1; default 1, this host's speed)")
    p.add_argument("--max-payload-mb", type=argtypes.number(0.0, high=4095.0), default=d.max_payload_bytes / 2**20,
                   help=f"largest accepted payload in MiB (default {d.max_payload_bytes / 2**20:g})")
    b = p.add_argument_group("bounds (docs/runtime.md, 'Bounds')")
    b.add_argument("--max-connections", type=argtypes.integer(2), default=d.max_connections,
                   help="open sockets at most, counting TLS handshakes and connections before HELLO; when full, "
                        "a newcomer frees a slow or stalled handshake, else the connection with the oldest progress "
                        f"(default {d.max_connections})")
    b.add_argument("--handshake-timeout-s", type=argtypes.number(0.0), default=d.handshake_timeout_s,
                   help="from connect to an answered HELLO, TLS included "
                        f"(default {d.handshake_timeout_s:g})")
    b.add_argument("--idle-timeout-s", type=argtypes.number(0.0), default=d.idle_timeout_s,
                   help=f"close a connection without a frame for this long (default {d.idle_timeout_s:g})")
    b.add_argument("--body-timeout-s", type=argtypes.number(0.0), default=d.body_timeout_s,
                   help=f"a frame must arrive whole within this time of its first byte (default {d.body_timeout_s:g})")
    b.add_argument("--min-rate-bps", type=argtypes.number(0.0), default=d.min_rate_bps,
                   help="after --rate-grace-s, a frame must keep arriving at this rate, bit/s "
                        f"(default {d.min_rate_bps:g})")
    b.add_argument("--rate-grace-s", type=argtypes.number(0.0, allow_low=True), default=d.rate_grace_s,
                   help=f"time a frame may take before --min-rate-bps applies (default {d.rate_grace_s:g})")
    b.add_argument("--write-timeout-s", type=argtypes.number(0.0), default=d.write_timeout_s,
                   help="close a connection whose answers the device does not read for this long "
                        f"(default {d.write_timeout_s:g})")
    b.add_argument("--control-frames-per-s", type=argtypes.number(0.0), default=d.control_frames_per_s,
                   help="frames per connection and second that ask for no computation (HEALTH, PROBE, refused "
                        f"ones), after a burst of as many (default {d.control_frames_per_s:g})")
    b.add_argument("--read-buffer-kb", type=argtypes.integer(1, 1 << 20), default=d.read_buffer_bytes // 1024,
                   help=f"bytes read ahead per connection, KiB (default {d.read_buffer_bytes // 1024})")
    b.add_argument("--write-buffer-kb", type=argtypes.integer(1, 1 << 20), default=d.write_buffer_bytes // 1024,
                   help=f"answers buffered per connection, KiB (default {d.write_buffer_bytes // 1024})")
    p.add_argument("--ready-file", type=argtypes.new_file("the ready file"),
                   help="write the bound port to this file once ready")
    add_engine_args(p)

    def serve(args: argparse.Namespace) -> int:
        args.model = args.model or ["alexnet-cifar10"]
        return cmd_serve(args)

    p.set_defaults(func=serve)

    p = sub.add_parser("infer", help="co-infer images with an edge server (device side)")
    add_model_args(p)
    p.add_argument("--host", default=os.environ.get("EDGENT_EDGE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=argtypes.port(), default=os.environ.get("EDGENT_EDGE_PORT", str(DEFAULT_PORT)),
                   help=f"the edge's port (default $EDGENT_EDGE_PORT or {DEFAULT_PORT})")
    add_client_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("testbed", help="shaped device-edge link in a network namespace (or emulated)")
    tsub = p.add_subparsers(dest="testbed_command", metavar="ACTION")
    tsub.required = True
    up = tsub.add_parser("up", help="create a persistent namespace testbed (root)")
    up.add_argument("--name", default="default")
    up.add_argument("--rate-bps", type=argtypes.number(MIN_REPLAY_BPS, allow_low=True), default=None,
                    help="tc tbf rate each way (default: unshaped)")
    up.add_argument("--delay-ms", type=argtypes.number(0.0, allow_low=True), default=0.0)
    up.set_defaults(func=cmd_testbed_up)
    down = tsub.add_parser("down", help="remove a testbed made by `up` (and leftovers of killed runs)")
    down.add_argument("--name", default="default")
    down.add_argument("--all", action="store_true")
    down.set_defaults(func=cmd_testbed_down)
    sr = tsub.add_parser("set-rate", help="change the link rate of a running `testbed up` testbed (root)")
    sr.add_argument("rate", help="the new rate each way, e.g. 500kbit, 2Mbit")
    sr.add_argument("--name", default="default")
    sr.set_defaults(func=cmd_testbed_set_rate)
    rp = tsub.add_parser("replay", help="replay a bandwidth trace on a running `testbed up` testbed (root)")
    rp.add_argument("trace", type=argtypes.existing_file("the trace file"),
                    help="Norway 3G text, Belgium 4G JSON or Mahimahi; outages run at the replay's lowest rate")
    rp.add_argument("--trace-scale", type=argtypes.number(0.0), default=1.0, help="multiply the trace's rates")
    rp.add_argument("--loop", action="store_true", help="start over at the end (until Ctrl-C)")
    rp.add_argument("--name", default="default")
    rp.set_defaults(func=cmd_testbed_replay)
    run = tsub.add_parser("run", help="start an edge in a fresh testbed, run requests (or a command), clean up")
    add_model_args(run)
    run.add_argument("--port", type=argtypes.port(allow_zero=True), default=0,
                     help="the edge's port (default 0: any free port; the device dials the one the edge bound)")
    run.add_argument("--emulate", action="store_true", help="emulated link even as root")
    run.add_argument("--trace", type=argtypes.existing_file("the trace file"),
                     help="bandwidth trace to replay: Norway 3G text (time_s Mbit/s), Belgium 4G JSON or Mahimahi; "
                          "outages run at the replay's lowest rate")
    run.add_argument("--trace-scale", type=argtypes.number(0.0), default=1.0, help="multiply the trace's rates")
    add_client_args(run)
    run.add_argument("device_command", nargs=argparse.REMAINDER, metavar="command",
                     help="-- CMD: run CMD as the device instead "
                     "($EDGENT_EDGE_HOST/$EDGENT_EDGE_PORT name the edge)")
    run.set_defaults(func=cmd_testbed_run)
