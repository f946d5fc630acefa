"""``edgent bench onnx``: the device part of a plan under ONNX Runtime against eager PyTorch.

For each model (default: ``alexnet-cifar10`` and the zoo's torchvision ``resnet18`` and ``mobilenet_v2``) and
each device part ``[0, p)`` of the main exit at a few partition points ``p`` (a quarter, half, three quarters and
all of its units), the part is exported once (:mod:`edgent.model.onnx_parts`) and both runtimes are timed in the
same run, interleaved call by call (torch, onnx, torch, onnx, ...) on one thread at batch 1 (the device's
setting), after a warm-up. Reported per part: the median of each runtime, the median of the per-round ratio
onnx / torch (below 1: ONNX Runtime is faster), and the largest absolute difference of the two outputs on the
same input. Then each unit of the main exit alone under both runtimes (one session per unit, as the ONNX profile
times them), interleaved: per-unit ratios and the sums of the units. The figures go to ``benchmarks/results/onnx.json`` and ``docs/own-model.md``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

DEFAULT_MODELS = "alexnet-cifar10,resnet18,mobilenet_v2"


def part_points(num_units: int) -> list[int]:
    """Partition points a quarter, half, three quarters and all of the way through ``num_units`` units."""
    return sorted({max(1, round(num_units * f)) for f in (0.25, 0.5, 0.75)} | {num_units})


def measure_model(model: str, rounds: int, threads: int = 1) -> dict[str, Any]:
    """Per-part times and agreement of one model (see the module docstring)."""
    import torch

    from edgent.model.onnx_parts import OnnxDeviceChain
    from edgent.profile.profiler import load_chain

    torch.set_num_threads(threads)
    chain = load_chain(model).eval()
    onnx = OnnxDeviceChain(chain, threads=threads)
    ep = chain.exit_points[-1]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((1, *chain.input_shape), generator=gen)
    parts = []
    for p in part_points(ep.num_units):
        t0 = time.perf_counter()
        onnx.prepare(ep.exit, p)
        export_s = time.perf_counter() - t0
        with torch.inference_mode():
            ref = chain.run_device(x, ep.exit, p)
            out = onnx.run_device(x, ep.exit, p)
            for _ in range(2):  # warm-up of both
                chain.run_device(x, ep.exit, p)
                onnx.run_device(x, ep.exit, p)
            torch_ms, onnx_ms = [], []
            for _ in range(rounds):
                t = time.perf_counter()
                chain.run_device(x, ep.exit, p)
                torch_ms.append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                onnx.run_device(x, ep.exit, p)
                onnx_ms.append((time.perf_counter() - t) * 1e3)
        ratios = np.asarray(onnx_ms) / np.asarray(torch_ms)
        parts.append({"exit": ep.exit, "point": p, "units": f"0..{p - 1}", "of_units": ep.num_units,
                      "torch_ms_median": float(np.median(torch_ms)), "onnx_ms_median": float(np.median(onnx_ms)),
                      "ratio_onnx_over_torch_median": float(np.median(ratios)),
                      "ratio_p25": float(np.percentile(ratios, 25)), "ratio_p75": float(np.percentile(ratios, 75)),
                      "max_abs_diff": float((out - ref).abs().max()),
                      "output_max_abs": float(ref.abs().max()), "export_and_open_s": round(export_s, 2)})
    return {"model": chain.name, "input_shape": list(chain.input_shape), "rounds": rounds, "threads": threads,
            "parts": parts, "units": measure_units(chain, x, max(3, rounds // 3), threads)}


def measure_units(chain: Any, x: Any, rounds: int, threads: int) -> dict[str, Any]:
    """Each unit of the main exit alone under both runtimes (one ONNX session per unit, as ``edgent profile
    --runtime onnx`` times them), interleaved, on the tensor that reaches it: per-unit medians and ratios, and
    the sums of the units against the whole exit as one part (what per-unit pricing misses or adds)."""
    import torch

    from edgent.model.onnx_parts import OnnxUnits

    ep = chain.exit_points[-1]
    ort_units = OnnxUnits(chain, threads=threads).units(ep.exit)
    inputs, h = [], x
    with torch.inference_mode():
        for unit in chain.units(ep.exit):
            inputs.append(h)
            h = unit(h)
        torch_ms = [[] for _ in inputs]
        onnx_ms = [[] for _ in inputs]
        for _ in range(rounds + 1):  # the first round warms up
            for i, (unit, ort) in enumerate(zip(chain.units(ep.exit), ort_units)):
                t = time.perf_counter()
                unit(inputs[i])
                torch_ms[i].append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                ort(inputs[i])
                onnx_ms[i].append((time.perf_counter() - t) * 1e3)
    rows = []
    for i, name in enumerate(chain.unit_names(ep.exit)):
        ratios = np.asarray(onnx_ms[i][1:]) / np.maximum(np.asarray(torch_ms[i][1:]), 1e-9)
        rows.append({"index": i, "name": name, "torch_ms_median": float(np.median(torch_ms[i][1:])),
                     "onnx_ms_median": float(np.median(onnx_ms[i][1:])), "ratio_median": float(np.median(ratios))})
    return {"exit": ep.exit, "rounds": rounds, "units": rows,
            "ratio_median_over_units": float(np.median([r["ratio_median"] for r in rows])),
            "torch_sum_ms": float(sum(r["torch_ms_median"] for r in rows)),
            "onnx_sum_ms": float(sum(r["onnx_ms_median"] for r in rows))}


def run(models: list[str], rounds: int, threads: int = 1) -> dict[str, Any]:
    import onnxruntime
    import torch

    rows = [measure_model(m, rounds, threads) for m in models]
    ratios = [p["ratio_onnx_over_torch_median"] for r in rows for p in r["parts"]]
    return {"method": "each device part [0, p) of the main exit timed under both runtimes in the same run, "
                      "interleaved call by call, batch 1, one thread; ratio = onnx / torch per round, median",
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "models": rows,
            "ratio_median_over_parts": float(np.median(ratios)),
            "max_abs_diff_over_parts": max(p["max_abs_diff"] for r in rows for p in r["parts"])}


def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("onnx", help="device parts under ONNX Runtime vs eager PyTorch (time ratio, agreement)")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"comma-separated zoo models or model folders "
                   f"(default {DEFAULT_MODELS})")
    p.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds per part (default 30)")
    p.add_argument("--threads", type=int, default=1, help="threads of each runtime (default 1, the device's)")
    add_common_options(p, "5 rounds per part (a smoke run)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edgent.bench.record import common_options, emit, write_result
    from edgent.errors import ConfigError

    common = common_options(args)
    if args.rounds < 1:
        raise ConfigError("--rounds must be at least 1")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    result = run(models, 5 if common.quick else args.rounds, args.threads)
    path = write_result("onnx-quick" if common.quick else "onnx", result, common.out_dir)
    emit(result, path, common, _print_result)
    return 0


def _print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    tab = Table(title=f"device parts, ONNX Runtime {result['onnxruntime']} vs torch {result['torch']} (batch 1)")
    for col in ("model", "part", "torch ms", "onnx ms", "onnx/torch", "max |diff|"):
        tab.add_column(col, justify="right")
    for r in result["models"]:
        for p in r["parts"]:
            tab.add_row(r["model"], f"units {p['units']} of {p['of_units']}", f"{p['torch_ms_median']:.3f}",
                        f"{p['onnx_ms_median']:.3f}", f"{p['ratio_onnx_over_torch_median']:.3f}",
                        f"{p['max_abs_diff']:.2e}")
    Console().print(tab)
    print(f"median ratio over all parts {result['ratio_median_over_parts']:.3f}; largest difference "
          f"{result['max_abs_diff_over_parts']:.2e}")
    for r in result["models"]:
        u = r["units"]
        print(f"{r['model']}: {len(u['units'])} units alone, median onnx/torch {u['ratio_median_over_units']:.3f}; "
              f"sum of units torch {u['torch_sum_ms']:.2f} ms, onnx {u['onnx_sum_ms']:.2f} ms")
