"""Where the planner's inputs come from: the model card (accuracy per exit) and the fitted latency models.

These glue the planner to the other stages for the command line and the benchmarks; the planner itself only
needs a :class:`~edgent.plan.table.LatencyTable`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgent.errors import ConfigError, EdgentError
from edgent.plan.table import LatencyTable, build_latency_table


def card_accuracies(model: str, card_path: str | Path | None = None) -> list[float]:
    """Top-1 per exit from the model card (default: the zoo's card of ``model``)."""
    from edgent.model.card import read_card
    from edgent.model.zoo import zoo_entry

    path = Path(card_path) if card_path is not None else zoo_entry(model).card
    if path is None:
        raise ConfigError(f"model {model!r} has no model card in the zoo; give the accuracy of each exit with "
                          "--accuracies A1,A2,... or a card with --card F")
    if not Path(path).is_file():
        raise ConfigError(f"the model card {path} does not exist yet (it is written when training finishes: "
                          f"`edgent train --model {model}`); give the accuracy of each exit with --accuracies "
                          "A1,A2,... or a card with --card F")
    card = read_card(path)
    if card.model != model:
        raise ConfigError(f"the model card {path} is for model {card.model!r}, not {model!r}: give the card of "
                          f"{model} with --card, or its accuracy per exit with --accuracies A1,A2,...")
    return list(card.exit_top1)


def load_unit_predictor(role: str, path: str | Path | None) -> Any:
    """The latency model of ``role`` ("device" or "edge"): loaded from ``path``, or the fitted default."""
    try:
        import edgent.latency as latency
    except ImportError as exc:
        raise ConfigError("no latency models are available (the package edgent.latency is missing); "
                          "plan from a saved table with --table F instead") from exc
    try:
        if path is not None:
            if not Path(path).is_file():
                raise ConfigError(f"the {role} latency profile {path} does not exist")
            return latency.load_predictor(path)
        return latency.default_predictor(role)
    except EdgentError:
        raise
    except (AttributeError, FileNotFoundError, OSError) as exc:
        raise ConfigError(f"cannot load the {role} latency model ({exc}); fit one with the latency tools or pass "
                          f"--{role}-profile F") from exc


def table_for_model(model: str, *, device_profile: str | Path | None = None,
                    edge_profile: str | Path | None = None, codec: str = "float32",
                    accuracies: Sequence[float] | None = None, card: str | Path | None = None,
                    input_bytes: int | None = None) -> LatencyTable:
    """Build the predicted latency table of a zoo model from its card and the device and edge latency models."""
    from edgent.model.zoo import load_model

    accs = list(accuracies) if accuracies is not None else card_accuracies(model, card)
    device = load_unit_predictor("device", device_profile)
    edge = load_unit_predictor("edge", edge_profile)
    chain = load_model(model, pretrained=False)
    return build_latency_table(chain, accs, device, edge, codec, input_bytes=input_bytes)
