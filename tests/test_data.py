"""Finding, extracting and decoding CIFAR-10, with clear errors when it is missing or malformed."""

from __future__ import annotations

import tarfile

import numpy as np
import pytest
import torch

from edgent.data.cifar10 import augment, load_split, locate, to_model_input
from edgent.errors import DataError

from .conftest import write_image_folder


def test_image_folder_loads_and_caches(tiny_cifar):
    split = load_split("train", tiny_cifar)
    assert split.images.shape == (30, 3, 32, 32) and split.images.dtype == np.uint8
    assert sorted(set(split.labels.tolist())) == list(range(10))
    again = load_split("train", tiny_cifar)  # from the decoded cache
    np.testing.assert_array_equal(again.images, split.images)


def test_folder_above_the_split_folders_is_found(tmp_path):
    write_image_folder(tmp_path / "outer" / "cifar10-jpeg", per_class=1)
    assert locate(tmp_path / "outer").name == "cifar10-jpeg"


def test_archive_is_extracted_once(tmp_path):
    root = write_image_folder(tmp_path / "src" / "cifar10-jpeg", per_class=1)
    archive = tmp_path / "c.tar.xz"
    with tarfile.open(archive, "w:xz") as tf:
        tf.add(root, arcname="cifar10-jpeg")
    split = load_split("test", archive)
    assert len(split) == 10


def test_env_variable_selects_the_data(tiny_cifar, monkeypatch):
    monkeypatch.setenv("EDGENT_DATA", str(tiny_cifar))
    assert locate() == tiny_cifar


def test_missing_data_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGENT_DATA", str(tmp_path / "nope"))
    with pytest.raises(DataError) as err:
        locate()
    assert "--data" in str(err.value) and "EDGENT_DATA" in str(err.value)  # both ways to give the data
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no train/ and test/"):
        locate(empty)


def test_corrupt_archive_and_image(tmp_path):
    bad = tmp_path / "bad.tar.xz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(DataError, match="cannot extract"):
        locate(bad)
    root = write_image_folder(tmp_path / "c", per_class=1)
    (root / "test" / "cat" / "0000.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot decode image"):
        load_split("test", root)


def test_unknown_split(tiny_cifar):
    with pytest.raises(DataError, match="unknown split"):
        load_split("val", tiny_cifar)


def test_to_model_input_and_augment():
    imgs = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    x = to_model_input(imgs)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 32, 32)
    assert torch.all(x > 1.9)  # (1 - mean) / std
    with pytest.raises(DataError, match="uint8"):
        to_model_input(torch.zeros(1, 3, 32, 32))
    out = augment(imgs, torch.Generator().manual_seed(0))
    assert out.shape == imgs.shape and out.dtype == torch.uint8
