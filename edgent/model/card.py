"""Model cards: the JSON record that travels with trained weights.

A card holds what the planner needs (accuracy per exit, output bytes per unit) and what a reader needs to trust and
reproduce the weights (training configuration, data set, the exact command, FLOPs and parameters).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

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


@dataclass(frozen=True)
class ExitAccuracies:
    """Top-1 per exit (1..N) and where the figures come from (said in every output that uses them)."""

    values: tuple[float, ...]
    source: str
    measured: bool


def card_path(model: str) -> Path | None:
    """The card file of ``model`` (a zoo name or a model folder; None when it has no card)."""
    from edgent.model.zoo import load_model_spec

    return load_model_spec(model).card


def resolve_accuracies(model: str, accuracies: Sequence[float] | None = None, card: str | Path | None = None,
                       num_exits: int | None = None) -> ExitAccuracies:
    """The per-exit accuracies every stage plans with: given values (``accuracies``, assumed, not measured), else
    the card ``card``, else the zoo's card of ``model``. A card of another model, values outside [0, 1] or a
    count that differs from ``num_exits`` (when known) are errors that say how to fix them; this is the one place
    accuracies are resolved. ``model`` is a zoo name or a model folder (its card is the folder's)."""
    from edgent.model.zoo import load_model_spec

    if accuracies is not None and card is not None:
        raise ModelError("give either --accuracies or --card, not both")
    if accuracies is not None:
        vals = tuple(float(a) for a in accuracies)
        if not vals or any(not (math.isfinite(a) and 0.0 <= a <= 1.0) for a in vals):
            raise ModelError(f"--accuracies {list(vals)} must be numbers in [0, 1], one per exit, e.g. 0.7,0.75")
        out = ExitAccuracies(vals, "given with --accuracies (assumed, not measured)", measured=False)
    else:
        if card is not None:  # the card's model must be this one (a name that is neither zoo nor folder: itself)
            try:
                name = load_model_spec(model).name
            except ModelError:
                name = str(model)
            path = Path(card)
        else:
            spec = load_model_spec(model)
            name, path = spec.name, spec.card
        if path is None:
            raise ModelError(f"model {model!r} has no model card in the zoo; give the accuracy of each exit with "
                             "--accuracies A1,A2,... or a card with --card F")
        if not path.is_file():
            raise ModelError(f"the model card {path} does not exist (it is written when training finishes: "
                             f"`edgent train --model {model}`, or measured by `edgent eval --model {model} "
                             "--write-card`); give the accuracy of each exit with --accuracies "
                             "A1,A2,... or a card with --card F")
        c = read_card(path)
        if c.model != name:
            raise ModelError(f"the model card {path} is the card of {c.model!r}, not of {name!r}; pass the "
                             f"card of {name!r} with --card")
        out = ExitAccuracies(c.exit_top1, f"model card {path}", measured=True)
    if num_exits is not None and len(out.values) != num_exits:
        raise ModelError(f"model {model!r} has {num_exits} exits but {len(out.values)} accuracies come from "
                         f"{out.source}; give one per exit (1..{num_exits})")
    return out


def codec_accuracies(model: str, card: str | Path | None = None) -> dict[str, tuple[float, ...]]:
    """Top-1 per exit through each codec measured for ``model`` (the card's ``codec_accuracy``, written by
    ``edgent eval --codecs ... --update-card``; ``edgent.train.codec_eval`` defines the measurement). A lossless
    suffix (``+zlib``, ``+zstd``) carries its inner codec's values, so ``int8`` also answers ``int8+zstd``
    (:func:`codec_accuracy_of`). An entry measured on a subset (with ``reference_top1``, the model's own top-1
    on those images) gives the card's exit top-1 less the codec's loss on the subset. Empty when the card has
    none."""
    path = Path(card) if card is not None else card_path(model)
    if path is None or not path.is_file():
        return {}
    c = read_card(path)
    raw = c.raw.get("codec_accuracy", {})
    try:
        out = {}
        for k, v in raw.items():
            top1 = [float(a) for a in v["top1"]]
            ref = v.get("reference_top1")
            if ref is not None:  # measured on a subset: the card's top-1 less the codec's loss there
                top1 = [min(1.0, max(0.0, e - max(0.0, r - a))) for e, r, a in zip(c.exit_top1, ref, top1)]
            out[str(k)] = tuple(top1)
        return out
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"the codec_accuracy of model card {path} is malformed ({exc}); rerun "
                         "`edgent eval --codecs ... --update-card`") from exc


def codec_accuracy_of(measured: dict[str, tuple[float, ...]], codec: str) -> tuple[float, ...] | None:
    """The accuracies of ``codec`` in ``measured`` (:func:`codec_accuracies`), or its inner codec's when it only
    adds lossless compression; None when not measured."""
    if codec in measured:
        return measured[codec]
    inner, _, comp = codec.partition("+")
    if comp in ("zlib", "zstd") and not codec.startswith("bneck-"):
        return measured.get(inner)
    return None


def card_accuracies(model: str, card: str | Path | None = None) -> list[float]:
    """Top-1 per exit from the model card (``card``, default the zoo's card of ``model``)."""
    return list(resolve_accuracies(model, card=card).values)


def parse_accuracies(text: str | None) -> list[float] | None:
    """``--accuracies A1,A2,...`` as numbers (None for an empty option); range and count are checked by
    :func:`resolve_accuracies`."""
    if text is None or not str(text).strip():
        return None
    try:
        return [float(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ModelError(f"--accuracies must be comma-separated numbers in [0, 1], e.g. 0.7,0.75; got {text!r}") \
            from None
