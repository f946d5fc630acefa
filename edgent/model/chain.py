"""The multi-exit, partitionable model: a trunk of units with exit branches attached after some units.

Edgent's two knobs act on this one structure. *Right-sizing* picks an exit ``i`` (1-based; the last exit is the
main one). The sub-model to exit ``i`` is the first ``after_i`` trunk units followed by the branch units of exit
``i``; it has ``N_i`` units. *Partitioning* picks a point ``p`` in ``0..N_i``: the device runs units ``[0, p)``,
sends the tensor, and the edge runs units ``[p, N_i)``. ``p = 0`` sends the input (edge only); ``p = N_i`` runs
everything on the device (nothing crosses the link but the result).

The invariant every caller relies on, tested for all exits and points::

    chain.run_edge(chain.run_device(x, i, p), i, p) == chain(x, exit=i)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from edgent.errors import InputError, ModelError

NamedUnit = tuple[str, nn.Module]


@dataclass(frozen=True)
class ExitPoint:
    """Where exit ``exit`` (1-based) leaves the trunk and how many units its sub-model has."""

    exit: int
    after_trunk_units: int
    branch_units: int

    @property
    def num_units(self) -> int:
        """Units of the sub-model to this exit: ``N_i`` in the paper."""
        return self.after_trunk_units + self.branch_units

    @property
    def partition_points(self) -> range:
        """Valid partition points ``0..N_i`` of this exit's sub-model."""
        return range(self.num_units + 1)


