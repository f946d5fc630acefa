"""The committed weights of the zoo (alexnet-cifar10, mobilenet_v3_small-cifar10): their cards meet the bar, and
evaluating them reproduces the cards."""

from __future__ import annotations

import json

import pytest

from edgent.cli.main import main
from edgent.data.cifar10 import CLASSES
from edgent.model.card import read_card
from edgent.model.zoo import zoo_entry

from .conftest import real_cifar_available

ENTRY = zoo_entry("alexnet-cifar10")


def test_card_meets_the_accuracy_bar():
    card = read_card(ENTRY.card)
    top1 = card.exit_top1
    assert len(top1) == 5
    assert top1[-1] >= 0.80, "the full model must reach 0.80 top-1"
    assert top1[0] >= 0.70, "the shallowest exit must reach 0.70 top-1"
    assert all(a <= b for a, b in zip(top1, top1[1:])), f"accuracy must not decrease with depth: {top1}"
    assert ENTRY.weights.stat().st_size < 20 * 2**20


@pytest.mark.slow
@pytest.mark.skipif(not real_cifar_available(), reason="CIFAR-10 (../shared/datasets) not available")
def test_eval_reproduces_the_card(capsys):
    assert main(["eval", "--model", "alexnet-cifar10", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    card = read_card(ENTRY.card)
    assert result["images"] == 10000
    assert [e["top1"] for e in result["exits"]] == pytest.approx(list(card.exit_top1), abs=5e-4)


@pytest.mark.slow
@pytest.mark.skipif(not real_cifar_available(), reason="CIFAR-10 (../shared/datasets) not available")
@pytest.mark.parametrize("codec", ["jpeg75", "jpeg25", "jpeg75a", "bneck-alexnet-cifar10", "int8"])
def test_card_codec_accuracy_is_what_eval_measures(codec, capsys):
    """The card's per-codec accuracy was written by ``edgent eval --codecs``: rerun on the card's check subset
    (the same seeded images), eval gives the card's check figures exactly."""
    from edgent.train.codec_eval import CHECK_IMAGES

    entry = read_card(ENTRY.card).raw["codec_accuracy"][codec]
    assert entry["check_images"] == CHECK_IMAGES and len(entry["top1"]) == 5
    assert main(["eval", "--model", "alexnet-cifar10", "--codecs", codec, "--limit", str(CHECK_IMAGES),
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)["codec_accuracy"][codec]
    assert got["top1"] == pytest.approx(entry["check_top1"], abs=1e-9)


def test_committed_bottleneck_and_card_entry():
    """The committed bottleneck loads as a codec whose point and spec the card records, all weights < 20 MB."""
    from edgent.codec import get_codec
    from edgent.model.bottleneck import bottleneck_path

    path = bottleneck_path("alexnet-cifar10")
    codec = get_codec("bneck-alexnet-cifar10")
    card = read_card(ENTRY.card).raw
    assert card["bottleneck"]["point"] == codec.point and card["bottleneck"]["file"] == path.name
    assert ENTRY.weights.stat().st_size + path.stat().st_size < 20 * 2**20


MNV3 = "mobilenet_v3_small-cifar10"


def test_the_second_zoo_model_is_a_folder_spec_with_weights_and_card():
    entry = zoo_entry(MNV3)
    card = read_card(entry.card)
    assert card.model == MNV3 and len(card.exit_top1) == 4 and entry.input_shape == (3, 64, 64)
    assert entry.weights.stat().st_size < 20 * 2**20
    assert entry.preprocess == {"name": "cifar10"}
    assert json.loads(entry.card.read_text())["classes"] == list(CLASSES)


@pytest.mark.slow
@pytest.mark.skipif(not real_cifar_available(), reason="CIFAR-10 (../shared/datasets) not available")
def test_eval_reproduces_the_second_zoo_models_card(capsys):
    assert main(["eval", "--model", MNV3, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 10000
    assert [e["top1"] for e in result["exits"]] == pytest.approx(list(read_card(zoo_entry(MNV3).card).exit_top1),
                                                                  abs=5e-4)
