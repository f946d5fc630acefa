"""The one accuracy resolution (edgent.model.card.resolve_accuracies) with every former caller's case: the plan
command's and the demo's --accuracies, the dynamic benchmark's card lookup, the planner benchmark's card, and the
errors each used to give in its own words."""

from __future__ import annotations

import json

import pytest

from edgent.errors import ModelError
from edgent.model.card import card_accuracies, parse_accuracies, read_card, resolve_accuracies
from edgent.model.zoo import zoo_entry

MODEL = "alexnet-cifar10"


def test_the_zoo_card_is_the_default_and_says_where_it_came_from() -> None:
    acc = resolve_accuracies(MODEL, num_exits=5)
    assert acc.measured and str(zoo_entry(MODEL).card) in acc.source
    assert list(acc.values) == list(read_card(zoo_entry(MODEL).card).exit_top1) == card_accuracies(MODEL)


def test_given_accuracies_are_assumed_and_checked() -> None:
    acc = resolve_accuracies(MODEL, parse_accuracies("0.5,0.6,0.7,0.75,0.8"), num_exits=5)
    assert acc.values == (0.5, 0.6, 0.7, 0.75, 0.8) and not acc.measured and "assumed" in acc.source
    assert parse_accuracies("") is None and parse_accuracies(None) is None
    with pytest.raises(ModelError, match="--accuracies"):
        parse_accuracies("0.5,high")
    with pytest.raises(ModelError, match=r"\[0, 1\]"):
        resolve_accuracies(MODEL, [0.5, 1.5])
    with pytest.raises(ModelError, match="5 exits but 2 accuracies"):
        resolve_accuracies(MODEL, [0.5, 0.6], num_exits=5)
    with pytest.raises(ModelError, match="either --accuracies or --card"):
        resolve_accuracies(MODEL, [0.5], card="x.json")


def test_a_missing_or_foreign_card_is_an_error_with_the_fix(tmp_path) -> None:
    with pytest.raises(ModelError, match="does not exist.*--accuracies"):
        resolve_accuracies(MODEL, card=tmp_path / "none.json")
    with pytest.raises(ModelError, match="no model card in the zoo"):
        resolve_accuracies("resnet18")
    foreign = json.loads(zoo_entry(MODEL).card.read_text())
    foreign["model"] = "resnet18"
    path = tmp_path / "card.json"
    path.write_text(json.dumps(foreign))
    with pytest.raises(ModelError, match="card of 'resnet18', not of 'alexnet-cifar10'"):
        resolve_accuracies(MODEL, card=path)
    assert resolve_accuracies("resnet18", card=path).values == resolve_accuracies(MODEL).values
