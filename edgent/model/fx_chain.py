"""Turn any torch.fx-traceable model into a :class:`MultiExitChain`, cut at its single-tensor cut points.

A *cut point* is a place in the traced data-flow graph (between two nodes in topological order) where exactly one
tensor is live: the only value computed so far that is still needed later. Cutting there splits the model into
two parts joined by that one tensor, which is what partitioning needs. In a residual network the skip connection
keeps two tensors live inside a block, so the cuts fall between blocks, with no hand annotation.

Each segment between two consecutive cut points becomes a unit: a small ``torch.fx.GraphModule`` that takes one
tensor and returns one, sharing parameters with the original model (nothing is copied).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from edgent.errors import ModelError
from edgent.model.chain import MultiExitChain, NamedUnit


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.symbolic_trace(model)
    except Exception as exc:  # torch.fx raises many types for untraceable code
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(
            f"{type(model).__name__} cannot be traced by torch.fx ({type(exc).__name__}: {first}). Make its "
            "forward free of Python control flow on tensor values (if/for over tensors, .item(), len(x)), or wrap "
            "that code in a function marked torch.fx.wrap, or build the chain by hand with "
            "MultiExitChain(trunk=[...])"
        ) from exc


def _is_single_tensor(node: fx.Node) -> bool:
    meta = node.meta.get("tensor_meta")
    return meta is not None and hasattr(meta, "shape")


def find_cut_points(gm: fx.GraphModule) -> list[fx.Node]:
    """The nodes after which exactly one tensor is live, in order: the input placeholder first, the value the
    model returns last. ``gm`` must have been shape-propagated (``tensor_meta`` on each node)."""
    nodes = list(gm.graph.nodes)
    placeholders = [n for n in nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ModelError(f"the model takes {len(placeholders)} inputs; edgent partitions models with exactly one")
    output = nodes[-1]
    if output.op != "output" or not isinstance(output.args[0], fx.Node) or not _is_single_tensor(output.args[0]):
        raise ModelError("the model must return a single tensor to be converted into a chain")
    position = {n: i for i, n in enumerate(nodes)}
    last_use = {n: max((position[u] for u in n.users), default=-1) for n in nodes}
    cuts: list[fx.Node] = []
    live: set[fx.Node] = set()
    for i, node in enumerate(nodes[:-1]):
        if node.op != "get_attr" and last_use[node] > i:
            live.add(node)
        live = {n for n in live if last_use[n] > i}
        if len(live) == 1:
            (only,) = live
            if only is node and _is_single_tensor(node):
                cuts.append(node)
    if not cuts or cuts[0] is not placeholders[0]:
        cuts.insert(0, placeholders[0])
    if cuts[-1] is not output.args[0]:
        raise ModelError("internal: the returned value is not a cut point")
    return cuts


def _segment_module(root: nn.Module, nodes: Sequence[fx.Node], start: fx.Node, end: fx.Node) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {start: graph.placeholder("x")}

    def lookup(n: fx.Node) -> fx.Node:
        if n not in env:
            if n.op != "get_attr":
                raise ModelError(f"internal: node {n.name} crosses a cut point")
            env[n] = graph.node_copy(n, lookup)
        return env[n]

    for n in nodes:
        if n.op == "get_attr" or (not n.users and n is not end):
            continue
        env[n] = graph.node_copy(n, lookup)
    graph.output(env[end])
    graph.lint()
    return fx.GraphModule(root, graph)


def _node_path(n: fx.Node) -> str | None:
    """The module path a node belongs to: its own target for a module call, else the innermost module whose
    forward made the call (torch.fx records it as ``nn_module_stack``)."""
    if n.op == "call_module":
        return str(n.target)
    stack = n.meta.get("nn_module_stack")
    if stack:
        return str(list(stack.values())[-1][0])
    return None


def _segment_name(nodes: Sequence[fx.Node], taken: set[str]) -> str:
    paths = [p for p in (_node_path(n) for n in nodes if n.op in ("call_module", "call_function", "call_method"))
             if p]
    if paths:
        parts = [p.split(".") for p in paths]
        common: list[str] = []
        for group in zip(*parts):
            if len(set(group)) != 1:
                break
            common.append(group[0])
        name = ".".join(common) if common else paths[0]
        computing = [n for n in nodes if n.op in ("call_module", "call_function", "call_method")]
        if len(computing) == 1 and computing[0].op != "call_module":
            name = f"{name}.{computing[0].name}"
    else:
        name = next((n.name for n in nodes if n.op in ("call_function", "call_method")), nodes[0].name)
    base, k = name, 1
    while name in taken:
        k += 1
        name = f"{base}_{k}"
    taken.add(name)
    return name


def chain_units(model: nn.Module, input_shape: Sequence[int]) -> list[NamedUnit]:
    """Split ``model`` at its single-tensor cut points into ``(name, GraphModule)`` units."""
    gm = _trace(model)
    n_inputs = sum(1 for n in gm.graph.nodes if n.op == "placeholder")
    if n_inputs != 1:
        raise ModelError(f"the model takes {n_inputs} inputs; edgent partitions models with exactly one")
    was_training = model.training
    model.eval()
    try:
        ShapeProp(gm).propagate(torch.zeros((1, *input_shape)))
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelError(f"running the model on an input of shape (1, {', '.join(map(str, input_shape))}) failed "
                         f"({type(exc).__name__}: {first}); check --input-size (C,H,W) for this "
                         "architecture") from exc
    finally:
        model.train(was_training)
    cuts = find_cut_points(gm)
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    units: list[NamedUnit] = []
    taken: set[str] = set()
    for start, end in zip(cuts[:-1], cuts[1:]):
        seg = nodes[position[start] + 1 : position[end] + 1]
        units.append((_segment_name(seg, taken), _segment_module(gm, seg, start, end)))
    return units


def make_exit_head(kind: str, channels: int, num_classes: int, hidden: int = 128) -> list[NamedUnit]:
    """Build a small exit branch from a spec name.

    ``"linear"``: global average pool, then a fully connected layer (units: pool, fc).
    ``"conv"``: a 3x3 convolution to ``hidden`` channels with ReLU, global average pool, fully connected
    (units: conv, relu, pool, fc), as BranchyNet's branches.
    """
    fc: NamedUnit = ("fc", nn.Sequential(nn.Flatten(), nn.Linear(hidden if kind == "conv" else channels, num_classes)))
    if kind == "linear":
        return [("pool", nn.AdaptiveAvgPool2d(1)), fc]
    if kind == "conv":
        return [("conv", nn.Conv2d(channels, hidden, 3, padding=1)), ("relu", nn.ReLU()),
                ("pool", nn.AdaptiveAvgPool2d(1)), fc]
    raise ModelError(f"unknown exit head {kind!r}; use 'linear' or 'conv'")


def chain_from_model(
    model: nn.Module,
    input_shape: Sequence[int],
    name: str,
    num_classes: int,
    exits: Sequence[dict[str, Any]] = (),
) -> MultiExitChain:
    """Convert ``model`` into a chain and attach exit branches from a small spec.

    Each exit spec is ``{"after": UNIT, "head": "linear" | "conv" | [(name, module), ...]}`` where ``UNIT`` is a
    unit name or module path (the exit goes after the last unit inside it, e.g. ``"layer2"``), as ``edgent
    info`` lists them, or the number of trunk units before the branch. A head given by
    name is built for the channel count of the tensor at that cut point. The chain comes back in eval mode,
    whatever mode ``model`` was in.
    """
    trunk = chain_units(model, input_shape)
    names = [n for n, _ in trunk]
    shapes = []
    h = torch.zeros((1, *input_shape))
    with torch.no_grad():
        was_training = model.training
        model.eval()
        for _, unit in trunk:
            h = unit(h)
            shapes.append(tuple(h.shape[1:]))
        model.train(was_training)
    exit_list: list[tuple[int, list[NamedUnit]]] = []
    for spec in exits:
        after = spec.get("after")
        if isinstance(after, str):
            matches = [i for i, n in enumerate(names) if n == after or n.startswith(after + ".")]
            if not matches:
                raise ModelError(f"exit after {after!r}: no unit of {name!r} is or lies inside {after!r}; "
                                 f"units are {names}")
            k = matches[-1] + 1
        elif isinstance(after, int) and not isinstance(after, bool):
            k = after
        else:
            raise ModelError(f"an exit spec needs 'after' (a unit name or count), got {spec!r}")
        if not 0 < k < len(trunk):
            raise ModelError(f"exit after {after!r}: must be between unit 1 and {len(trunk) - 1}")
        head = spec.get("head", "linear")
        if isinstance(head, str):
            if len(shapes[k - 1]) != 3:
                raise ModelError(f"a {head!r} head needs a (C, H, W) feature map; unit {names[k - 1]} gives "
                                 f"{shapes[k - 1]}")
            head = make_exit_head(head, shapes[k - 1][0], num_classes)
        exit_list.append((k, list(head)))
    # inference mode whatever mode ``model`` was in: training mode is only ever set by the trainer
    return MultiExitChain(name=name, trunk=trunk, exits=exit_list, input_shape=input_shape,
                          num_classes=num_classes).eval()
