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
