"""Training a learned bottleneck (``edgent.model.bottleneck``) at a cut of a trained model, trunk frozen.

Distillation from the model's own outputs (the split-computing recipe, e.g. BottleFit, Matsubara et al. 2022):
the teacher is the unmodified model, the student is the same frozen model with the encoder and decoder inserted
at the cut; the loss is, summed over every exit, the KL divergence from the teacher's softened output to the
student's, plus a small mean-squared error between the decoded tensor and the teacher's tensor at the cut
(normalised by its mean square) that helps the first steps. Only the encoder and decoder learn (Adam, cosine
learning rate). The rounding to integer symbols is trained straight-through.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from edgent.data.cifar10 import augment, load_split, to_model_input
from edgent.errors import ConfigError
from edgent.model.bottleneck import Bottleneck, BottleneckSpec, forward_all_from, save_bottleneck


@dataclass
class BottleneckTrainConfig:
    """Everything that determines a bottleneck training run (recorded in the model card)."""

    model: str = "alexnet-cifar10"
    after_unit: str = "pool1"
    channels: int = 16
    levels: int = 8
    hidden: int = 64
    stride: int = 2
    epochs: int = 2
    #: epochs of a first phase that trains on the reconstruction of the cut's tensor alone (no trunk
    #: forward or backward past the cut: several times cheaper per image than distillation)
    feature_epochs: int = 0
    batch_size: int = 128
    lr: float = 2e-3
    temperature: float = 2.0
    feature_loss_weight: float = 0.1
    seed: int = 0
    threads: int = 2
    limit_train: int | None = None
    data: str | None = None
    weights: str | None = None
    out: str = "runs/bottleneck/alexnet-cifar10.bottleneck.safetensors"
    command: str = field(default_factory=lambda: " ".join(shlex.quote(a) for a in sys.argv))


def cut_point(chain, after_unit: str | int) -> int:
    """The partition point just after trunk unit ``after_unit`` (a name or a 0-based index)."""
    names = list(chain.trunk_names)
    if isinstance(after_unit, int) or str(after_unit).isdigit():
        i = int(after_unit)
        if not 0 <= i < len(names):
            raise ConfigError(f"trunk unit index {after_unit} is out of range 0..{len(names) - 1}")
    elif after_unit in names:
        i = names.index(after_unit)
    else:
        raise ConfigError(f"{chain.name} has no trunk unit {after_unit!r}; its trunk units: {', '.join(names)}")
    point = i + 1
    first_branch = min(ep.after_trunk_units for ep in chain.exit_points)
    if point > first_branch:
        raise ConfigError(f"a bottleneck after {names[i]!r} (point {point}) lies after the first exit's branch "
                          f"(point {first_branch}); pick a unit at or before {names[first_branch - 1]!r}")
    return point


def train_bottleneck(cfg: BottleneckTrainConfig, log=print) -> Path:
    """Train the bottleneck of ``cfg`` and save it to ``cfg.out``; returns the path."""
    from edgent.model.zoo import load_model

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    chain = load_model(cfg.model, weights=cfg.weights).eval()
    for p in chain.parameters():
        p.requires_grad_(False)
    point = cut_point(chain, cfg.after_unit)
    in_shape = tuple(int(d) for d in chain.unit_input_shape(None, point))
    spec = BottleneckSpec(model=cfg.model, point=point, after_unit=chain.trunk_names[point - 1],
                          in_shape=in_shape, channels=cfg.channels, levels=cfg.levels, hidden=cfg.hidden,
                          stride=cfg.stride)
    neck = Bottleneck(spec)
    split = load_split("train", cfg.data)
    images = torch.from_numpy(split.images)
    if cfg.limit_train:  # a seeded random subset (the split is stored sorted by class)
        keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(cfg.seed))[: cfg.limit_train]
        images = images[keep]
    n = len(images)
    per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    steps = (cfg.feature_epochs + cfg.epochs) * per_epoch
    opt = torch.optim.Adam(neck.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1)
    T = cfg.temperature
    step, t0 = 0, time.time()
    for epoch in range(cfg.feature_epochs + cfg.epochs):
        distil = epoch >= cfg.feature_epochs
        gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(n, generator=gen)
        neck.train()
        for start in range(0, n, cfg.batch_size):
            x = to_model_input(augment(images[order[start:start + cfg.batch_size]], gen))
            with torch.no_grad():
                h = chain.run_device(x, None, point)
                if distil:
                    teacher = [F.log_softmax(o / T, dim=1) for o in forward_all_from(chain, h, point)]
            rec = neck(h)
            feat = F.mse_loss(rec, h) / h.pow(2).mean().clamp_min(1e-8)
            if distil:
                student = forward_all_from(chain, rec, point)
                kd = sum(F.kl_div(F.log_softmax(s / T, dim=1), t, log_target=True, reduction="batchmean")
                         for s, t in zip(student, teacher)) * T * T
            else:
                kd = torch.zeros(())
            loss = kd + (cfg.feature_loss_weight if distil else 1.0) * feat
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 50 == 0 or step == steps:
                log(f"epoch {epoch + 1}/{cfg.feature_epochs + cfg.epochs} step {step}/{steps} loss {loss.item():.4f} "
                    f"(kd {kd.item():.4f}, feature {feat.item():.4f}) {time.time() - t0:.0f} s")
    neck.eval()
    out = save_bottleneck(neck, cfg.out)
    log(f"wrote {out} ({asdict(spec)})")
    return out
