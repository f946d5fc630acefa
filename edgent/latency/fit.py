"""Fitting the predictors from a sweep document (:func:`edgent.profile.sweep.run_sweep`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgent.errors import DataError
from edgent.latency.predictor import (EdgentPredictor, LatencyPredictor, PaperPredictor, layer_from_json,
                                      unit_from_json)
from edgent.latency.regression import fit_linear
from edgent.profile.throttle import DeviceEmulation


def sweep_samples(sweep: dict[str, Any]) -> list[tuple[Any, float]]:
    """(LayerInfo, measured ms) pairs of a sweep."""
    samples = [(layer_from_json(r["layer"]), float(r["ms"])) for r in sweep.get("records", [])]
    if not samples:
        raise DataError("the sweep has no records; run `edgent profile --sweep` first")
    return samples


def fit_predictors(sweep: dict[str, Any], emulation: DeviceEmulation | None = None,
                   kinds: tuple[str, ...] = ("paper", "edgent")) -> dict[str, LatencyPredictor]:
    """Fit the paper's and edgent's predictors on ``sweep`` for its role.

    ``emulation`` (default: the sweep's) sets the emulated slowdown of the result; its threads and quota must
    be those the sweep measured. The quota factor comes from the sweep's calibration (1 without a quota).
    """
    sweep_emu = DeviceEmulation.from_json(sweep["emulation"])
    emu = emulation or sweep_emu
    if emu.threads != sweep_emu.threads or emu.cpu_quota != sweep_emu.cpu_quota:
        raise DataError(f"the sweep was measured for {sweep_emu.describe()}, not for {emu.describe()}")
    samples = sweep_samples(sweep)
    cal = sweep.get("quota_calibration") or {}
    quota_factor = float(cal.get("quota_factor", 1.0)) if emu.cpu_quota else 1.0
    if emu.cpu_quota and not cal:
        raise DataError("the sweep has no quota calibration; re-run the sweep for a role with a CPU quota")
    loading = [(int(r["size_bytes"]), float(r["ms"])) for r in sweep.get("loading", [])]
    info = {"sweep_records": len(samples), "sweep_seed": sweep.get("seed"), "sweep_quick": sweep.get("quick"),
            "quota_calibration": {k: v for k, v in cal.items() if k != "layers"} or None,
            "fitted_on": "synthetic-layer sweep measured without the quota; times scaled by quota_factor x slowdown"}
    out: dict[str, LatencyPredictor] = {}
    if "paper" in kinds:
        out["paper"] = PaperPredictor.fit(sweep["role"], emu, samples, quota_factor, loading, info=dict(info))
    if "edgent" in kinds:
        ov = sweep.get("overheads", {})
        out["edgent"] = EdgentPredictor.fit(sweep["role"], emu, samples, quota_factor, loading,
                                            unit_overhead_ms=ov.get("unit_overhead_ms", 0.0),
                                            part_overhead_ms=ov.get("part_overhead_ms", 0.0), info=dict(info),
                                            chains=_chain_samples(sweep, quota_factor if emu.cpu_quota else 1.0))
    prep = preprocess_fits(sweep)
    for pred in out.values():
        pred.preprocess_fits = dict(prep)
    return out


def preprocess_fits(sweep: dict[str, Any]) -> dict[str, Any]:
    """Per preprocessing name, base ms against input elements (OLS) from the sweep's timings of the real
    function (empty for a sweep without preprocessing timings: the predictor then has no preprocessing fit)."""
    by: dict[str, list[tuple[float, float]]] = {}
    for r in sweep.get("preprocess") or []:
        by.setdefault(str(r["name"]), []).append((float(r["numel"]), float(r["ms"])))
    return {name: fit_linear(np.array([[n] for n, _ in rows]), np.array([ms for _, ms in rows]))
            for name, rows in by.items() if len(rows) >= 2}


def _chain_samples(sweep: dict[str, Any], quota_factor: float) -> list[tuple[list[Any], float]]:
    """(units, ms) of the sweep's unthrottled synthetic-chain parts, for the chain correction. None for a role
    with a quota: its sweep times every layer after an idle gap, as cold as inside a throttled chain, so the
    sum of the units is already the chain's CPU time (and the chains timed back to back without gaps would
    teach the wrong correction)."""
    if quota_factor != 1.0 or sweep.get("emulation", {}).get("cpu_quota"):
        return []
    return [([unit_from_json(u) for u in c["units"]], float(c["ms"])) for c in sweep.get("chains", [])]
