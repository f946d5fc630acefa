"""Shared fixtures: a tiny synthetic CIFAR-like ImageFolder, and where the real data lives."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from edgent.data.cifar10 import CLASSES

REPO = Path(__file__).resolve().parents[1]
SHARED_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.xz"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep each test session's data cache apart from the user's, except for the real CIFAR-10 decode."""
    if "EDGENT_CACHE" not in os.environ:
        monkeypatch.setenv("EDGENT_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def write_image_folder(root: Path, per_class: int = 3, seed: int = 0) -> Path:
    """Write a CIFAR-10 shaped ImageFolder (train/ and test/) of random 32x32 JPEGs; return its root."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for label, name in enumerate(CLASSES):
            d = root / split / name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
                arr[..., label % 3] = 200  # a learnable hint
                Image.fromarray(arr).save(d / f"{i:04d}.jpg")
    return root


@pytest.fixture
def tiny_cifar(tmp_path) -> Path:
    return write_image_folder(tmp_path / "tiny-cifar")


def real_cifar_available() -> bool:
    return SHARED_ARCHIVE.is_file() or bool(os.environ.get("EDGENT_DATA"))
