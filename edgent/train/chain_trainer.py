"""Training any multi-exit chain on any labelled image data (an ImageFolder or CIFAR-10), and evaluating it.

Two modes:

- ``exits-only``: the trunk is frozen (its parameters and its batch-norm statistics) and only the exit branches
  learn, each from its own cross-entropy. The common case: a trained model gets exits.
- ``joint``: BranchyNet's joint training (Teerapittayanon et al., 2016), the weighted sum of every exit's
  cross-entropy, all parameters learning.

The recipe: AdamW with a cosine learning rate for ``exits-only``, SGD with Nesterov momentum and a one-cycle
learning rate for ``joint``; random crop (padding 1/8 of the size) and horizontal flip. Each epoch ends with a
checkpoint (``checkpoint.pt``: tensors only, loaded with ``weights_only``); ``resume`` continues from it. The end
writes the weights and the model card (per-exit top-1 on the test split, data set, classes, input size, how it was
trained) into the output model folder. The training mode of the chain exists only inside :func:`train_chain`;
the chain it returns is in eval mode.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgent.data.imagefolder import LabelledImages, augment_batch, load_labelled
from edgent.errors import ConfigError
from edgent.model.card import build_card, write_card
from edgent.model.chain import MultiExitChain
from edgent.model.preprocess import get_preprocess
from edgent.model.spec import CARD_FILE, SPEC_FILE, WEIGHTS_FILE, ModelSpec, write_model_folder
from edgent.model.weights import save_weights
from edgent.train.checkpoint import load_checkpoint, save_checkpoint

MODES = ("exits-only", "joint")


@dataclass
class ChainTrainConfig:
    """Everything that determines a training run of a chain (recorded in the model card)."""

    model: str
    data: str | None = None
    mode: str = "exits-only"
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    exit_loss_weights: tuple[float, ...] | None = None
    seed: int = 0
    threads: int = 2
    limit_train: int | None = None
    test_share: float = 0.2
    out_dir: str = ""
    command: str = field(default_factory=lambda: command_line())

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (3e-3 if self.mode == "exits-only" else 0.05)


def command_line() -> str:
    """The command that is running, as a user would type it (``edgent train ...`` when run as the CLI)."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("main.py", "edgent", "__main__.py"):
        argv = ["edgent", *argv[1:]]
    return " ".join(shlex.quote(a) for a in argv)


def _check(cfg: ChainTrainConfig, chain: MultiExitChain) -> None:
    if cfg.mode not in MODES:
        raise ConfigError(f"--mode {cfg.mode!r}: use {' or '.join(MODES)}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be at least 1")
    if cfg.mode == "exits-only" and chain.num_exits < 2:
        raise ConfigError(f"{chain.name} has no branch exits to train; convert it with --exits, or train --joint")
    if cfg.exit_loss_weights is not None and len(cfg.exit_loss_weights) != chain.num_exits:
        raise ConfigError(f"{chain.name} has {chain.num_exits} exits: give {chain.num_exits} exit loss weights")


def check_data_fits(chain: MultiExitChain, data: LabelledImages, what: str, classes: tuple[str, ...] | None = None
                    ) -> None:
    """The data's classes against the model's outputs (and the classes it was trained on, when known)."""
    if len(data.classes) != chain.num_classes:
        raise ConfigError(f"{what} has {len(data.classes)} classes ({', '.join(data.classes[:6])}"
                          f"{', ...' if len(data.classes) > 6 else ''}) but {chain.name} has {chain.num_classes} "
                          f"outputs; convert the model with --num-classes {len(data.classes)}, or give --data with "
                          f"{chain.num_classes} class folders")
    if classes is not None and tuple(classes) != tuple(data.classes):
        raise ConfigError(f"{what} has the classes {list(data.classes)[:6]}, the model was trained on "
                          f"{list(classes)[:6]} (in that order); give --data with the same class folders")


def model_input(images: np.ndarray | torch.Tensor, preprocess: str) -> torch.Tensor:
    """uint8 images -> the model's float input by its preprocessing."""
    return get_preprocess(preprocess)(torch.as_tensor(images))


@torch.no_grad()
def evaluate_chain(chain: MultiExitChain, data: LabelledImages, preprocess: str, batch_size: int = 200
                   ) -> list[float]:
    """Top-1 accuracy of each exit (exit 1 first) on ``data``, in one pass that shares the trunk."""
    if tuple(data.images.shape[1:]) != tuple(chain.input_shape):
        raise ConfigError(f"images of shape {tuple(data.images.shape[1:])} do not fit {chain.name}'s input "
                          f"{tuple(chain.input_shape)}")
    was_training = chain.training
    chain.eval()
    correct = np.zeros(chain.num_exits, dtype=np.int64)
    try:
        for start in range(0, len(data), batch_size):
            x = model_input(data.images[start: start + batch_size], preprocess)
            y = torch.as_tensor(data.labels[start: start + batch_size])
            for i, logits in enumerate(chain.forward_all(x)):
                correct[i] += int((logits.argmax(1) == y).sum())
    finally:
        chain.train(was_training)
    return [float(c) / max(len(data), 1) for c in correct]


def _trainable(chain: MultiExitChain, mode: str) -> list[torch.nn.Parameter]:
    if mode == "joint":
        return [p for p in chain.parameters()]
    for p in chain.trunk.parameters():
        p.requires_grad_(False)
    branch_params = [p for b in chain.branches for p in b.parameters()]
    for p in branch_params:
        p.requires_grad_(True)
    return branch_params


