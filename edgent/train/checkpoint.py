"""Resumable training: one checkpoint file per run holding the model, optimizer, scheduler, epoch, history and
the torch RNG, tied to the run's configuration so that a resume never continues another run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from edgent.errors import ConfigError


def save_checkpoint(path: Path, model: torch.nn.Module, opt: Any, sched: Any, epoch: int, config_key: str,
                    history: list[dict]) -> None:
    """Write the state after ``epoch`` epochs (1-based count) to ``path``."""
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "epoch": epoch, "config": config_key, "history": json.dumps(history),
                "torch_rng": torch.get_rng_state()}, path)


def load_checkpoint(path: Path, model: torch.nn.Module, opt: Any, sched: Any,
                    config_key: str) -> tuple[int, list[dict]]:
    """Restore a run from ``path`` into ``model``, ``opt`` and ``sched``; returns (epochs done, history). A
    checkpoint written with another configuration is an error that says how to start afresh."""
    state = torch.load(path, weights_only=True)
    if state["config"] != config_key:
        raise ConfigError(f"{path} was written with another configuration; remove it or change --out")
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if "torch_rng" in state:  # dropout and augmentation draws continue as in an uninterrupted run
        torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]), json.loads(state["history"])
