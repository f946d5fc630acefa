"""Top-1 accuracy of every exit when the tensor crosses the link through a codec: the codec's accuracy cost.

Definition (what the model card's ``codec_accuracy`` holds and the planner prices):

- a pixel codec (``uint8``, ``jpegQQ``): each test image encoded and decoded on its own (one request), then the
  model's preprocessing and every exit;
- a learned bottleneck (``bneck-<model>``): the model to its point, each image's tensor encoded and decoded on
  its own, then every exit;
- a tensor codec (``float16``, ``int8``, ``int8c``): for each exit, the **worst** top-1 over every cut
  ``1..N_i - 1`` of that exit, each image's tensor encoded and decoded on its own (a per-request quantisation
  range, as the runtime sends it);
- a lossless suffix (``+zlib``, ``+zstd``) does not change the values: such a codec has its inner codec's
  accuracy;
- measured on a subset of the split, the entry also holds the model's own top-1 on the same images
  (``reference_top1``), and the accuracy the planner uses is the card's exit top-1 minus the codec's measured
  loss on that subset (:func:`edgent.model.card.codec_accuracies`), so that subsets' sampling noise does not
  pass for a codec's cost.

Requests are batch 1 on the wire, so encoding is per image; the model then runs on batches.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from edgent.data.cifar10 import ImageSplit, to_model_input
from edgent.model.bottleneck import forward_all_from
from edgent.model.chain import MultiExitChain

CHECK_IMAGES = 256


def _round_trip(codec, h: torch.Tensor) -> torch.Tensor:
    return torch.cat([codec.decode(codec.encode(h[i:i + 1]), (1, *h.shape[1:])) for i in range(h.shape[0])])


def _inner_name(name: str) -> str:
    return name.split("+", 1)[0] if "+" in name and not name.startswith("bneck-") else name


@torch.no_grad()
def evaluate_codec(chain: MultiExitChain, split: ImageSplit, name: str, batch_size: int = 250) -> list[float]:
    """Top-1 of each exit (exit 1 first) on ``split`` through codec ``name`` (see the module docstring)."""
    from edgent.codec import get_codec

    chain.eval()
    codec = get_codec(_inner_name(name))
    n_ex = chain.num_exits
    if codec.kind == "pixels" or name.startswith("bneck-"):
        correct = np.zeros(n_ex, dtype=np.int64)
    else:  # per exit, per cut point
        correct_p = [np.zeros(ep.num_units + 1, dtype=np.int64) for ep in chain.exit_points]
    for start in range(0, len(split), batch_size):
        imgs = torch.as_tensor(split.images[start:start + batch_size])
        y = torch.as_tensor(split.labels[start:start + batch_size])
        if codec.kind == "pixels":
            outs = chain.forward_all(to_model_input(_round_trip(codec, imgs)))
        elif name.startswith("bneck-"):
            p = codec.point
            h = chain.run_device(to_model_input(imgs), None, p)
            outs = forward_all_from(chain, _round_trip(codec, h), p)
        else:
            x = to_model_input(imgs)
            for ep in chain.exit_points:
                h = x
                for p, unit in enumerate(chain.units(ep.exit)[:-1]):
                    h = unit(h)  # h is now the tensor at point p + 1
                    out = chain.run_edge(_round_trip(codec, h), ep.exit, p + 1)
                    correct_p[ep.exit - 1][p + 1] += int((out.argmax(1) == y).sum())
            continue
        for i, logits in enumerate(outs):
            correct[i] += int((logits.argmax(1) == y).sum())
    if codec.kind == "pixels" or name.startswith("bneck-"):
        return [float(c) / len(split) for c in correct]
    return [float(c[1:-1].min()) / len(split) if len(c) > 2 else float("nan") for c in correct_p]


def subset(split: ImageSplit, n: int | None, seed: int = 0) -> ImageSplit:
    """``n`` images of ``split`` drawn without replacement in a seeded order (all when ``n`` is None; the split
    is stored sorted by class, so the first ``n`` would not do)."""
    if n is None or n >= len(split):
        return split
    idx = np.sort(np.random.default_rng(seed).permutation(len(split))[:n])
    return ImageSplit(split.images[idx], split.labels[idx], f"{split.source} ({n} seeded, seed {seed})")


def codec_accuracy_entry(chain: MultiExitChain, split: ImageSplit, name: str, limit: int | None = None) -> dict:
    """The model card's entry of codec ``name``: top-1 per exit on ``limit`` seeded images (:func:`subset`), the
    number of images, and the same measured on :data:`CHECK_IMAGES` seeded images (what a test reruns to pin the card to this
    function)."""
    from edgent.train.evaluate import evaluate_exits

    main = subset(split, limit)
    entry = {"top1": [round(a, 6) for a in evaluate_codec(chain, main, name)], "images": len(main),
             "check_images": CHECK_IMAGES,
             "check_top1": [round(a, 6) for a in evaluate_codec(chain, subset(split, CHECK_IMAGES), name)]}
    if len(main) < len(split):  # the model's own top-1 on the same images: the codec's cost is the difference
        entry["reference_top1"] = [round(a, 6) for a in evaluate_exits(chain, main)]
    return entry


def evaluate_codecs(chain: MultiExitChain, split: ImageSplit, names: Sequence[str],
                    limit: int | None = None) -> dict[str, dict]:
    """:func:`codec_accuracy_entry` of each codec of ``names``."""
    return {n: codec_accuracy_entry(chain, split, n, limit) for n in names}
