"""A model's own latency model: its measured per-unit profile (``edgent profile --model M --role R``), used
where a fitted predictor is: by the latency tables of that model.

A measured profile knows the units of one model only; :class:`MeasuredUnitLatency` finds the exit whose units a
table asks about (by the unit names and count) and refuses units of another model with the fix. The input
preprocessing, which a model profile does not time, is priced by the role's fitted predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from edgent.errors import ConfigError
from edgent.model.describe import UnitInfo
from edgent.profile.profiler import ModelProfile, load_profile


class MeasuredUnitLatency:
    """Per-unit times of one model on one role, from its measured profile (ms at batch 1, the role's
    emulation included), with the latency-table interface (``part_terms_ms``, ``predict_unit_ms``,
    ``predict_preprocess_ms``)."""

    def __init__(self, profile: ModelProfile, source: str = "", preprocess_predictor: Any = None) -> None:
        self.profile = profile
        self.source = source or f"measured profile of {profile.model} ({profile.role})"
        self._pre = preprocess_predictor
        self._by_names: dict[tuple[str, ...], int] = {}
        for e, n in profile.num_units.items():
            names = tuple(profile.units[(e, i)].name for i in range(n)) if profile.units else ()
            self._by_names[names] = e

    @property
    def model(self) -> str:
        return self.profile.model

    @property
    def role(self) -> str:
        return self.profile.role

    def _exit_of(self, units: Sequence[UnitInfo]) -> int:
        e = self._by_names.get(tuple(u.name for u in units))
        if e is None:
            raise ConfigError(f"{self.source} does not hold these units (a profile of another model, or of other "
                              f"exits); profile this model: edgent profile --model M --role {self.role}")
        return e

    def part_terms_ms(self, units: Sequence[UnitInfo]) -> tuple[tuple[float, ...], float]:
        """Each unit's measured time inside a forward and no constant per call (the in-place timing includes
        what the units cost one after another)."""
        e = self._exit_of(units)
        return tuple(self.profile.unit_ms[(e, i)] for i in range(len(units))), 0.0

    def predict_unit_ms(self, unit: UnitInfo) -> float:
        if unit.name == "preprocess" and self._pre is not None:
            return float(self._pre.predict_unit_ms(unit))
        for (e, i), info in self.profile.units.items():
            if info.name == unit.name and info.input_shape == unit.input_shape:
                return self.profile.unit_ms[(e, i)]
        raise ConfigError(f"{self.source} has no unit {unit.name!r}; profile this model: edgent profile --model M "
                          f"--role {self.role}")

    def predict_preprocess_ms(self, name: str, input_shape: Sequence[int]) -> float | None:
        """The profile's own timing of the preprocessing ``name`` when it has one for this input size (a machine
        profiled as it is), else the fallback predictor's, else None."""
        own = self.profile.doc.get("preprocess") or {}
        numel = 1
        for d in input_shape:
            numel *= int(d)
        if own.get("name") == name and int(own.get("numel", -1)) == numel:
            return float(own["ms"])
        if self._pre is None:
            return None
        fn = getattr(self._pre, "predict_preprocess_ms", None)
        return fn(name, input_shape) if fn is not None else None

    def __repr__(self) -> str:
        return f"MeasuredUnitLatency({self.source})"


def is_model_profile(path: str | Path) -> bool:
    """Whether ``path`` is a measured model profile (format ``edgent-profile``) rather than a fitted predictor."""
    import json

    try:
        return json.loads(Path(path).read_text()).get("format") == "edgent-profile"
    except (OSError, ValueError, AttributeError):
        return False


def load_measured(path: str | Path, preprocess_predictor: Any = None) -> MeasuredUnitLatency:
    """A measured profile file as a per-unit latency model."""
    return MeasuredUnitLatency(load_profile(path), f"measured profile {path}", preprocess_predictor)
