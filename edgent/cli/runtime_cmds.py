"""``edgent serve``, ``edgent infer`` and ``edgent testbed up|down|run``: the co-inference runtime on the command
line (see docs/runtime.md)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from edgent.errors import ConfigError
from edgent.model.zoo import load_for_inference


# ---------------------------------------------------------------------------------------------- shared helpers
def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="alexnet-cifar10", help="zoo model name (default: alexnet-cifar10)")
    p.add_argument("--weights", help="weights file (.safetensors) instead of the committed ones")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights (before training finishes; use the same --seed on device and edge)")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-weights (default 0)")


def model_flags(args: argparse.Namespace) -> list[str]:
    """The model flags of ``args`` as command-line words (to start a matching edge server)."""
    out = ["--model", args.model, "--seed", str(args.seed)]
    if args.weights:
        out += ["--weights", args.weights]
    if args.random_weights:
        out.append("--random-weights")
    return out


def _token(args: argparse.Namespace) -> str | None:
    if getattr(args, "token_file", None):
        return Path(args.token_file).read_text().strip()
    return args.token or os.environ.get("EDGENT_TOKEN") or None


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--exit", type=int, default=None, help="exit (1-based; default: the main exit)")
    p.add_argument("--partition", type=int, default=0, help="partition point (0 = edge only, N = device only)")
    p.add_argument("--codec", default="float32", help="codec of the crossing tensor (float32, float16, int8, "
                   "uint8, jpeg, with optional +zlib)")
    p.add_argument("--deadline-ms", type=float, default=None, help="latency requirement per request")
    p.add_argument("--count", type=int, default=1, help="requests to send")
    p.add_argument("--index", type=int, default=0, help="first CIFAR-10 test image (default 0)")
    p.add_argument("--random-input", action="store_true", help="random pixels instead of CIFAR-10 test images")
    p.add_argument("--token", help="shared token (also $EDGENT_TOKEN)")
    p.add_argument("--token-file", help="file holding the shared token")
    p.add_argument("--tls-ca", help="enable TLS; trust this CA/certificate file (PEM)")
    p.add_argument("--records", help="append one JSON line per request to this file")
    p.add_argument("--slowdown", type=float, default=None, help="emulate a device this many times slower")
    p.add_argument("--cpu-quota", type=float, default=None,
                   help="limit the device to this fraction of one CPU (cgroup v1 quota, root)")
    p.add_argument("--delay-ms", type=float, default=0.0, help="round-trip delay added by the application")
    p.add_argument("--rate-bps", type=float, default=None,
                   help="emulated link rate (token bucket in the client; without root)")
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


def run_device_requests(args: argparse.Namespace, host: str, port: int, link=None, chain=None) -> int:
    """The body of `edgent infer` (also used by `edgent testbed run`): ``--count`` requests, one line each."""
    from edgent.runtime.client import DeviceClient, client_ssl_context
    from edgent.runtime.link import AppLink
    from edgent.runtime.session import DeviceRuntime, fixed_plan

    chain = chain or load_for_inference(args.model, args.weights, args.random_weights, args.seed)
    if getattr(args, "device_runtime", "torch") == "onnx":
        from edgent.model.onnx_parts import OnnxDeviceChain

        chain = OnnxDeviceChain(chain)
        chain.prepare(args.exit or chain.num_exits, args.partition)  # export the device part now, not in request 1
    exit_ = args.exit or chain.num_exits
    slowdown, stack = _device_context(args)
    link = link or AppLink(delay_ms=args.delay_ms, rate_bps=args.rate_bps)
    if link.emulated and getattr(args, "_say_emulated", True):
        print(f"edgent: EMULATED link: {link.rate_bps / 1e6:g} Mbit/s enforced by a token bucket in this client "
              "(no tc shaping)", file=sys.stderr)
    ssl_ctx = client_ssl_context(args.tls_ca) if args.tls_ca else None
    x, labels = _inputs(args, chain)
    met = served = 0
    with stack, DeviceClient(host, port, chain, token=_token(args), ssl_context=ssl_ctx, link=link,
                             slowdown=slowdown) as client, \
            DeviceRuntime(client, getattr(args, "_configurator", None) or fixed_plan(exit_, args.partition,
                                                                                     args.codec),
                          deadline_ms=args.deadline_ms, records=args.records) as runtime:
        for i in range(args.count):
            r = runtime.infer(x[i : i + 1], label=labels[i])
            served += r.where == "edge"
            met += bool(r.met_deadline)
            if args.json:
                print(json.dumps(runtime.record(runtime_plan(r), r, client.estimator.rate_bps,
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
                       inline_when_idle=not args.always_hand_off)
    server = EdgeServer(models, cfg)
    try:
        asyncio.run(server.serve_until_signal(args.ready_file))
    except OSError as exc:
        raise ConfigError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    return 0


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


def cmd_testbed_run(args: argparse.Namespace) -> int:
    import subprocess

    from edgent.adapt.traces import load_trace
    from edgent.testbed import open_testbed, replay_steps, serve_argv, temp_ready_file

    tb = open_testbed(args.rate_bps, args.delay_ms, emulate=True if args.emulate else None)
    with tb:
        print(f"edgent testbed: {tb.describe()}", file=sys.stderr)
        ready = temp_ready_file()
        extra = model_flags(args)[2:]
        tb.start_edge(serve_argv(args.model, args.port, ready, host="0.0.0.0" if tb.kind == "netns" else "127.0.0.1",
                                 extra=extra), stdout=subprocess.DEVNULL)
        with contextlib.suppress(OSError):
            os.unlink(ready)
        if args.trace:
            trace = load_trace(args.trace).scaled(args.trace_scale)
            steps = replay_steps(trace.time_s, trace.rate_bps)
            tb.replay(steps, loop=True)
            print(f"edgent testbed: replaying {args.trace} ({len(steps)} steps, scale {args.trace_scale:g})",
                  file=sys.stderr)
        if args.command:
            cmd = [c for c in args.command if c != "--"]
            env = dict(os.environ, EDGENT_EDGE_HOST=tb.edge_host, EDGENT_EDGE_PORT=str(args.port))
            return subprocess.call(cmd, env=env)
        args._say_emulated = False
        return run_device_requests(args, tb.edge_host, args.port, link=tb.link)


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.runtime.server import DEFAULT_PORT

    p = sub.add_parser("serve", help="run the edge server (finishes the DNN for devices)")
    p.add_argument("--model", action="append", default=None, help="model to serve (repeatable; default "
                   "alexnet-cifar10)")
    p.add_argument("--weights", help="weights file instead of the committed ones")
    p.add_argument("--random-weights", action="store_true", help="seeded random weights (see --seed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--token", help="require this shared token from devices (also $EDGENT_TOKEN)")
    p.add_argument("--token-file", help="file holding the shared token")
    p.add_argument("--tls-cert", help="TLS certificate chain (PEM)")
    p.add_argument("--tls-key", help="TLS private key (PEM)")
    p.add_argument("--max-queue", type=int, default=64, help="requests waiting for a worker before 'overloaded'")
    p.add_argument("--threads", type=int, default=1,
                   help="worker threads running the edge part (0: compute inline on the event loop, lowest latency "
                   "for one device, no health answers during a computation)")
    p.add_argument("--always-hand-off", action="store_true",
                   help="hand every request to a worker thread, also when the edge is idle (by default an idle "
                   "edge computes on the event loop and saves the thread hand-off and back; its cost is measured "
                   "by `edgent bench runtime`, see docs/runtime.md)")
    p.add_argument("--torch-threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--max-payload-mb", type=float, default=64.0, help="largest accepted payload")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--ready-file", help="write the bound port to this file once ready")

    def serve(args: argparse.Namespace) -> int:
        args.model = args.model or ["alexnet-cifar10"]
        return cmd_serve(args)

    p.set_defaults(func=serve)

    p = sub.add_parser("infer", help="co-infer images with an edge server (device side)")
    add_model_args(p)
    p.add_argument("--host", default=os.environ.get("EDGENT_EDGE_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("EDGENT_EDGE_PORT", DEFAULT_PORT)))
    add_client_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser("testbed", help="shaped device-edge link in a network namespace (or emulated)")
    tsub = p.add_subparsers(dest="testbed_command", metavar="ACTION")
    tsub.required = True
    up = tsub.add_parser("up", help="create a persistent namespace testbed (root)")
    up.add_argument("--name", default="default")
    up.add_argument("--rate-bps", type=float, default=None, help="tc tbf rate each way (default: unshaped)")
    up.add_argument("--delay-ms", type=float, default=0.0)
    up.set_defaults(func=cmd_testbed_up)
    down = tsub.add_parser("down", help="remove a testbed made by `up` (and leftovers of killed runs)")
    down.add_argument("--name", default="default")
    down.add_argument("--all", action="store_true")
    down.set_defaults(func=cmd_testbed_down)
    run = tsub.add_parser("run", help="start an edge in a fresh testbed, run requests (or a command), clean up")
    add_model_args(run)
    run.add_argument("--port", type=int, default=DEFAULT_PORT)
    run.add_argument("--emulate", action="store_true", help="emulated link even as root")
    run.add_argument("--trace", help="bandwidth trace to replay: Norway 3G text (time_s Mbit/s), Belgium 4G JSON "
                     "or Mahimahi; outages run at the replay's lowest rate")
    run.add_argument("--trace-scale", type=float, default=1.0, help="multiply the trace's rates")
    add_client_args(run)
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD: run CMD as the device instead "
                     "($EDGENT_EDGE_HOST/$EDGENT_EDGE_PORT name the edge)")
    run.set_defaults(func=cmd_testbed_run)
