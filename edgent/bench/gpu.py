"""``edgent bench gpu``: the edge's parts on a GPU, eager against CUDA graphs and ``torch.compile``.

Two models, whole (the edge part at partition 0 of the main exit): alexnet-cifar10 (32x32 input, the zoo's chain)
and torchvision's ResNet-50 at 224x224 with random weights (timing does not depend on the weights). On a CUDA GPU,
per batch size (1 and batched):

- ``eager_fp32``, ``eager_fp16``: eager PyTorch;
- ``graph_fp32``, ``graph_fp16``: the model recorded as one CUDA graph and replayed (the floor of what the GPU
  does for it: one launch);
- ``compile_fp16``: ``torch.compile(mode=COMPILE_MODE)`` (inductor's fused kernels, replayed by its own CUDA
  graphs), with its compile time;
- ``serve_fp16``: what ``edgent serve --device cuda`` runs per request (:class:`edgent.model.placement.PartRunner`
  with CUDA graphs: input from the CPU, logits back to the CPU), alexnet only.

Every call is timed to the end of its kernels (synchronised wall time), inputs already on the GPU but for
``serve_fp16``; the figure is the median of many calls. The verdict: at batch 1 the compiled path within
``VERDICT_RATIO`` of the CUDA-graph floor (``graph_fp16``), per model.

Without a GPU the same script runs the CPU path (eager float32 and, but with ``--quick``, ``torch.compile``), and
the result says "not measured on a GPU"; the GPU figures are taken as soon as one is available.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any, Callable

import numpy as np
import torch

#: the verdict's bound: compiled time over the CUDA-graph floor at batch 1
VERDICT_RATIO = 1.2
#: torch.compile's mode on a GPU (inductor kernels replayed from CUDA graphs: small parts are launch-bound)
COMPILE_MODE = "reduce-overhead"
NOT_ON_GPU = "not measured on a GPU"


def _models(quick: bool) -> list[tuple[str, torch.nn.Module, tuple[int, ...], str]]:
    """(name, module, input shape, what it is) of the models measured."""
    import torchvision

    from edgent.model.zoo import load_for_inference

    chain = load_for_inference("alexnet-cifar10", random_weights=True, seed=0)

    class WholeChain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.units = torch.nn.Sequential(*chain.units(chain.num_exits))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.units(x)

    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None).eval()
    return [("alexnet-cifar10", WholeChain().eval(), tuple(chain.input_shape),
             "the zoo's chain, main exit, all units on the edge (random weights: timing only)"),
            ("resnet50-224", resnet, (3, 224, 224), "torchvision ResNet-50, random weights (timing only)")]


def time_calls(fn: Callable[[], Any], device: str, calls: int, warmup: int = 5) -> dict[str, float]:
    """Median (p10, p90) ms of ``calls`` calls of ``fn``, each timed to the end of its kernels."""
    from edgent.model.placement import synchronize

    for _ in range(warmup):
        fn()
    synchronize(device)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        samples.append((time.perf_counter() - t0) * 1e3)
    a = np.asarray(samples)
    return {"median_ms": round(float(np.median(a)), 4), "p10_ms": round(float(np.percentile(a, 10)), 4),
            "p90_ms": round(float(np.percentile(a, 90)), 4), "calls": calls}


def measure_gpu(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """Every model, variant and batch size on the GPU (see the module docstring)."""
    from edgent.model.placement import Placement, PartRunner, record_cuda_graph
    from edgent.model.zoo import load_for_inference

    device = "cuda"
    batches = (1, 8) if quick else (1, 8, 32)
    calls = 50 if quick else 300
    out: dict[str, Any] = {}
    for name, module, shape, what in _models(quick):
        rows = []
        for dtype_name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            m = module.to(device, dtype)
            for b in batches:
                x = torch.randn(b, *shape, device=device, dtype=dtype)
                with torch.inference_mode():
                    rows.append({"variant": f"eager_{dtype_name}", "batch": b,
                                 **time_calls(lambda: m(x), device, calls)})
                    graph = record_cuda_graph(m, x)
                    rows.append({"variant": f"graph_{dtype_name}", "batch": b,
                                 **time_calls(lambda: graph(x), device, calls)})
                progress(f"gpu {name} {dtype_name} batch {b}: eager {rows[-2]['median_ms']:.3f} ms, graph "
                         f"{rows[-1]['median_ms']:.3f} ms")
        m = module.to(device, torch.float16)
        for b in (1,) if quick else (1, batches[-1]):  # compiling takes long: batch 1 (the verdict) and the largest
            torch._dynamo.reset()
            compiled = torch.compile(m, mode=COMPILE_MODE, dynamic=False)
            x = torch.randn(b, *shape, device=device, dtype=torch.float16)
            t0 = time.perf_counter()
            with torch.inference_mode():
                for _ in range(3):  # compile, then record its graphs
                    compiled(x)
                compile_s = time.perf_counter() - t0
                rows.append({"variant": "compile_fp16", "batch": b, "compile_s": round(compile_s, 1),
                             **time_calls(lambda: compiled(x), device, calls)})
            progress(f"gpu {name} compiled batch {b}: {rows[-1]['median_ms']:.3f} ms (compiled in {compile_s:.0f} s)")
        if name == "alexnet-cifar10":
            chain = load_for_inference(name, random_weights=True, seed=0)
            runner = PartRunner(chain, Placement(device, fp16=True, mode="graph"))
            for b in batches:
                x = torch.randn(b, *shape)
                with torch.inference_mode():
                    rows.append({"variant": "serve_fp16", "batch": b,
                                 **time_calls(lambda: runner.run_edge(x, chain.num_exits, 0), device, calls)})
        module.to("cpu", torch.float32)
        torch.cuda.empty_cache()
        out[name] = {"input": list(shape), "what": what, "rows": _per_image(rows)}
    return out


def measure_cpu(quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """The CPU path: eager float32 and (but with ``quick``) ``torch.compile``, short."""
    out: dict[str, Any] = {}
    for name, module, shape, what in _models(quick):
        big = shape[-1] > 64
        batches = (1,) if (quick and big) else (1, 8)
        calls = 3 if big else (10 if quick else 30)
        rows = []
        for b in batches:
            x = torch.randn(b, *shape)
            with torch.inference_mode():
                rows.append({"variant": "eager_fp32", "batch": b, **time_calls(lambda: module(x), "cpu", calls, 1)})
            progress(f"cpu {name} batch {b}: eager {rows[-1]['median_ms']:.2f} ms")
            if not quick:
                torch._dynamo.reset()
                compiled = torch.compile(module, dynamic=False)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    compiled(x)
                    compile_s = time.perf_counter() - t0
                    rows.append({"variant": "compile_fp32", "batch": b, "compile_s": round(compile_s, 1),
                                 **time_calls(lambda: compiled(x), "cpu", calls, 1)})
                progress(f"cpu {name} batch {b}: compiled {rows[-1]['median_ms']:.2f} ms (in {compile_s:.0f} s)")
        out[name] = {"input": list(shape), "what": what, "rows": _per_image(rows)}
    return out


def _per_image(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        r["per_image_ms"] = round(r["median_ms"] / r["batch"], 4)
        r["images_per_s"] = round(1e3 * r["batch"] / r["median_ms"], 1) if r["median_ms"] > 0 else None
    return rows


def verdict(models: dict[str, Any]) -> dict[str, Any]:
    """Per model at batch 1: the CUDA-graph floor, the compiled time and their ratio (and the serving path's)."""
    out = {}
    for name, m in models.items():
        at1 = {r["variant"]: r["median_ms"] for r in m["rows"] if r["batch"] == 1}
        floor, comp = at1.get("graph_fp16"), at1.get("compile_fp16")
        if floor is None or comp is None:
            continue
        out[name] = {"graph_floor_ms": floor, "compiled_ms": comp, "compiled_over_floor": round(comp / floor, 3),
                     "eager_fp16_over_floor": round(at1["eager_fp16"] / floor, 3),
                     f"compiled_within_{VERDICT_RATIO}x": comp <= VERDICT_RATIO * floor}
        if "serve_fp16" in at1:
            out[name]["serving_path_ms"] = at1["serve_fp16"]
            out[name]["serving_path_over_floor"] = round(at1["serve_fp16"] / floor, 3)
    return out


def run(quick: bool, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The benchmark's result document (without the machine details, which ``write_result`` adds)."""
    from edgent.model.placement import cuda_available

    say = progress or (lambda s: None)
    t0 = time.perf_counter()
    on_gpu = cuda_available()
    saved = torch.get_num_threads()
    try:
        if on_gpu:
            models = measure_gpu(quick, say)
            status = f"measured on a GPU: {torch.cuda.get_device_name(0)}"
        else:
            models = measure_cpu(quick, say)
            status = (f"{NOT_ON_GPU}: torch sees no CUDA device on this machine; CPU path only (eager"
                      f"{'' if quick else ' and torch.compile'}, {torch.get_num_threads()} torch threads)")
    finally:
        torch.set_num_threads(saved)
    result: dict[str, Any] = {
        "status": status, "measured_on_gpu": on_gpu,
        "gpu": torch.cuda.get_device_name(0) if on_gpu else None,
        "cuda": torch.version.cuda, "compile_mode_gpu": COMPILE_MODE, "quick": quick, "models": models,
        "timing": "median of single calls, each to the end of its kernels (synchronised wall time)",
        "load_average_1min": round(os.getloadavg()[0], 2), "seconds": round(time.perf_counter() - t0, 1)}
    if on_gpu:
        v = verdict(models)
        result["verdict"] = v
        result["checks"] = {f"compiled_within_{VERDICT_RATIO}x_of_graph_floor_at_batch_1":
                            bool(v) and all(m[f"compiled_within_{VERDICT_RATIO}x"] for m in v.values())}
    else:
        result["verdict"] = NOT_ON_GPU
        result["checks"] = {}
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"edgent bench gpu: {result['status']}")
    for name, m in result["models"].items():
        print(f"  {name} ({m['what']}):")
        for r in m["rows"]:
            extra = f", compiled in {r['compile_s']:g} s" if "compile_s" in r else ""
            print(f"    {r['variant']:>13} batch {r['batch']:>3}: {r['median_ms']:9.3f} ms "
                  f"({r['per_image_ms']:.4f} ms/image{extra})")
    if isinstance(result["verdict"], dict):
        for name, v in result["verdict"].items():
            print(f"  verdict {name}: compiled {v['compiled_ms']:.3f} ms = {v['compiled_over_floor']:.2f}x the CUDA-graph "
                  f"floor {v['graph_floor_ms']:.3f} ms at batch 1 "
                  f"({'within' if v[f'compiled_within_{VERDICT_RATIO}x'] else 'NOT within'} {VERDICT_RATIO}x)")


def register(sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = sub.add_parser("gpu", help="the edge's parts on a GPU: eager, fp16, CUDA graphs, torch.compile "
                                   "(the CPU path where there is no GPU)")
    add_common_options(p, "fewer calls and batch sizes; no torch.compile on the CPU")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import sys

    from edgent.bench.record import common_options, emit, write_result

    common = common_options(args)
    result = run(common.quick, lambda s: print(s, file=sys.stderr, flush=True))
    result["command"] = "edgent bench gpu" + (" --quick" if common.quick else "") + (
        f" --out-dir {args.out_dir}" if args.out_dir else "")
    path = write_result("gpu", result, common.out_dir)
    emit(result, path, common, _print)
    return 0
