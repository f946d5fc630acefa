"""Latency predictors per machine role: the paper's per-layer-type linear regressions, and edgent's better one.

A predictor answers how long a layer, a unit and a part (a run of consecutive units, run as one call of
``run_device``/``run_edge``) take on one machine role, in milliseconds, batch 1. Both kinds are fitted on a
synthetic-layer sweep (:mod:`edgent.profile.sweep`) measured on this host without the quota, then scaled:

    predicted_ms = base_ms(layers) x quota_factor x slowdown

``quota_factor`` is the measured time-averaged slowdown of the real CPU quota (1 without one; calibrated on
sweep layers run with and without the quota) and ``slowdown`` the emulated factor of the role (exact by
construction: the emulation sleeps until the work has taken that many times as long).

- :class:`PaperPredictor`: per layer type, ordinary least squares on the paper's variables
  (:func:`edgent.latency.features.paper_features`), plus the paper's model-loading regression.
- :class:`EdgentPredictor`: per layer type, a non-negative relative-error linear fit on FLOPs, input/output
  sizes and parameters, times a local multiplicative correction learned from the nearest sweep layers in
  log-shape space (kernels switch algorithm with shape, which no linear model captures); plus the constant
  overhead of calling a multi-layer unit; and for a part, ``chain_factor x sum(units) + part_overhead``, both
  fitted on random synthetic chains timed as whole ``run_device``/``run_edge`` calls (layers run back to back
  cost more than alone, mostly from caches: the next layer's weights are no longer hot).

Saved as JSON (never pickle); :func:`load_predictor` reads either kind back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edgent.jsonio import read_json_file
from edgent.errors import DataError, ModelError
from edgent.latency.features import (KNOWN_KINDS, check_kind, paper_feature_names, paper_features,
                                     rich_feature_names, rich_features, shape_key)
from edgent.latency.regression import LinearFit, LocalCorrection, fit_linear, r_squared
from edgent.model.describe import LayerInfo, UnitInfo, layer_from_json, unit_from_json  # noqa: F401
from edgent.profile.throttle import DeviceEmulation

FORMAT = "edgent-latency-predictor"
VERSION = 1


@dataclass
class LatencyPredictor:
    """Base class: the per-role scaling and the unit/part sums; subclasses predict one layer's base time.

    Attributes:
        role: "device" or "edge".
        emulation: how the role runs on this host (threads, real quota, emulated slowdown).
        quota_factor: measured time-averaged slowdown of the real quota (1 without one).
        info: how the predictor was fitted (sweep size, fit errors, date), for the record.
    """

    role: str
    emulation: DeviceEmulation
    quota_factor: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    load_fit: LinearFit | None = None
    #: per preprocessing name (``edgent.model.preprocess``): base ms against input elements, fitted on the real
    #: function timed in the sweep
    preprocess_fits: dict[str, LinearFit] = field(default_factory=dict)

    name = "base"

    # ------------------------------------------------------------ prediction
    @property
    def scale(self) -> float:
        """Multiplier from the fitted (unthrottled) base times to the role's times."""
        return self.quota_factor * self.emulation.slowdown

    def _layer_base_ms(self, layer: LayerInfo) -> float:
        raise NotImplementedError

    def _unit_overhead_ms(self, unit: UnitInfo) -> float:
        return 0.0

    def _part_overhead_ms(self) -> float:
        return 0.0

    def predict_layer_ms(self, layer: LayerInfo) -> float:
        """Predicted time of one layer on this role (ms, batch 1). Unknown kinds raise :class:`ModelError`."""
        return self.scale * max(self._layer_base_ms(layer), 0.0)

    def predict_unit_ms(self, unit: UnitInfo) -> float:
        """Predicted time of one unit (the sum over its layers plus the unit's call overhead), ms."""
        if not unit.layers:
            raise ModelError(f"unit {unit.name!r} has no layer records; describe it with describe_chain()")
        base = sum(max(self._layer_base_ms(layer), 0.0) for layer in unit.layers) + self._unit_overhead_ms(unit)
        return self.scale * base

    def predict_units_ms(self, units: Sequence[UnitInfo]) -> float:
        """Predicted time of a part: consecutive units run as one ``run_device``/``run_edge`` call, ms.
        An empty part takes 0 ms (nothing runs)."""
        units = list(units)
        if not units:
            return 0.0
        return sum(self.predict_unit_ms(u) for u in units) + self.scale * self._part_overhead_ms()

    def part_terms_ms(self, units: Sequence[UnitInfo]) -> tuple[tuple[float, ...], float]:
        """A part's prediction split into what each unit adds and what the call costs once (ms), such that any
        run of consecutive ``units`` costs the sum of its units' terms plus the constant, exactly as
        :meth:`predict_units_ms` of that run. What a latency table stores (:mod:`edgent.plan.table`)."""
        return tuple(self.predict_unit_ms(u) for u in units), self.scale * self._part_overhead_ms()

    def predict_preprocess_ms(self, name: str, input_shape: Sequence[int]) -> float | None:
        """Predicted time of the input preprocessing ``name`` for one input of ``input_shape`` (ms), or None
        when the sweep did not time it."""
        fit = self.preprocess_fits.get(name)
        if fit is None:
            return None
        n = float(_numel(tuple(int(d) for d in input_shape)))
        return self.scale * max(float(fit.predict(np.array([[n]], float))[0]), 0.0)

    def predict_load_ms(self, size_bytes: int) -> float:
        """Predicted time to load a model of ``size_bytes`` bytes of weights (the paper's model-loading
        regression), ms. Loading is I/O and is not throttled or slowed: no scaling."""
        if self.load_fit is None:
            raise ModelError("this predictor was fitted without model-loading measurements")
        return max(float(self.load_fit.predict(np.array([[size_bytes]], float))[0]), 0.0)

    # ------------------------------------------------------------ saving
    def _kinds_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "predictor": self.name, "role": self.role,
            "emulation": self.emulation.to_json(), "quota_factor": self.quota_factor,
            "load_fit": self.load_fit.to_json() if self.load_fit else None,
            "preprocess_fits": {k: f.to_json() for k, f in self.preprocess_fits.items()},
            "kinds": self._kinds_json(), **self._extra_json(), "info": self.info,
        }

    def _extra_json(self) -> dict[str, Any]:
        return {}

    def save(self, path: str | Path) -> Path:
        """Write the predictor as JSON to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")
        return path

    def with_emulation(self, emulation: DeviceEmulation) -> "LatencyPredictor":
        """The same fit for another emulated slowdown (threads and quota must match what was fitted)."""
        if emulation.threads != self.emulation.threads or emulation.cpu_quota != self.emulation.cpu_quota:
            raise ModelError(
                f"this predictor was fitted for {self.emulation.describe()}; only the emulated slowdown can be "
                "changed without re-fitting (edgent profile --sweep ... then --fit)"
            )
        other = load_predictor_json(self.to_json())
        other.emulation = emulation
        return other

    def kinds(self) -> list[str]:
        return sorted(self._kinds_json())

    def _missing(self, layer: LayerInfo) -> ModelError:
        return ModelError(
            f"the {self.name} predictor for role {self.role!r} has no fit for layer kind {layer.kind!r}; it "
            f"knows {', '.join(self.kinds())}. Re-run the sweep with that kind (edgent profile --sweep)"
        )


@dataclass
class PaperPredictor(LatencyPredictor):
    """The paper's reference: per layer type, OLS ``ms = b + w . paper_features(layer)``."""

    fits: dict[str, LinearFit] = field(default_factory=dict)
    name = "paper"

    def _layer_base_ms(self, layer: LayerInfo) -> float:
        kind = check_kind(layer)
        if kind not in self.fits:
            raise self._missing(layer)
        return float(self.fits[kind].predict(paper_features(layer)[None, :])[0])

    def _kinds_json(self) -> dict[str, Any]:
        return {k: {"features": paper_feature_names(k), **f.to_json()} for k, f in self.fits.items()}

    @classmethod
    def fit(cls, role: str, emulation: DeviceEmulation, samples: Sequence[tuple[LayerInfo, float]],
            quota_factor: float = 1.0, loading: Sequence[tuple[int, float]] = (), info: dict | None = None
            ) -> "PaperPredictor":
        """Fit one OLS per kind on (layer, measured base ms) samples."""
        fits: dict[str, LinearFit] = {}
        fit_info: dict[str, Any] = {}
        for kind, rows in _by_kind(samples).items():
            x = np.array([paper_features(layer) for layer, _ in rows])
            y = np.array([ms for _, ms in rows])
            fits[kind] = fit_linear(x, y)
            fit_info[kind] = {"n": len(y), "r2": round(r_squared(y, fits[kind].predict(x)), 4)}
        load_fit = _fit_loading(loading)
        return cls(role, emulation, quota_factor, {**(info or {}), "per_kind": fit_info}, load_fit, fits=fits)


