"""What each unit of a multi-exit chain is: its layers, shapes, output size, parameters and FLOPs.

This is the static description of a model that every later stage reads: the profiler and the latency models use
the per-layer records (:class:`LayerInfo`), the planner the output sizes (what crosses the link at each partition
point), ``edgent info`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.utils.flop_counter import FlopCounterMode

from edgent.model.chain import MultiExitChain

FLOAT32_BYTES = 4

#: Layer kinds, the latency models' layer types. Each maps from module classes or functions below.
_MODULE_KINDS: list[tuple[type[nn.Module], str]] = [
    (nn.Conv2d, "conv"),
    (nn.Linear, "fc"),
    (nn.BatchNorm2d, "bn"),
    (nn.BatchNorm1d, "bn"),
    (nn.LocalResponseNorm, "lrn"),
    (nn.MaxPool2d, "maxpool"),
    (nn.AvgPool2d, "avgpool"),
    (nn.AdaptiveAvgPool2d, "avgpool"),
    (nn.AdaptiveMaxPool2d, "maxpool"),
    (nn.Dropout, "dropout"),
    (nn.ReLU, "relu"),
    (nn.ReLU6, "relu"),
    (nn.LeakyReLU, "relu"),
    (nn.Hardtanh, "relu"),
    (nn.SiLU, "act"),
    (nn.GELU, "act"),
    (nn.Hardswish, "act"),
    (nn.Hardsigmoid, "act"),
    (nn.Sigmoid, "act"),
    (nn.Tanh, "act"),
    (nn.Flatten, "flatten"),
    (nn.Identity, "identity"),
]
_FUNCTION_KINDS: dict[Any, str] = {
    torch.add: "add",
    torch.flatten: "flatten",
    torch.relu: "relu",
    torch.nn.functional.relu: "relu",
    torch.nn.functional.adaptive_avg_pool2d: "avgpool",
    torch.cat: "cat",
    torch.mul: "mul",
}
_METHOD_KINDS = {"view": "flatten", "reshape": "flatten", "flatten": "flatten", "add": "add", "relu": "relu",
                 "mean": "avgpool", "size": "shape", "contiguous": "identity"}
_OPERATOR_KINDS = {"add": "add", "iadd": "add", "mul": "mul", "getitem": "shape"}


@dataclass(frozen=True)
class LayerInfo:
    """One layer inside a unit, with the attributes the latency models regress on."""

    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int = 0
    flops: int = 0
    in_channels: int = 0
    out_channels: int = 0
    kernel: int = 0
    stride: int = 1
    groups: int = 1
    detail: str = ""

    @property
    def input_size(self) -> int:
        """Elements in the input of one sample."""
        return _numel(self.input_shape)

    @property
    def output_size(self) -> int:
        """Elements in the output of one sample."""
        return _numel(self.output_shape)


@dataclass(frozen=True)
class UnitInfo:
    """One unit of a chain: the thing a partition point falls between."""

    index: int
    name: str
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    output_bytes: int
    params: int
    flops: int
    layers: tuple[LayerInfo, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = [asdict(layer) for layer in self.layers]
        return d


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _pair_first(v: Any) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def module_kind(module: nn.Module) -> str | None:
    """The layer kind of a leaf module, or ``None`` if edgent does not know it."""
    for cls, kind in _MODULE_KINDS:
        if isinstance(module, cls):
            return kind
    return None


def _layer_from_module(module: nn.Module, inp: tuple[int, ...], out: tuple[int, ...], flops: int) -> LayerInfo:
    kind = module_kind(module) or f"unknown:{type(module).__name__}"
    params = sum(p.numel() for p in module.parameters())
    if isinstance(module, nn.Conv2d):
        return LayerInfo(kind, inp, out, params, flops, module.in_channels, module.out_channels,
                         _pair_first(module.kernel_size), _pair_first(module.stride), module.groups)
    if isinstance(module, nn.Linear):
        return LayerInfo(kind, inp, out, params, flops, module.in_features, module.out_features)
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        return LayerInfo(kind, inp, out, params, flops, kernel=_pair_first(module.kernel_size),
                         stride=_pair_first(module.stride or module.kernel_size))
    if isinstance(module, nn.LocalResponseNorm):
        return LayerInfo(kind, inp, out, params, flops, kernel=module.size)
    return LayerInfo(kind, inp, out, params, flops)


def _count_flops(fn, *args) -> int:
    with FlopCounterMode(display=False) as counter:
        fn(*args)
    return int(counter.get_total_flops())


def _shape(t: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape[1:]) if isinstance(t, torch.Tensor) else ()


def describe_layers(unit: nn.Module, x: torch.Tensor) -> list[LayerInfo]:
    """The layers of one unit, found by running it on ``x`` (a batch of one) with hooks on its leaf modules
    and, for traced graphs, on its function calls (element-wise adds, flattens)."""
    if module_kind(unit) is not None or not list(unit.children()) and not isinstance(unit, fx.GraphModule):
        with torch.no_grad():
            flops = _count_flops(unit, x)
            y = unit(x)
        return [_layer_from_module(unit, _shape(x), _shape(y), flops)]
    if isinstance(unit, fx.GraphModule):
        return _describe_graph(unit, x)
    layers: list[LayerInfo] = []
    hooks = []

    def hook(mod, args, out):
        inp = args[0] if args else None
        layers.append(_layer_from_module(mod, _shape(inp), _shape(out), _count_flops(mod.forward, inp)))

    for m in unit.modules():
        if m is not unit and module_kind(m) is not None and not list(m.children()):
            hooks.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            unit(x)
    finally:
        for h in hooks:
            h.remove()
    return layers


def _describe_graph(gm: fx.GraphModule, x: torch.Tensor) -> list[LayerInfo]:
    layers: list[LayerInfo] = []
    with torch.no_grad():
        _RecordingInterpreter(gm, layers).run(x)
    return layers


class _RecordingInterpreter(fx.Interpreter):
    """Runs a traced unit node by node and records a :class:`LayerInfo` for every op that computes."""

    def __init__(self, gm: fx.GraphModule, layers: list[LayerInfo]) -> None:
        super().__init__(gm)
        self.layers = layers

    def call_module(self, target, args, kwargs):
        mod = self.fetch_attr(target)
        out = super().call_module(target, args, kwargs)
        inp = args[0] if args else None
        if isinstance(inp, torch.Tensor):
            self.layers.append(_layer_from_module(mod, _shape(inp), _shape(out), _count_flops(mod, inp)))
        return out

    def call_function(self, target, args, kwargs):
        out = super().call_function(target, args, kwargs)
        self._record(_FUNCTION_KINDS.get(target) or _OPERATOR_KINDS.get(getattr(target, "__name__", "")),
                     target, args, out)
        return out

    def call_method(self, target, args, kwargs):
        out = super().call_method(target, args, kwargs)
        self._record(_METHOD_KINDS.get(target), target, args, out)
        return out

    def _record(self, kind, target, args, out) -> None:
        if kind == "shape" or not isinstance(out, torch.Tensor):
            return
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        inp = tensors[0] if tensors else None
        self.layers.append(LayerInfo(kind or f"unknown:{getattr(target, '__name__', target)}",
                                     _shape(inp), _shape(out), detail=f"inputs={len(tensors)}"))


def _unit_kind(layers: list[LayerInfo]) -> str:
    if len(layers) == 1:
        return layers[0].kind
    heavy = [l for l in layers if l.kind in ("conv", "fc")]
    if not heavy:
        return layers[0].kind if layers else "identity"
    return "block" if len(heavy) > 1 or any(l.kind == "add" for l in layers) else heavy[0].kind


def describe_chain(chain: MultiExitChain, exit: int | None = None) -> list[UnitInfo]:
    """Describe every unit of the sub-model to ``exit`` (default: the main exit) at batch size 1."""
    ep = chain.exit_point(exit)
    was_training = chain.training
    chain.eval()
    infos: list[UnitInfo] = []
    try:
        h = torch.zeros((1, *chain.input_shape))
        for i, (name, unit) in enumerate(zip(chain.unit_names(ep.exit), chain.units(ep.exit))):
            layers = describe_layers(unit, h)
            with torch.no_grad():
                flops = _count_flops(unit, h)
                out = unit(h)
            infos.append(UnitInfo(
                index=i, name=name, kind=_unit_kind(layers), input_shape=_shape(h), output_shape=_shape(out),
                output_bytes=out[0].numel() * FLOAT32_BYTES, params=sum(p.numel() for p in unit.parameters()),
                flops=flops, layers=tuple(layers),
            ))
            h = out
    finally:
        chain.train(was_training)
    return infos


def describe_model(chain: MultiExitChain) -> dict[str, Any]:
    """The JSON description ``edgent info`` prints: trunk and branch units, exits and partition points."""
    exits = []
    for ep in chain.exit_points:
        units = describe_chain(chain, ep.exit)
        exits.append({
            "exit": ep.exit,
            "units": ep.num_units,
            "after_trunk_units": ep.after_trunk_units,
            "partition_points": list(ep.partition_points),
            "unit_names": [u.name for u in units],
            "tensor_bytes_float32": [_numel(chain.unit_input_shape(ep.exit, p)) * FLOAT32_BYTES
                                     for p in ep.partition_points],
            "flops": sum(u.flops for u in units),
            "params": sum(u.params for u in units),
        })
    main_units = describe_chain(chain, None)
    branch_units = []
    for ep in chain.exit_points[:-1]:
        branch_units += describe_chain(chain, ep.exit)[ep.after_trunk_units:]
    return {
        "model": chain.name,
        "input_shape": list(chain.input_shape),
        "input_bytes_float32": _numel(chain.input_shape) * FLOAT32_BYTES,
        "num_classes": chain.num_classes,
        "params": sum(p.numel() for p in chain.parameters()),
        "trunk": [u.to_json() for u in main_units],
        "branches": [u.to_json() for u in branch_units],
        "exits": exits,
    }


def layer_from_json(d: dict[str, Any]) -> LayerInfo:
    """A :class:`LayerInfo` from its JSON form (``dataclasses.asdict``)."""
    d = dict(d)
    for k in ("input_shape", "output_shape"):
        d[k] = tuple(int(v) for v in d.get(k, ()))
    return LayerInfo(**d)


def unit_from_json(d: dict[str, Any]) -> UnitInfo:
    """A :class:`UnitInfo` from its JSON form (:meth:`UnitInfo.to_json`)."""
    d = dict(d)
    d["layers"] = tuple(layer_from_json(x) for x in d.get("layers", ()))
    for k in ("input_shape", "output_shape"):
        d[k] = tuple(int(v) for v in d.get(k, ()))
    return UnitInfo(**d)