def _set_train_mode(chain: MultiExitChain, mode: str) -> None:
    chain.train()
    if mode == "exits-only":  # a frozen trunk keeps its batch-norm statistics and its dropout off
        chain.trunk.eval()


def train_chain(cfg: ChainTrainConfig, spec: ModelSpec, chain: MultiExitChain, resume: bool = False,
                console: Any = None, stop_after_epoch: int | None = None) -> dict[str, Any] | None:
    """Train ``chain`` (built from ``spec``, with its starting weights loaded) as ``cfg`` says; write
    ``weights.safetensors``, ``card.json`` and ``model.json`` into ``cfg.out_dir``; return the card. With
    ``stop_after_epoch`` it stops after that epoch's checkpoint and returns None (``resume=True`` continues)."""
    _check(cfg, chain)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"
    prep = spec.preprocess_name
    train_data = load_labelled(cfg.data, "train", chain.input_shape, cfg.test_share, cfg.seed)
    test_data = load_labelled(cfg.data, "test", chain.input_shape, cfg.test_share, cfg.seed)
    check_data_fits(chain, train_data, f"--data {cfg.data or 'cifar10'}")
    images = torch.from_numpy(train_data.images)
    labels = torch.from_numpy(train_data.labels)
    if cfg.limit_train:
        subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.limit_train]
        images, labels = images[subset], labels[subset]
    steps_per_epoch = (len(labels) + cfg.batch_size - 1) // cfg.batch_size
    torch.manual_seed(cfg.seed)
    params = _trainable(chain, cfg.mode)
    lr = cfg.learning_rate()
    if cfg.mode == "joint":
        opt: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True,
                                                     weight_decay=cfg.weight_decay)
        sched: Any = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, epochs=cfg.epochs,
                                                         steps_per_epoch=steps_per_epoch, pct_start=0.25)
    else:
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch)
    weights = torch.tensor(cfg.exit_loss_weights or [1.0] * chain.num_exits)
    start_epoch, history = 0, []
    if resume and ckpt_path.exists():
        start_epoch, history = load_checkpoint(ckpt_path, chain, opt, sched, _config_key(cfg))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t_start = time.time()
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"train {cfg.mode}", total=cfg.epochs * steps_per_epoch,
                                     completed=start_epoch * steps_per_epoch, status="")
            for epoch in range(start_epoch, cfg.epochs):
                gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
                order = torch.randperm(len(labels), generator=gen)
                _set_train_mode(chain, cfg.mode)
                run_loss, seen = 0.0, 0
                for step in range(steps_per_epoch):
                    idx = order[step * cfg.batch_size: (step + 1) * cfg.batch_size]
                    x = model_input(augment_batch(images[idx], gen), prep)
                    y = labels[idx]
                    outs = chain.forward_all(x)
                    loss = sum(w * loss_fn(o, y) for w, o in zip(weights, outs))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    run_loss += float(loss.detach()) * len(idx)
                    seen += len(idx)
                    progress.update(task, advance=1,
                                    status=f"epoch {epoch + 1}/{cfg.epochs} loss {run_loss / seen:.3f}")
                acc = evaluate_chain(chain, test_data, prep)
                history.append({"epoch": epoch + 1, "train_loss": run_loss / seen, "test_top1": acc,
                                "elapsed_s": round(time.time() - t_start, 1)})
                progress.console.print(f"epoch {epoch + 1}: loss {run_loss / seen:.4f}, test top-1 per exit "
                                       f"{[round(a, 4) for a in acc]}")
                save_checkpoint(ckpt_path, chain, opt, sched, epoch + 1, _config_key(cfg), history)
                if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                    return None
    finally:
        chain.eval()
        for p in chain.parameters():
            p.requires_grad_(True)
    top1 = evaluate_chain(chain, test_data, prep)
    card = build_card(chain, top1, {
        "weights": WEIGHTS_FILE,
        "classes": list(train_data.classes),
        "input_shape": list(chain.input_shape),
        "training": {**asdict(cfg), "lr": lr,
                     "exit_loss_weights": [float(w) for w in weights],
                     "optimizer": ("SGD, Nesterov momentum 0.9, one-cycle LR (pct_start 0.25)" if cfg.mode == "joint"
                                   else "AdamW, cosine LR; trunk frozen (parameters and batch-norm statistics)"),
                     "augmentation": "random crop of the image padded by 1/8 of its size, horizontal flip",
                     "train_images": int(len(labels)), "history": history,
                     "machine": {"platform": platform.platform(), "torch": torch.__version__,
                                 "threads": cfg.threads}},
        "input_preprocessing": dict(spec.preprocess),
        "dataset": {"name": str(cfg.data or "cifar10"), "train": train_data.source, "test": test_data.source,
                    "test_images": len(test_data), "classes": list(train_data.classes)},
        "reproduce": cfg.command,
    })
    save_weights(chain, out / WEIGHTS_FILE, metadata={"model": chain.name})
    write_card(card, out / CARD_FILE)
    if not (out / SPEC_FILE).is_file() or spec.folder is None or spec.folder.resolve() != out.resolve():
        write_model_folder(replace(spec, weights=out / WEIGHTS_FILE, card=out / CARD_FILE, folder=out), out)
    return card


def _config_key(cfg: ChainTrainConfig) -> str:
    d = asdict(cfg)
    for k in ("command", "out_dir"):
        d.pop(k)
    return json.dumps(d, sort_keys=True)