@dataclass
class EdgentPredictor(LatencyPredictor):
    """Per layer type: a non-negative relative-error linear fit on the rich features, times a local
    correction from the nearest sweep layers; plus unit and part call overheads (ms, unthrottled)."""

    fits: dict[str, LinearFit] = field(default_factory=dict)
    corrections: dict[str, LocalCorrection] = field(default_factory=dict)
    unit_overhead_ms: float = 0.0
    part_overhead_ms: float = 0.0
    chain_factor: float = 1.0
    chain_ms_per_param: float = 0.0
    chain_ms_per_input: float = 0.0
    name = "edgent"

    def predict_units_ms(self, units: Sequence[UnitInfo]) -> float:
        """A part: ``scale x (chain_factor x sum(unit base ms) + chain_ms_per_param x params
        + chain_ms_per_input x input elements + part_overhead_ms)``, the terms fitted on synthetic chains
        (running layers back to back re-reads weights and inputs that a layer timed alone finds in cache)."""
        units = list(units)
        if not units:
            return 0.0
        return self.scale * self._part_base_ms(units)

    def part_terms_ms(self, units: Sequence[UnitInfo]) -> tuple[tuple[float, ...], float]:
        """Each unit's term in a part (its prediction x ``chain_factor`` plus its parameters' and input's chain
        terms) and the part's constant (``part_overhead_ms``), scaled to the role (ms): the chain terms are sums
        over units, so every run of consecutive units is its terms' sum plus the constant."""
        terms = tuple(self.scale * float(np.dot(self._chain_terms([u]), self._chain_coefs)) for u in units)
        return terms, self.scale * self.part_overhead_ms

    @property
    def _chain_coefs(self) -> list[float]:
        return [self.chain_factor, self.chain_ms_per_param, self.chain_ms_per_input]

    def _part_base_ms(self, units: Sequence[UnitInfo]) -> float:
        return float(np.dot(self._chain_terms(units), self._chain_coefs) + self.part_overhead_ms)

    def _chain_terms(self, units: Sequence[UnitInfo]) -> np.ndarray:
        base = sum(self.predict_unit_ms(u) for u in units) / self.scale
        return np.array([base, float(sum(u.params for u in units)),
                         float(sum(_numel(u.input_shape) for u in units))])

    def _layer_base_ms(self, layer: LayerInfo) -> float:
        kind = check_kind(layer)
        if kind not in self.fits:
            raise self._missing(layer)
        base = float(self.fits[kind].predict(rich_features(layer)[None, :])[0])
        corr = self.corrections.get(kind)
        return base * (corr.factor(shape_key(layer)) if corr is not None else 1.0)

    def _unit_overhead_ms(self, unit: UnitInfo) -> float:
        return self.unit_overhead_ms if len(unit.layers) > 1 else 0.0

    def _part_overhead_ms(self) -> float:
        return self.part_overhead_ms

    def _kinds_json(self) -> dict[str, Any]:
        return {k: {"features": rich_feature_names(k), **f.to_json(),
                    "correction": self.corrections[k].to_json() if k in self.corrections else None}
                for k, f in self.fits.items()}

    def _extra_json(self) -> dict[str, Any]:
        return {"unit_overhead_ms": self.unit_overhead_ms, "part_overhead_ms": self.part_overhead_ms,
                "chain_factor": self.chain_factor, "chain_ms_per_param": self.chain_ms_per_param,
                "chain_ms_per_input": self.chain_ms_per_input}

    @classmethod
    def fit(cls, role: str, emulation: DeviceEmulation, samples: Sequence[tuple[LayerInfo, float]],
            quota_factor: float = 1.0, loading: Sequence[tuple[int, float]] = (), unit_overhead_ms: float = 0.0,
            part_overhead_ms: float = 0.0, info: dict | None = None, k: int = 5, bandwidth: float = 0.75,
            chains: Sequence[tuple[Sequence[UnitInfo], float]] = ()) -> "EdgentPredictor":
        """Fit on (layer, base ms) samples; ``chains`` ((units, measured ms) of whole parts of synthetic
        chains, unthrottled) fit ``chain_factor`` and ``part_overhead_ms`` (else the given overhead is used)."""
        fits: dict[str, LinearFit] = {}
        corrections: dict[str, LocalCorrection] = {}
        fit_info: dict[str, Any] = {}
        for kind, rows in _by_kind(samples).items():
            x = np.array([rich_features(layer) for layer, _ in rows])
            y = np.array([ms for _, ms in rows])
            lin = fit_linear(x[:, 1:], y, intercept=True, relative=True, nonneg=True)
            fits[kind] = LinearFit([lin.intercept] + list(lin.coef), 0.0)  # constant is the first feature
            base = np.maximum(fits[kind].predict(x), 1e-6)
            z = np.array([shape_key(layer) for layer, _ in rows])
            corrections[kind] = LocalCorrection.fit(z, np.log(np.maximum(y, 1e-6) / base), k=k, bandwidth=bandwidth)
            fit_info[kind] = {"n": len(y), "linear_median_ape": round(float(np.median(np.abs(base - y) / y)), 4)}
        pred = cls(role, emulation, quota_factor, {**(info or {}), "per_kind": fit_info}, _fit_loading(loading),
                   fits=fits, corrections=corrections, unit_overhead_ms=float(unit_overhead_ms),
                   part_overhead_ms=float(part_overhead_ms))
        if len(chains) >= 5:
            terms = np.array([pred._chain_terms(units) for units, _ in chains])
            y = np.array([ms for _, ms in chains])
            lin = fit_linear(terms, y, relative=True, nonneg=True)
            pred.chain_factor, pred.chain_ms_per_param, pred.chain_ms_per_input = (float(c) for c in lin.coef)
            pred.part_overhead_ms = float(lin.intercept)
            plain = np.abs(terms[:, 0] + float(part_overhead_ms) - y) / y
            pred.info["chains"] = {"n": len(y), "chain_factor": pred.chain_factor,
                                   "chain_ms_per_param": pred.chain_ms_per_param,
                                   "chain_ms_per_input": pred.chain_ms_per_input,
                                   "part_overhead_ms": pred.part_overhead_ms,
                                   "median_ape_sum_of_units": round(float(np.median(plain)), 4),
                                   "median_ape_fitted": round(float(np.median(np.abs(lin.predict(terms) - y) / y)), 4)}
        return pred


