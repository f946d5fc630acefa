"""Model cards: the JSON record that travels with trained weights.

A card holds what the planner needs (accuracy per exit, output bytes per unit) and what a reader needs to trust and
reproduce the weights (training configuration, data set, the exact command, FLOPs and parameters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain
from edgent.model.describe import describe_model

CARD_VERSION = 1


@dataclass(frozen=True)
class ModelCard:
    """The parts of a card that other stages use; ``raw`` holds the whole JSON."""

    model: str
    exit_top1: tuple[float, ...]
    raw: dict[str, Any]

    def accuracy(self, exit: int) -> float:
        """Top-1 accuracy of ``exit`` (1-based) on the test split."""
        if not 1 <= exit <= len(self.exit_top1):
            raise ModelError(f"exit {exit} is out of range: the card of {self.model!r} has exits 1..{len(self.exit_top1)}")
        return self.exit_top1[exit - 1]


def build_card(chain: MultiExitChain, exit_top1: list[float], extra: dict[str, Any]) -> dict[str, Any]:
    """Assemble a card for ``chain`` with its measured per-exit accuracy and any training details."""
    desc = describe_model(chain)
    for ex, acc in zip(desc["exits"], exit_top1, strict=True):
        ex["top1"] = acc
    return {"card_version": CARD_VERSION, **desc, **extra}


def write_card(card: dict[str, Any], path: str | Path) -> None:
    """Write a card as indented JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=1) + "\n")


def read_card(path: str | Path) -> ModelCard:
    """Read a card written by :func:`write_card`, with clear errors for a missing or malformed file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        exits = raw["exits"]
        top1 = tuple(float(e["top1"]) for e in exits)
        return ModelCard(model=str(raw["model"]), exit_top1=top1, raw=raw)
    except FileNotFoundError as exc:
        raise ModelError(f"model card {path} does not exist") from exc
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"model card {path} is malformed ({exc}); regenerate it with `edgent train`") from exc