class MultiExitChain(nn.Module):
    """A chain of units (the trunk) with exit branches, cut at any unit boundary and stopped at any exit.

    Args:
        name: model name, e.g. ``"alexnet-cifar10"``.
        trunk: ``(name, module)`` pairs, each taking and returning one tensor.
        exits: ``(after_trunk_units, branch)`` pairs, where ``branch`` is a list of ``(name, module)`` units.
            An exit with an empty branch after the whole trunk is the main exit; it is added when missing.
        input_shape: shape of one input without the batch dimension, e.g. ``(3, 32, 32)``.
        num_classes: outputs of every exit.
    """

    def __init__(
        self,
        name: str,
        trunk: Sequence[NamedUnit],
        exits: Sequence[tuple[int, Sequence[NamedUnit]]],
        input_shape: Sequence[int],
        num_classes: int,
    ) -> None:
        super().__init__()
        if not trunk:
            raise ModelError(f"model {name!r}: the trunk has no units")
        self.name = name
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self.trunk = nn.ModuleList([m for _, m in trunk])
        self.trunk_names = [n for n, _ in trunk]
        exit_list = [(int(a), list(b)) for a, b in exits if not (int(a) == len(trunk) and not b)]
        for after, branch in exit_list:
            if not 0 < after < len(trunk):
                raise ModelError(
                    f"model {name!r}: a branch exit after {after} trunk units is outside 1..{len(trunk) - 1} "
                    "(the main exit after the whole trunk needs no branch and is always there)"
                )
            if not branch:
                raise ModelError(f"model {name!r}: the exit after trunk unit {after} has no branch units")
        exit_list.sort(key=lambda e: e[0])
        if len({a for a, _ in exit_list}) != len(exit_list):
            raise ModelError(f"model {name!r}: two exits branch off after the same trunk unit")
        exit_list.append((len(trunk), []))
        self.branches = nn.ModuleList([nn.ModuleList([m for _, m in b]) for _, b in exit_list])
        self.branch_names = [[f"exit{i + 1}.{n}" for n, _ in b] for i, (_, b) in enumerate(exit_list)]
        self.exit_points = [
            ExitPoint(exit=i + 1, after_trunk_units=a, branch_units=len(b)) for i, (a, b) in enumerate(exit_list)
        ]
        self._unit_input_shapes: dict[int, list[tuple[int, ...]]] = {}
        self._compute_shapes()

    # ------------------------------------------------------------------ structure
    @property
    def num_exits(self) -> int:
        return len(self.exit_points)

    def exit_point(self, exit: int | None = None) -> ExitPoint:
        """The :class:`ExitPoint` of ``exit`` (1-based; ``None`` is the main, last exit)."""
        if exit is None:
            return self.exit_points[-1]
        if isinstance(exit, bool) or not isinstance(exit, int) or not 1 <= exit <= self.num_exits:
            raise ModelError(
                f"exit {exit!r} is out of range: model {self.name!r} has exits 1..{self.num_exits}"
            )
        return self.exit_points[exit - 1]

    def partition_points(self, exit: int | None = None) -> range:
        """Partition points ``0..N_i`` of the sub-model to ``exit``."""
        return self.exit_point(exit).partition_points

    def units(self, exit: int | None = None) -> list[nn.Module]:
        """The units of the sub-model to ``exit``, in execution order."""
        ep = self.exit_point(exit)
        # a list, not a ModuleList slice: slicing builds a new nn.Module on every call, and this runs per request
        return list(self.trunk)[: ep.after_trunk_units] + list(self.branches[ep.exit - 1])

    def unit_names(self, exit: int | None = None) -> list[str]:
        """Names of the units of the sub-model to ``exit``."""
        ep = self.exit_point(exit)
        return self.trunk_names[: ep.after_trunk_units] + self.branch_names[ep.exit - 1]

    def unit_input_shape(self, exit: int | None, point: int) -> tuple[int, ...]:
        """Shape (without batch) of the tensor that crosses the link at ``point`` of ``exit``'s sub-model.

        Point 0 is the model input; point ``N_i`` is the exit's output (the logits).
        """
        ep = self.exit_point(exit)
        self._check_point(ep, point)
        return self._unit_input_shapes[ep.exit][point]

    # ------------------------------------------------------------------ execution
    def run_device(self, x: torch.Tensor, exit: int | None, point: int) -> torch.Tensor:
        """Run the device part: units ``[0, point)`` of ``exit``'s sub-model on a batch of inputs."""
        ep = self.exit_point(exit)
        self._check_point(ep, point)
        self._check_tensor(x, self.input_shape, "the model input")
        return self._run(self.units(ep.exit)[:point], x)

    def run_edge(self, t: torch.Tensor, exit: int | None, point: int) -> torch.Tensor:
        """Run the edge part: units ``[point, N_i)`` of ``exit``'s sub-model on the tensor the device sent."""
        ep = self.exit_point(exit)
        self._check_point(ep, point)
        self._check_tensor(t, self._unit_input_shapes[ep.exit][point], f"the tensor at partition point {point}")
        return self._run(self.units(ep.exit)[point:], t)

    def forward(self, x: torch.Tensor, exit: int | None = None) -> torch.Tensor:
        """The whole sub-model to ``exit`` (default: the main exit), on a batch."""
        ep = self.exit_point(exit)
        self._check_tensor(x, self.input_shape, "the model input")
        return self._run(self.units(ep.exit), x)

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Outputs of every exit for one batch, sharing the trunk's computation (what training needs)."""
        self._check_tensor(x, self.input_shape, "the model input")
        outputs: list[torch.Tensor] = []
        done = 0
        h = x
        for ep in self.exit_points:
            h = self._run(self.trunk[done : ep.after_trunk_units], h)
            done = ep.after_trunk_units
            outputs.append(self._run(self.branches[ep.exit - 1], h))
        return outputs

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _run(units: Sequence[nn.Module], h: torch.Tensor) -> torch.Tensor:
        for unit in units:
            h = unit(h)
        return h

    def _check_point(self, ep: ExitPoint, point: int) -> None:
        if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point <= ep.num_units:
            raise ModelError(
                f"partition point {point!r} is out of range: exit {ep.exit} of model {self.name!r} "
                f"has points 0..{ep.num_units} (0 = edge only, {ep.num_units} = device only)"
            )

    def _check_tensor(self, t: torch.Tensor, shape: tuple[int, ...], what: str) -> None:
        if not isinstance(t, torch.Tensor):
            raise InputError(f"{what} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise InputError(
                f"{what} must be a floating-point tensor, got dtype {t.dtype}; "
                "convert images with edgent.data.to_model_input() or tensor.float()"
            )
        if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
            raise InputError(
                f"{what} of model {self.name!r} must have shape (batch, {', '.join(map(str, shape))}), "
                f"got {tuple(t.shape)}"
            )

    @torch.no_grad()
    def _compute_shapes(self) -> None:
        was_training = self.training
        self.eval()
        try:
            for ep in self.exit_points:
                h = torch.zeros((1, *self.input_shape))
                shapes = [tuple(h.shape[1:])]
                for unit in self.units(ep.exit):
                    h = unit(h)
                    if not isinstance(h, torch.Tensor):
                        raise ModelError(
                            f"model {self.name!r}: a unit returned {type(h).__name__}, not a single tensor"
                        )
                    shapes.append(tuple(h.shape[1:]))
                self._unit_input_shapes[ep.exit] = shapes
        finally:
            self.train(was_training)