PREDICTORS = {"paper": PaperPredictor, "edgent": EdgentPredictor}


def _by_kind(samples: Iterable[tuple[LayerInfo, float]]) -> dict[str, list[tuple[LayerInfo, float]]]:
    out: dict[str, list[tuple[LayerInfo, float]]] = {}
    for layer, ms in samples:
        out.setdefault(check_kind(layer), []).append((layer, float(ms)))
    return out


def _fit_loading(loading: Sequence[tuple[int, float]]) -> LinearFit | None:
    if len(loading) < 2:
        return None
    x = np.array([[s] for s, _ in loading], float)
    return fit_linear(x, np.array([ms for _, ms in loading], float))


def load_predictor_json(d: dict[str, Any]) -> LatencyPredictor:
    """A predictor from its JSON form."""
    if d.get("format") != FORMAT:
        raise DataError(f"not an edgent latency predictor (format {d.get('format')!r}, expected {FORMAT!r})")
    if int(d.get("version", 0)) != VERSION:
        raise DataError(f"latency predictor version {d.get('version')!r} is not supported (expected {VERSION})")
    kind = d.get("predictor")
    common = dict(role=str(d["role"]), emulation=DeviceEmulation.from_json(d["emulation"]),
                  quota_factor=float(d.get("quota_factor", 1.0)), info=d.get("info", {}),
                  load_fit=LinearFit.from_json(d["load_fit"]) if d.get("load_fit") else None,
                  preprocess_fits={str(k): LinearFit.from_json(v) for k, v in (d.get("preprocess_fits") or {}).items()})
    kinds = d.get("kinds", {})
    unknown = set(kinds) - set(KNOWN_KINDS)
    if unknown:
        raise DataError(f"latency predictor has fits for unknown layer kinds {sorted(unknown)}")
    if kind == "paper":
        return PaperPredictor(**common, fits={k: LinearFit.from_json(v) for k, v in kinds.items()})
    if kind == "edgent":
        return EdgentPredictor(
            **common, fits={k: LinearFit.from_json(v) for k, v in kinds.items()},
            corrections={k: LocalCorrection.from_json(v["correction"]) for k, v in kinds.items() if v.get("correction")},
            unit_overhead_ms=float(d.get("unit_overhead_ms", 0.0)), part_overhead_ms=float(d.get("part_overhead_ms", 0.0)),
            chain_factor=float(d.get("chain_factor", 1.0)), chain_ms_per_param=float(d.get("chain_ms_per_param", 0.0)),
            chain_ms_per_input=float(d.get("chain_ms_per_input", 0.0)))
    raise DataError(f"unknown predictor kind {kind!r}; known: {', '.join(PREDICTORS)}")


def load_predictor(path: str | Path) -> LatencyPredictor:
    """Read a predictor saved with :meth:`LatencyPredictor.save`."""
    d = read_json_file(path, "latency predictor file", "fit one with `edgent profile --fit`")
    try:
        return load_predictor_json(d)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"latency predictor file {path} is malformed: {exc}") from exc


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


FITTED_DIR = Path(__file__).with_name("fitted")


def default_predictor(role: str, predictor: str = "edgent") -> LatencyPredictor:
    """The predictor shipped for ``role`` ("device" or "edge"), fitted on this project's development machine
    type (``edgent/latency/fitted/<role>.json``, or ``<role>.paper.json`` for the paper's)."""
    if role not in ("device", "edge"):
        raise ModelError(f"unknown machine role {role!r}; roles: device, edge")
    if predictor not in PREDICTORS:
        raise ModelError(f"unknown predictor {predictor!r}; known: {', '.join(PREDICTORS)}")
    name = f"{role}.json" if predictor == "edgent" else f"{role}.{predictor}.json"
    return load_predictor(FITTED_DIR / name)
