"""Any labelled image data set for training and evaluating a model: an ImageFolder, or CIFAR-10.

An *ImageFolder* is ``ROOT/CLASS/*.jpg|png|...`` (one folder per class, classes in sorted order, as torchvision's
``ImageFolder``); ``ROOT`` may hold ``train/`` and ``test/`` (or ``val/``) folders of that shape, else the test
split is a seeded share of the images. Images are decoded once to uint8 (N, C, H, W) at the model's input size
(resized with bilinear filtering; RGB for 3 channels, grey for 1). ``cifar10`` (or a CIFAR-10 folder/archive)
names the CIFAR-10 splits of :mod:`edgent.data.cifar10`, resized to the model's input size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from edgent.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class LabelledImages:
    """One split: ``images`` uint8 (N, C, H, W) at the model's input size, ``labels`` int64 (N,) indexing
    ``classes``, and where it came from."""

    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def _class_dirs(root: Path) -> list[Path]:
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def _files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _decode(files: Sequence[Path], input_shape: Sequence[int]) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    c, h, w = (int(d) for d in input_shape)
    if c not in (1, 3):
        raise DataError(f"the model takes {c}-channel input; image folders give 1 (grey) or 3 (RGB) channels")
    out = np.empty((len(files), c, h, w), dtype=np.uint8)
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                im = im.convert("RGB" if c == 3 else "L")
                if im.size != (w, h):
                    im = im.resize((w, h), Image.BILINEAR)
                arr = np.asarray(im)
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot decode image {f}: {exc}") from exc
        out[i] = arr.transpose(2, 0, 1) if c == 3 else arr[None]
    return out


def _split_root(root: Path, split: str) -> Path | None:
    names = ("train",) if split == "train" else ("test", "val")
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def is_cifar10(data: str | os.PathLike | None) -> bool:
    """Whether ``data`` names CIFAR-10 (``cifar10``, None for the default location, or a CIFAR-10 folder or
    archive)."""
    if data is None or str(data) == "cifar10":
        return True
    p = Path(data)
    if p.suffix == ".xz" or p.name.endswith(".tar.xz"):
        return True
    root = p / "train" if (p / "train").is_dir() else None
    if root is None:
        return False
    from edgent.data.cifar10 import CLASSES

    return sorted(d.name for d in _class_dirs(root)) == sorted(CLASSES) and (p / "test").is_dir()


def resize_batch(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, C, H, W), bilinear (antialiased when shrinking)."""
    h, w = int(size[0]), int(size[1])
    if tuple(images.shape[-2:]) == (h, w):
        return images
    out = torch.nn.functional.interpolate(images.float(), size=(h, w), mode="bilinear", align_corners=False,
                                          antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8)


def load_labelled(data: str | os.PathLike | None, split: str, input_shape: Sequence[int],
                  test_share: float = 0.2, seed: int = 0) -> LabelledImages:
    """The ``split`` ("train" or "test") of ``data`` (an ImageFolder or CIFAR-10, see the module docstring) at
    ``input_shape`` (C, H, W)."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    if is_cifar10(data):
        from edgent.data.cifar10 import CLASSES, load_split

        if int(input_shape[0]) != 3:
            raise DataError(f"CIFAR-10 images are RGB; the model takes {input_shape[0]} channels")
        s = load_split(split, None if data is None or str(data) == "cifar10" else data)
        images = s.images
        if tuple(images.shape[-2:]) != tuple(int(d) for d in input_shape[1:]):
            chunks = [resize_batch(torch.from_numpy(images[i:i + 2000]), input_shape[1:]).numpy()
                      for i in range(0, len(images), 2000)]
            images = np.concatenate(chunks)
        return LabelledImages(images, s.labels, tuple(CLASSES), s.source)
    root = Path(data)
    if not root.is_dir():
        raise DataError(f"--data {root} does not exist; give an image folder (ROOT/CLASS/*.jpg, optionally with "
                        "train/ and test/) or cifar10")
    sub = _split_root(root, split)
    if sub is not None:
        classes = [d.name for d in _class_dirs(sub)]
        if split == "test":  # the classes are the training split's, in its order
            train_root = _split_root(root, "train")
            if train_root is not None:
                train_classes = [d.name for d in _class_dirs(train_root)]
                if set(classes) - set(train_classes):
                    raise DataError(f"{sub} has classes {sorted(set(classes) - set(train_classes))} that "
                                    f"{train_root} lacks")
                classes = train_classes
        files, labels = [], []
        for k, name in enumerate(classes):
            if (sub / name).is_dir():
                fs = _files(sub / name)
                files += fs
                labels += [k] * len(fs)
        where = str(sub)
    else:
        class_dirs = _class_dirs(root)
        classes = [d.name for d in class_dirs]
        files, labels = [], []
        rng = np.random.default_rng(seed)
        for k, d in enumerate(class_dirs):
            fs = _files(d)
            order = rng.permutation(len(fs))
            n_test = int(round(len(fs) * test_share))
            pick = order[:n_test] if split == "test" else order[n_test:]
            files += [fs[i] for i in sorted(pick)]
            labels += [k] * len(pick)
        where = (f"{root}, {split} split: {'held out' if split == 'test' else 'all but the held-out'} "
                 f"{test_share:.0%} of each class (seed {seed})")
    if len(classes) < 2:
        raise DataError(f"{root} must hold one folder per class (at least 2), found {classes}")
    if not files:
        raise DataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found for the {split} split under {root}")
    return LabelledImages(_decode(files, input_shape), np.asarray(labels, dtype=np.int64), tuple(classes), where)


def augment_batch(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the image padded by 1/8 of its size, and a random horizontal flip, on a uint8 batch of any
    size (the usual small-image augmentation)."""
    n, _, h, w = images.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    padded = torch.nn.functional.pad(images, (pw, pw, ph, ph), mode="constant", value=0)
    dx = torch.randint(0, 2 * pw + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * ph + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i]: dy[i] + h, dx[i]: dx[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out
