"""``edgent bench rate``: the rate-accuracy curve, bytes per image against top-1, of every way to send a request.

What crosses the link for one CIFAR-10 test image, and the main exit's top-1 when it does: the raw uint8 input,
JPEG input at several qualities (full files, and in the abbreviated format without the tables both sides
derive, ``jpegQQa``), naive cuts (the model's own tensor at a cut, as float16, int8 and int8 with
zstandard), and the learned bottleneck (``bneck-<model>``) where the model has one. Each image is one request:
encoded on its own, decoded, then the rest of the model. Sizes are payload bytes (no framing), mean and spread
over the images; top-1 is on ``--images`` seeded test images (``edgent.train.codec_eval.subset``), all of them
through every point, so the points compare on the same images. Writes ``rate.json`` and ``rate.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

#: cuts of alexnet-cifar10's trunk shown as naive cuts: after pool1, after lrn2, after pool3
DEFAULT_CUTS = ("pool1", "lrn2", "pool3")
JPEG_QUALITIES = (90, 75, 50, 25, 10)
CUT_CODECS = ("float16", "int8", "int8+zstd")


def measure_point(chain, split, codec_name: str, point: int, exit: int | None = None) -> dict[str, Any]:
    """Top-1 of ``exit`` (default the main one) and payload bytes per image when the tensor at ``point`` is sent
    with ``codec_name``, each image one request."""
    import torch

    from edgent.codec import get_codec
    from edgent.data.cifar10 import to_model_input

    codec = get_codec(codec_name)
    ep = chain.exit_point(exit)
    sizes, correct = [], 0
    with torch.inference_mode():
        for start in range(0, len(split), 250):
            imgs = torch.as_tensor(split.images[start:start + 250])
            y = torch.as_tensor(split.labels[start:start + 250])
            h = imgs if codec.kind == "pixels" else chain.run_device(to_model_input(imgs), ep.exit, point)
            back = []
            for i in range(h.shape[0]):
                data = codec.encode(h[i:i + 1])
                sizes.append(len(data))
                back.append(codec.decode(data, (1, *h.shape[1:])))
            t = torch.cat(back)
            if codec.kind == "pixels":
                t = to_model_input(t)
            correct += int((chain.run_edge(t, ep.exit, point).argmax(1) == y).sum())
    s = np.asarray(sizes, dtype=float)
    return {"codec": codec_name, "point": point, "exit": ep.exit, "top1": correct / len(split),
            "bytes_mean": float(s.mean()), "bytes_std": float(s.std()), "bytes_p95": float(np.percentile(s, 95)),
            "images": len(split)}


def run(model: str = "alexnet-cifar10", images: int = 2000, cuts: tuple[str, ...] = DEFAULT_CUTS,
        progress=print) -> dict[str, Any]:
    """Measure every point of the curve (see the module docstring); returns the result document."""
    from edgent.codec import get_codec
    from edgent.data.cifar10 import load_split
    from edgent.errors import EdgentError
    from edgent.model.zoo import load_for_inference
    from edgent.train.codec_eval import subset

    chain = load_for_inference(model)
    split = subset(load_split("test"), images)
    plan: list[tuple[str, str, int]] = [("input", "uint8", 0)]
    plan += [("input", f"jpeg{q}", 0) for q in JPEG_QUALITIES]
    plan += [("input, abbreviated", f"jpeg{q}a", 0) for q in JPEG_QUALITIES]
    for cut in cuts:
        p = chain.trunk_names.index(cut) + 1
        plan += [(f"cut after {cut}", c, p) for c in CUT_CODECS]
    try:
        neck = get_codec(f"bneck-{model}")
        plan.append((f"bottleneck after {neck.spec.after_unit}", neck.name, neck.point))
    except EdgentError as exc:
        progress(f"no learned bottleneck for {model}: {exc}")
    points = []
    t0 = time.perf_counter()
    for kind, codec, p in plan:
        row = {"kind": kind, **measure_point(chain, split, codec, p)}
        points.append(row)
        progress(f"{kind:>22} {codec:>22}: {row['bytes_mean']:9.1f} B  top-1 {row['top1']:.4f}")
    return {"model": model, "images": len(split), "image_set": split.source, "exit": chain.num_exits,
            "points": points, "seconds": time.perf_counter() - t0,
            "note": "payload bytes per image (one request each, no framing); top-1 of the main exit"}


def plot(result: dict[str, Any], path: Path) -> Path:
    """Bytes per image (log) against top-1, one marker style per kind of point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    styles = {"input": ("o", "C0"), "abbreviated": ("D", "C2"), "cut": ("s", "C1"), "bottleneck": ("*", "C3")}
    for row in result["points"]:
        key = "abbreviated" if "abbreviated" in row["kind"] else row["kind"].split()[0]
        marker, color = styles.get(key, ("x", "k"))
        ax.errorbar(row["bytes_mean"], row["top1"], xerr=row["bytes_std"], fmt=marker, color=color,
                    markersize=12 if key == "bottleneck" else 6)
        ax.annotate(f"{row['codec']}" + (f" @{row['point']}" if row["point"] else ""),
                    (row["bytes_mean"], row["top1"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image sent (mean; bars: one standard deviation)")
    ax.set_ylabel(f"top-1 of the main exit ({result['images']} CIFAR-10 test images)")
    ax.set_title(f"{result['model']}: rate against accuracy\n(blue: input, green: abbreviated JPEG input, "
                 "orange: naive cuts, red: bottleneck)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def register(bench_sub: argparse._SubParsersAction) -> None:
    from edgent.bench.record import add_common_options

    p = bench_sub.add_parser("rate", help="the rate-accuracy curve: bytes per image against top-1 for JPEG input, "
                                          "uint8 input, naive cuts and the learned bottleneck")
    p.add_argument("--model", default="alexnet-cifar10")
    p.add_argument("--images", type=int, default=2000, help="seeded CIFAR-10 test images (default 2000)")
    p.add_argument("--cuts", default=",".join(DEFAULT_CUTS), help="trunk units after which to cut naively")
    add_common_options(p, "300 images instead of --images (a smoke run)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from edgent.bench.record import common_options, emit, write_result

    common = common_options(args)
    n = min(args.images, 300) if common.quick else args.images
    result = run(args.model, n, tuple(c for c in args.cuts.split(",") if c))
    name = "rate-quick" if common.quick else "rate"
    result["plot"] = str(plot(result, Path(common.out_dir) / f"{name}.png"))
    path = write_result(name, result, common.out_dir)
    emit(result, path, common, _print_result)
    return 0


def _print_result(result: dict) -> None:
    for row in result["points"]:
        print(f"{row['kind']:>22} {row['codec']:>22}: {row['bytes_mean']:9.1f} B (sd {row['bytes_std']:.1f})  "
              f"top-1 {row['top1']:.4f}")
