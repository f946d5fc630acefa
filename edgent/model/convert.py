"""From an architecture reference to a model folder: trace, cut, attach exits, write ``model.json`` and weights.

Exits come from a spec (:func:`parse_exits`) or automatically (:func:`auto_exits`): every unit boundary of a
converted chain is already a place where exactly one tensor is live (:mod:`edgent.model.fx_chain`), so the
automatic exits are the boundaries after a feature map (C, H, W) nearest to equal shares of the trunk's FLOPs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain, NamedUnit
from edgent.model.spec import (CARD_FILE, WEIGHTS_FILE, ModelSpec, call_builder, check_name, resolve_arch,
                               write_model_folder)
from edgent.model.weights import load_weights, save_weights

DEFAULT_AUTO_EXITS = 3


@dataclass(frozen=True)
class ConvertOptions:
    """What ``edgent convert`` takes (see :func:`convert`)."""

    arch: str
    num_classes: int
    out: Path
    input_shape: tuple[int, ...] = (3, 224, 224)
    exits: str | None = None
    name: str | None = None
    head: str = "linear"
    preprocess: str = "imagenet"
    init_weights: Path | None = None
    arch_kwargs: dict[str, Any] | None = None


def parse_input_shape(text: str) -> tuple[int, ...]:
    """``--input-size 3,64,64`` (or ``3x64x64``) as a shape; a single number N means 3,N,N."""
    try:
        dims = tuple(int(v) for v in str(text).replace("x", ",").split(",") if v.strip())
    except ValueError:
        dims = ()
    if len(dims) == 1:
        dims = (3, dims[0], dims[0])
    if not dims or min(dims) < 1:
        raise ModelError(f"--input-size {text!r} must be C,H,W of positive integers, e.g. 3,64,64")
    return dims


def parse_exits(text: str | None, head: str = "linear") -> list[dict[str, Any]] | int:
    """``--exits``: ``auto`` or ``auto:N`` (an int, the number of automatic exits), ``none`` (no branch
    exits), a comma list of unit names or module paths (``layer1,layer2:conv``, optional ``:head``), or JSON
    (a list of ``{"after": ..., "head": ...}``, inline or in a file)."""
    if text is None or text.strip() in ("", "auto"):
        return DEFAULT_AUTO_EXITS
    t = text.strip()
    if t.startswith("auto:"):
        try:
            n = int(t[5:])
        except ValueError:
            n = -1
        if n < 0:
            raise ModelError(f"--exits {text!r}: auto:N needs a count N >= 0, e.g. auto:3")
        return n
    if t == "none":
        return []
    if t.startswith("[") or Path(t).suffix == ".json":
        try:
            doc = json.loads(Path(t).read_text() if not t.startswith("[") else t)
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"--exits {text!r} is not a JSON list of {{'after': UNIT, 'head': ...}} ({exc})") \
                from exc
        if not isinstance(doc, list) or not all(isinstance(e, dict) and "after" in e for e in doc):
            raise ModelError(f"--exits {text!r}: the JSON must be a list of {{'after': UNIT, 'head': 'linear'|'conv'}}")
        return doc
    out: list[dict[str, Any]] = []
    for part in t.split(","):
        part = part.strip()
        if not part:
            continue
        after, _, h = part.partition(":")
        after_v: Any = int(after) if after.isdigit() else after
        out.append({"after": after_v, "head": h or head})
    return out


def unit_flops(units: Sequence[NamedUnit], input_shape: Sequence[int]) -> tuple[list[int], list[tuple[int, ...]]]:
    """FLOPs of each unit at batch 1 and the shape of its output."""
    flops, shapes = [], []
    h = torch.zeros((1, *input_shape))
    with torch.no_grad():
        for _, unit in units:
            with FlopCounterMode(display=False) as counter:
                h = unit(h)
            flops.append(int(counter.get_total_flops()))
            shapes.append(tuple(h.shape[1:]))
    return flops, shapes


def auto_exits(units: Sequence[NamedUnit], input_shape: Sequence[int], count: int = DEFAULT_AUTO_EXITS,
               head: str = "linear") -> list[dict[str, Any]]:
    """Up to ``count`` exits after the trunk units whose cumulative FLOPs are nearest to ``j / (count + 1)`` of
    the trunk's (j = 1..count), among the units that output a feature map (C, H, W), distinct, before the last
    unit. Each exit is ``{"after": unit count, "head": head}``."""
    flops, shapes = unit_flops(units, input_shape)
    total = max(sum(flops), 1)
    cum, acc = [], 0
    for f in flops:
        acc += f
        cum.append(acc / total)
    candidates = [k for k in range(1, len(units)) if len(shapes[k - 1]) == 3]
    chosen: list[int] = []
    for j in range(1, count + 1):
        target = j / (count + 1)
        free = [k for k in candidates if k not in chosen]
        if not free:
            break
        chosen.append(min(free, key=lambda k: (abs(cum[k - 1] - target), k)))
    return [{"after": k, "head": head} for k in sorted(chosen)]


def build_module(arch: str, num_classes: int, arch_kwargs: dict[str, Any] | None = None,
                 folder: Path | None = None) -> nn.Module:
    """The model an architecture reference builds (not yet a chain)."""
    return call_builder(resolve_arch(arch, folder), arch, num_classes, arch_kwargs or {})


def convert(opts: ConvertOptions) -> tuple[ModelSpec, MultiExitChain]:
    """Build ``opts.arch``, cut it into a chain with exits, and write the model folder ``opts.out``
    (``model.json`` and ``weights.safetensors``: the given or initial weights). Returns the spec and chain."""
    from edgent.model.fx_chain import chain_from_model, chain_units
    from edgent.model.preprocess import get_preprocess

    if opts.num_classes < 1:
        raise ModelError(f"--num-classes must be at least 1, got {opts.num_classes}")
    get_preprocess(opts.preprocess)  # a known name, or a clear error listing them
    name = check_name(opts.name or _default_name(opts.arch, opts.input_shape))
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()) and not (out / "model.json").is_file():
        raise ModelError(f"--out {out} exists and is not a model folder; choose an empty or new folder")
    arch_kwargs = dict(opts.arch_kwargs or {})
    module = build_module(opts.arch, opts.num_classes, arch_kwargs, None)
    if isinstance(module, MultiExitChain):
        raise ModelError(f"{opts.arch} already builds a multi-exit chain; write its model.json by hand (see "
                         "docs/own-model.md) instead of converting it")
    if opts.init_weights is not None:
        _load_module_weights(module, Path(opts.init_weights))
    module.eval()
    exits_arg = parse_exits(opts.exits, opts.head)
    try:
        units = chain_units(module, opts.input_shape)
    except ModelError as exc:
        raise ModelError(f"--arch {opts.arch}: {exc}") from exc
    exits = auto_exits(units, opts.input_shape, exits_arg, opts.head) if isinstance(exits_arg, int) else exits_arg
    try:
        chain = chain_from_model(module, opts.input_shape, name, opts.num_classes, exits)
    except ModelError as exc:
        raise ModelError(f"--exits: {exc}") from exc
    arch = opts.arch
    where, _, fn_name = arch.rpartition(":")
    if where.endswith(".py"):  # the folder carries its architecture's code
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        if Path(where).resolve() != (out / Path(where).name).resolve():
            shutil.copyfile(where, out / Path(where).name)
        arch = f"{Path(where).name}:{fn_name}"
    spec = ModelSpec(name=name, arch=arch, num_classes=opts.num_classes, input_shape=tuple(opts.input_shape),
                     exits=tuple(_named_exits(chain, exits)), arch_kwargs=arch_kwargs,
                     preprocess={"name": opts.preprocess}, weights=out / WEIGHTS_FILE, card=out / CARD_FILE,
                     description=f"{opts.arch} converted by `edgent convert` for {opts.num_classes} classes, input "
                                 f"{'x'.join(map(str, opts.input_shape))}", folder=out)
    write_model_folder(spec, out)
    save_weights(chain, out / WEIGHTS_FILE, metadata={"model": name})
    # what was written reads back as the same chain (names, exits and weights)
    load_weights(spec.build(), out / WEIGHTS_FILE)
    return spec, chain


def _named_exits(chain: MultiExitChain, exits: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The exits as stored: ``after`` as a trunk unit count (exact, whatever the unit names), plus the name of
    the unit the branch follows, for the reader."""
    out = []
    branch_eps = chain.exit_points[:-1]
    for ep, spec in zip(branch_eps, sorted(exits, key=lambda e: _after_index(chain, e))):
        head = spec.get("head", "linear")
        out.append({"after": ep.after_trunk_units, "after_unit": chain.trunk_names[ep.after_trunk_units - 1],
                    "head": head if isinstance(head, str) else "linear"})
    return out


def _after_index(chain: MultiExitChain, spec: dict[str, Any]) -> int:
    after = spec.get("after")
    if isinstance(after, int):
        return after
    matches = [i for i, n in enumerate(chain.trunk_names) if n == after or n.startswith(f"{after}.")]
    return matches[-1] + 1 if matches else 0


def _load_module_weights(module: nn.Module, path: Path) -> None:
    if path.suffix != ".safetensors":
        raise ModelError(f"--init-weights {path}: give the model's state dict as a .safetensors file "
                         "(safetensors.torch.save_file(model.state_dict(), F)); pickled .pt files are not loaded")
    try:
        load_weights(module, path)
    except ModelError as exc:
        raise ModelError(f"--init-weights: {exc}") from exc


def _default_name(arch: str, input_shape: Sequence[int]) -> str:
    base = arch.rsplit(":", 1)[-1].replace("_", "-")
    return f"{base}-{input_shape[-1]}"
