"""CIFAR-10: find it, extract it once to a cache, decode it once to arrays, and serve batches.

Where the data comes from, first match wins:

1. ``--data PATH`` (the ``path`` argument) or the ``EDGENT_DATA`` variable: an ImageFolder directory holding
   ``train/`` and ``test/`` (or the folder above it), or a ``.tar.xz`` archive of one;
2. the project's shared archive ``../shared/datasets/cifar10-jpeg.tar.xz`` next to the repository or the
   working directory;
3. torchvision's downloader, only when asked (``download=True``) and the internet is reachable.

Archives are extracted once to ``$EDGENT_CACHE`` (default ``~/.cache/edgent``); the decoded images are kept there
as ``.npy`` arrays so that a second run starts in a second.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgent.errors import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
#: Per-channel mean and standard deviation of the CIFAR-10 training images (on the 0..1 scale).
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)
ARCHIVE_NAME = "cifar10-jpeg.tar.xz"
DATASET_NOTE = (
    "CIFAR-10 (Krizhevsky 2009), 50,000 train / 10,000 test images, re-encoded as JPEG by a public mirror: "
    "accuracy on it is comparable to, not identical with, accuracy on the original CIFAR-10 binaries"
)

HOW_TO_GET = (
    "CIFAR-10 was not found. Give its location with --data PATH or the EDGENT_DATA variable: an ImageFolder "
    "directory with train/<class>/*.jpg and test/<class>/*.jpg, or a .tar.xz archive of one (this project's "
    "../shared/datasets/cifar10-jpeg.tar.xz). Where the internet is reachable, --download fetches it with "
    "torchvision."
)


@dataclass(frozen=True)
class ImageSplit:
    """One split of the data set: ``images`` uint8 (N, 3, 32, 32) and ``labels`` int64 (N,)."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.labels)


def cache_dir() -> Path:
    """The folder where edgent keeps extracted and decoded data (``$EDGENT_CACHE`` or ``~/.cache/edgent``)."""
    return Path(os.environ.get("EDGENT_CACHE", Path.home() / ".cache" / "edgent"))


def _repo_candidates() -> list[Path]:
    here = Path(__file__).resolve()
    roots = [Path.cwd(), *here.parents]
    out = []
    for r in roots:
        out.append(r / ".." / "shared" / "datasets" / ARCHIVE_NAME)
        out.append(r / "shared" / "datasets" / ARCHIVE_NAME)
    return out


def _folder_root(path: Path) -> Path | None:
    """The directory that holds ``train/`` and ``test/`` at or just below ``path``, if any."""
    for cand in (path, *sorted(p for p in path.iterdir() if p.is_dir())):
        if (cand / "train").is_dir() and (cand / "test").is_dir():
            return cand
    return None


def _extract(archive: Path) -> Path:
    target = cache_dir() / archive.name.removesuffix(".tar.xz").removesuffix(".tar.gz").removesuffix(".tar")
    done = target / ".extracted"
    if not done.exists():
        target.mkdir(parents=True, exist_ok=True)
        try:
            with tarfile.open(archive) as tf:
                tf.extractall(target, filter="data")
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DataError(f"cannot extract {archive}: {exc}. Is it a complete .tar.xz archive?") from exc
        done.touch()
    root = _folder_root(target)
    if root is None:
        raise DataError(f"{archive} holds no train/ and test/ folders; expected an ImageFolder layout")
    return root


def locate(path: str | os.PathLike | None = None, download: bool = False) -> Path:
    """Find CIFAR-10 and return the ImageFolder root holding ``train/`` and ``test/``."""
    given = path if path is not None else os.environ.get("EDGENT_DATA")
    if given:
        p = Path(given).expanduser()
        if not p.exists():
            raise DataError(f"the data path {p} does not exist. {HOW_TO_GET}")
        if p.is_file():
            return _extract(p)
        root = _folder_root(p)
        if root is None:
            raise DataError(f"{p} holds no train/ and test/ folders. {HOW_TO_GET}")
        return root
    for cand in _repo_candidates():
        if cand.is_file():
            return _extract(cand.resolve())
    if download:
        return _download()
    raise DataError(HOW_TO_GET)


