"""BranchyNet-style joint training of a multi-exit model on CIFAR-10.

The loss is the weighted sum of every exit's cross-entropy (Teerapittayanon et al., BranchyNet, 2016). The recipe
(SGD with Nesterov momentum, a one-cycle learning rate, label smoothing, weight decay, random crop and flip) is the
usual one for CIFAR-10. Each epoch ends with a checkpoint; ``resume`` picks up from the last one bit-for-bit in
the data order and learning rate.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgent.data.cifar10 import DATASET_NOTE, MEAN, STD, augment, load_split, to_model_input
from edgent.errors import ConfigError
from edgent.model.alexnet import build_alexnet_cifar10, fold_batch_norms
from edgent.model.card import build_card, write_card
from edgent.model.weights import save_weights
from edgent.train.checkpoint import load_checkpoint, save_checkpoint
from edgent.train.evaluate import evaluate_exits


@dataclass
class TrainConfig:
    """Everything that determines a training run (recorded in the model card)."""

    model: str = "alexnet-cifar10"
    epochs: int = 16
    batch_size: int = 128
    lr_max: float = 0.08
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    exit_loss_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    seed: int = 0
    threads: int = 2
    limit_train: int | None = None
    #: Cut the one-cycle schedule after this epoch and anneal the learning rate linearly to zero over
    #: ``anneal_epochs`` more epochs (a shorter run that keeps the first epochs identical to the full one).
    cut_at_epoch: int | None = None
    anneal_epochs: int = 0
    data: str | None = None
    out_dir: str = "runs/alexnet-cifar10"
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


def _check(cfg: TrainConfig) -> None:
    if cfg.model != "alexnet-cifar10":
        raise ConfigError(f"training is implemented for 'alexnet-cifar10', not {cfg.model!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ConfigError("--epochs and --batch-size must be at least 1")
    if len(cfg.exit_loss_weights) != 5:
        raise ConfigError("alexnet-cifar10 has 5 exits: give 5 exit loss weights")
    if cfg.cut_at_epoch is not None and not (1 <= cfg.cut_at_epoch <= cfg.epochs and cfg.anneal_epochs >= 1):
        raise ConfigError("--cut-at-epoch must lie in 1..--epochs and needs --anneal-epochs >= 1")


def train(cfg: TrainConfig, resume: bool = False, console=None, stop_after_epoch: int | None = None) -> dict | None:
    """Train, checkpoint every epoch, then fold batch norms, evaluate every exit and write weights and card.

    Returns the model card (also written to ``<out_dir>/<model>.card.json`` next to
    ``<out_dir>/<model>.safetensors``). With ``stop_after_epoch`` it stops after that epoch's checkpoint and
    returns ``None``, as an interrupted run would (``resume=True`` continues it).
    """
    _check(cfg)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_path = out / "checkpoint.pt"

    train_split = load_split("train", cfg.data)
    test_split = load_split("test", cfg.data)
    images = torch.from_numpy(train_split.images)
    labels = torch.from_numpy(train_split.labels)
    if cfg.limit_train:
        subset = torch.randperm(len(labels), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.limit_train]
        images, labels = images[subset], labels[subset]
    steps_per_epoch = (len(labels) + cfg.batch_size - 1) // cfg.batch_size

    torch.manual_seed(cfg.seed)
    model = build_alexnet_cifar10(train_bn=True).to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.dim() == 1 else decay).append(p)
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr_max, momentum=cfg.momentum, nesterov=True,
    )
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.lr_max, epochs=cfg.epochs, steps_per_epoch=steps_per_epoch, pct_start=0.25
    )
    start_epoch = 0
    history: list[dict] = []
    if resume and ckpt_path.exists():
        start_epoch, history = load_checkpoint(ckpt_path, model, opt, sched, _config_key(cfg))
    weights = torch.tensor(cfg.exit_loss_weights)
    last_epoch = cfg.epochs if cfg.cut_at_epoch is None else cfg.cut_at_epoch + cfg.anneal_epochs
    anneal_from_lr: list[float] | None = None
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    t_start = time.time()

    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=last_epoch * steps_per_epoch,
                                 completed=start_epoch * steps_per_epoch, status="")
        for epoch in range(start_epoch, last_epoch):
            annealing = cfg.cut_at_epoch is not None and epoch >= cfg.cut_at_epoch
            if annealing and anneal_from_lr is None:
                # the learning rate the one-cycle schedule had reached at the cut (restored with the optimizer)
                anneal_from_lr = [g.get("anneal_from_lr", g["lr"]) for g in opt.param_groups]
                for g, lr in zip(opt.param_groups, anneal_from_lr):
                    g["anneal_from_lr"] = lr
            gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
            order = torch.randperm(len(labels), generator=gen)
            model.train()
            run_loss, seen = 0.0, 0
            for step in range(steps_per_epoch):
                idx = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                x = to_model_input(augment(images[idx], gen)).contiguous(memory_format=torch.channels_last)
                y = labels[idx]
                outs = model.forward_all(x)
                loss = sum(w * loss_fn(o, y) for w, o in zip(weights, outs))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if annealing:
                    done_steps = (epoch - cfg.cut_at_epoch) * steps_per_epoch + step + 1
                    frac = max(0.0, 1.0 - done_steps / (cfg.anneal_epochs * steps_per_epoch))
                    for g, lr in zip(opt.param_groups, anneal_from_lr):
                        g["lr"] = lr * frac
                else:
                    sched.step()
                run_loss += float(loss.detach()) * len(idx)
                seen += len(idx)
                progress.update(task, advance=1,
                                status=f"epoch {epoch + 1}/{last_epoch} loss {run_loss / seen:.3f}")
            acc = evaluate_exits(model, test_split) if (epoch + 1) % 4 == 0 or epoch + 1 == last_epoch else None
            history.append({"epoch": epoch + 1, "train_loss": run_loss / seen, "test_top1": acc,
                            "elapsed_s": time.time() - t_start})
            progress.console.print(f"epoch {epoch + 1}: loss {run_loss / seen:.4f}"
                                   + (f", test top-1 per exit {[round(a, 4) for a in acc]}" if acc else ""))
            save_checkpoint(ckpt_path, model, opt, sched, epoch + 1, _config_key(cfg), history)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
                return None

    infer = fold_batch_norms(model.to(memory_format=torch.contiguous_format))
    top1 = evaluate_exits(infer, test_split)
    train_seconds = sum(h.get("elapsed_s", 0) for h in history[-1:])
    card = build_card(infer, top1, {
        "weights": f"{cfg.model}.safetensors",
        "training": {**asdict(cfg), "exit_loss_weights": list(cfg.exit_loss_weights),
                     "optimizer": "SGD, Nesterov momentum, one-cycle LR (pct_start 0.25)",
                     "augmentation": "random 32x32 crop of the 4-pixel zero-padded image, horizontal flip",
                     "batch_norm": "after every convolution while training; folded into the convolution for "
                                   "inference (the weights file holds plain convolutions)",
                     "history": history, "seconds_last_session": train_seconds,
                     "machine": {"platform": platform.platform(), "processor": platform.processor(),
                                 "torch": torch.__version__, "threads": cfg.threads}},
        "input_preprocessing": {"pixels": "uint8 RGB, divided by 255", "mean": list(MEAN), "std": list(STD)},
        "dataset": {"name": "CIFAR-10", "test_images": len(test_split), "source": test_split.source,
                    "note": DATASET_NOTE},
        "reproduce": cfg.command,
    })
    save_weights(infer, out / f"{cfg.model}.safetensors", metadata={"model": cfg.model})
    write_card(card, out / f"{cfg.model}.card.json")
    return card


def _config_key(cfg: TrainConfig) -> str:
    d = asdict(cfg)
    # what the cut and anneal change comes after the cut: checkpoints before it are shared with the full run
    for k in ("command", "out_dir", "cut_at_epoch", "anneal_epochs"):
        d.pop(k)
    return json.dumps(d, sort_keys=True)
