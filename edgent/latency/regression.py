"""The regressions behind the latency models: linear least squares (the paper's), a non-negative
relative-error linear fit, and a local multiplicative correction by nearest neighbours in log-shape space."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import nnls

from edgent.errors import DataError


@dataclass
class LinearFit:
    """``y = intercept + coef . x``, fitted by :func:`fit_linear`."""

    coef: list[float]
    intercept: float = 0.0

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(x, float))
        return x @ np.asarray(self.coef, float) + self.intercept

    def to_json(self) -> dict[str, Any]:
        return {"coef": [float(c) for c in self.coef], "intercept": float(self.intercept)}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LinearFit":
        return cls([float(c) for c in d["coef"]], float(d.get("intercept", 0.0)))


def fit_linear(x: np.ndarray, y: np.ndarray, intercept: bool = True, relative: bool = False,
               nonneg: bool = False) -> LinearFit:
    """Least-squares fit of ``y`` on the columns of ``x``.

    Args:
        intercept: add a constant term.
        relative: minimise the squared *relative* error (rows weighted by 1/y) instead of the absolute one,
            so that small layers count as much as big ones.
        nonneg: constrain every coefficient (and the intercept) to be >= 0 (``scipy.optimize.nnls``): a
            latency cannot fall when a layer grows.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    if x.ndim == 1:
        x = x[:, None]
    if len(y) == 0 or len(y) != len(x):
        raise DataError(f"cannot fit a regression on {len(y)} measurements and {len(x)} feature rows")
    a = np.hstack([x, np.ones((len(x), 1))]) if intercept else x
    w = 1.0 / np.maximum(y, 1e-9) if relative else np.ones_like(y)
    # Scale columns for conditioning; undo afterwards.
    scale = np.maximum(np.abs(a).max(axis=0), 1e-30)
    aw = a / scale * w[:, None]
    yw = y * w
    if nonneg:
        sol, _ = nnls(aw, yw, maxiter=50 * aw.shape[1])
    else:
        sol = np.linalg.lstsq(aw, yw, rcond=None)[0]
    sol = sol / scale
    if intercept:
        return LinearFit(list(sol[:-1]), float(sol[-1]))
    return LinearFit(list(sol), 0.0)


@dataclass
class LocalCorrection:
    """A multiplicative correction learned from neighbours: ``factor(z) = exp(weighted mean of log ratios)``
    of the ``k`` nearest training points in standardised shape space, weighted by ``exp(-d^2 / 2 h^2)``.

    Far from every training point the weights vanish and the factor tends to 1 (the linear model alone).
    """

    points: np.ndarray
    log_ratio: np.ndarray
    mu: np.ndarray
    sd: np.ndarray
    k: int = 5
    bandwidth: float = 0.75
    prior_weight: float = 0.05

    @classmethod
    def fit(cls, z: np.ndarray, log_ratio: np.ndarray, k: int = 5, bandwidth: float = 0.75) -> "LocalCorrection":
        z = np.atleast_2d(np.asarray(z, float))
        mu = z.mean(axis=0)
        sd = z.std(axis=0)
        sd = np.where(sd > 1e-9, sd, 1.0)
        return cls((z - mu) / sd, np.asarray(log_ratio, float), mu, sd, k, bandwidth)

    def factor(self, z: np.ndarray) -> float:
        if len(self.log_ratio) == 0:
            return 1.0
        q = (np.asarray(z, float) - self.mu) / self.sd
        d2 = ((self.points - q) ** 2).sum(axis=1)
        idx = np.argsort(d2)[: self.k]
        w = np.exp(-d2[idx] / (2 * self.bandwidth ** 2))
        return float(np.exp((w * self.log_ratio[idx]).sum() / (w.sum() + self.prior_weight)))

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "bandwidth": self.bandwidth, "prior_weight": self.prior_weight,
                "mu": self.mu.tolist(), "sd": self.sd.tolist(),
                "points": self.points.tolist(), "log_ratio": self.log_ratio.tolist()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LocalCorrection":
        return cls(np.asarray(d["points"], float).reshape(len(d["log_ratio"]), -1), np.asarray(d["log_ratio"], float),
                   np.asarray(d["mu"], float), np.asarray(d["sd"], float), int(d["k"]), float(d["bandwidth"]),
                   float(d.get("prior_weight", 0.05)))


def r_squared(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination of ``pred`` against ``y``."""
    y = np.asarray(y, float)
    ss = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - np.asarray(pred, float)) ** 2).sum() / ss) if ss > 0 else 1.0


def ape(pred: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Absolute percentage errors |pred - measured| / measured (as fractions)."""
    m = np.asarray(measured, float)
    return np.abs(np.asarray(pred, float) - m) / np.maximum(m, 1e-12)


@dataclass
class ErrorSummary:
    """Share of predictions within +-10% and +-20%, and the median absolute percentage error.

    A prediction within ``abs_tol_ms`` of the measurement counts as within any percentage."""

    n: int
    within_10: float
    within_20: float
    median_ape: float
    abs_tol_ms: float = 0.05
    worst: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"n": self.n, "within_10pct": round(self.within_10, 4), "within_20pct": round(self.within_20, 4),
                "median_ape": round(self.median_ape, 4), "abs_tol_ms": self.abs_tol_ms, "worst": self.worst}


def summarise_errors(pred_ms, measured_ms, labels=None, abs_tol_ms: float = 0.05, worst: int = 5) -> ErrorSummary:
    """Error figures of predictions against measurements (see :class:`ErrorSummary`)."""
    p = np.asarray(pred_ms, float)
    m = np.asarray(measured_ms, float)
    if len(p) == 0:
        return ErrorSummary(0, float("nan"), float("nan"), float("nan"), abs_tol_ms)
    e = ape(p, m)
    close = np.abs(p - m) <= abs_tol_ms
    e_eff = np.where(close, 0.0, e)
    order = np.argsort(-e_eff)[:worst]
    labels = list(labels) if labels is not None else [str(i) for i in range(len(p))]
    return ErrorSummary(len(p), float(np.mean(e_eff <= 0.10)), float(np.mean(e_eff <= 0.20)),
                        float(np.median(e_eff)), abs_tol_ms,
                        [{"what": labels[i], "predicted_ms": round(float(p[i]), 4),
                          "measured_ms": round(float(m[i]), 4), "ape": round(float(e[i]), 4)} for i in order
                         if e_eff[i] > 0.10])