def _download() -> Path:
    """Fetch CIFAR-10 with torchvision and write it as an ImageFolder tree in the cache."""
    import torchvision
    from PIL import Image

    root = cache_dir() / "cifar10-torchvision"
    if (root / ".written").exists():
        return root
    for split, train in (("train", True), ("test", False)):
        try:
            ds = torchvision.datasets.CIFAR10(str(cache_dir() / "download"), train=train, download=True)
        except Exception as exc:  # network errors come in many types
            raise DataError(f"downloading CIFAR-10 failed: {exc}. {HOW_TO_GET}") from exc
        for i, (img, label) in enumerate(zip(ds.data, ds.targets)):
            d = root / split / CLASSES[label]
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(d / f"{i:05d}.png")
    (root / ".written").touch()
    return root


def load_split(split: str, path: str | os.PathLike | None = None, download: bool = False) -> ImageSplit:
    """Load ``split`` ("train" or "test") as uint8 arrays, decoding the image files once into a cache."""
    if split not in ("train", "test"):
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")
    root = locate(path, download)
    key = str(root.resolve()).strip("/").replace("/", "_")
    cached = cache_dir() / "decoded" / key / f"{split}.npz"
    if cached.exists():
        with np.load(cached) as z:
            return ImageSplit(z["images"], z["labels"], str(root / split))
    images, labels = _decode_folder(root / split)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".{os.getpid()}.tmp.npz")  # processes decoding at once do not share a file
    np.savez(tmp, images=images, labels=labels)
    tmp.replace(cached)
    return ImageSplit(images, labels, str(root / split))


def _decode_folder(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if tuple(classes) != tuple(sorted(CLASSES)):
        raise DataError(f"{folder} must hold one folder per CIFAR-10 class {sorted(CLASSES)}, found {classes}")
    files: list[tuple[Path, int]] = []
    for name in classes:
        label = CLASSES.index(name)
        files += [(f, label) for f in sorted((folder / name).iterdir()) if f.is_file()]
    images = np.empty((len(files), 3, 32, 32), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    for i, (f, label) in enumerate(files):
        try:
            with Image.open(f) as im:
                arr = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot decode image {f}: {exc}") from exc
        if arr.shape != (32, 32, 3):
            raise DataError(f"image {f} is {arr.shape[1]}x{arr.shape[0]}, CIFAR-10 images are 32x32")
        images[i] = arr.transpose(2, 0, 1)
        labels[i] = label
    return images, labels


def to_model_input(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Turn uint8 images (N, 3, H, W) into the normalised float32 tensor the CIFAR-10 models take."""
    t = torch.as_tensor(images)
    if t.dtype != torch.uint8:
        raise DataError(f"images must be uint8 pixels, got {t.dtype}")
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise DataError(f"images must have shape (N, 3, H, W), got {tuple(t.shape)}")
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (t.float().div_(255.0) - mean) / std


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The usual CIFAR-10 augmentation on a uint8 batch: random 32x32 crop of the 4-pixel padded image, random
    horizontal flip."""
    n = images.shape[0]
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4), mode="constant", value=0)
    dx = torch.randint(0, 9, (n,), generator=generator)
    dy = torch.randint(0, 9, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    out = torch.empty_like(images)
    for i in range(n):
        crop = padded[i, :, dy[i] : dy[i] + 32, dx[i] : dx[i] + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def request_images(n: int, seed: int = 0, synthetic: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``n`` images to send as requests, with their labels and a sentence saying what they are: CIFAR-10 test
    images (uint8, in a seeded order), or, with ``synthetic`` or when the data set is not available, seeded
    random images without labels (then accuracy can only be the model card's, and the sentence says so)."""
    rng = np.random.default_rng(seed)
    if not synthetic:
        try:
            split = load_split("test")
            idx = rng.permutation(len(split))[:n]
            return split.images[idx], split.labels[idx], f"CIFAR-10 test images ({split.source}), seeded order"
        except DataError as exc:
            why = f"CIFAR-10 is not available ({str(exc).splitlines()[0]})"
    else:
        why = "synthetic inputs asked for"
    imgs = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    return imgs, None, (f"SYNTHETIC random inputs ({why}): accuracy is the model card's accuracy of the exits used, "
                        "not measured")
