"""Bayesian online change point detection (Adams and MacKay, 2007) over log-throughput samples.

Model: between change points, log-throughput samples ``x`` are i.i.d. Normal with unknown mean and variance, with a
Normal-Gamma prior ``(mu0, kappa0, alpha0, beta0)``; the predictive of the next sample under a run of length ``r`` is
a Student-t with ``2 alpha_r`` degrees of freedom, location ``mu_r`` and squared scale
``beta_r (kappa_r + 1) / (alpha_r kappa_r)``. Change points arrive with a constant hazard ``H`` (expected run
``1 / H`` samples). After each sample the run-length posterior is updated::

    growth[r + 1] = P[r] * pred_r(x) * (1 - H)
    change[0]     = sum_r P[r] * pred_r(x) * H

**Truncation** (ours): run lengths stop at ``max_run``; the mass that would grow past it stays in the last bin, whose
statistics are those of the last ``max_run`` samples (a sliding window). Each update therefore costs
``O(max_run)`` whatever the length of the stream, and because ``kappa_r`` and ``alpha_r`` depend on ``r`` only, the
Student-t constants are precomputed per bin; an update is a handful of numpy operations on ``max_run + 1`` floats.

**Detection** (ours): a change is declared when the most probable run length falls (it grows by one per sample while
the state holds); the change point is placed ``r*`` samples back, where ``r*`` is the new most probable run length.
The **state** is the posterior of the run ``r*``: the mean of log-throughput and its spread (the posterior expected
standard deviation ``sqrt(beta / alpha)``), over the samples since the last change point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln

from edgent.errors import ConfigError

MIN_RATE_BPS = 1e3  # floor before taking the log: traces hold zero-throughput samples (outages)


@dataclass(frozen=True)
class BandwidthState:
    """What the detector believes about the bandwidth now: log-throughput (natural log of Mbit/s) statistics over
    the samples since the last change point."""

    mean_log_mbps: float
    std_log: float
    run_samples: int
    samples_seen: int
    last_log_mbps: float = math.nan

    @property
    def mean_rate_bps(self) -> float:
        """Geometric mean rate of the current state in bit/s."""
        return math.exp(self.mean_log_mbps) * 1e6

    def conservative_rate_bps(self, z: float = 1.0) -> float:
        """A rate the bandwidth stays above most of the time in this state: ``exp(mean - z * std)``."""
        return math.exp(self.mean_log_mbps - z * self.std_log) * 1e6


def log_mbps(rate_bps: float) -> float:
    """The detectors' sample scale: natural log of the rate in Mbit/s, floored at ``MIN_RATE_BPS``."""
    return math.log(max(rate_bps, MIN_RATE_BPS) * 1e-6)


@dataclass(frozen=True)
class BocpdConfig:
    """Prior and hazard of :class:`Bocpd`. Defaults suit log-throughput of mobile links sampled about once a
    second: a state lasts about 100 samples on average (``hazard``), and the prior standard deviation of
    log-throughput within a state is about ``sqrt(beta0 / alpha0)`` = 0.25 (i.e. +-25 %)."""

    hazard: float = 1 / 100
    max_run: int = 100
    mu0: float = 0.0
    kappa0: float = 0.1
    alpha0: float = 2.0
    beta0: float = 0.125

    def __post_init__(self) -> None:
        if not 0 < self.hazard < 1:
            raise ConfigError(f"BOCPD hazard must be in (0, 1), got {self.hazard}")
        if self.max_run < 2:
            raise ConfigError(f"BOCPD max_run must be >= 2, got {self.max_run}")
        if min(self.kappa0, self.alpha0, self.beta0) <= 0:
            raise ConfigError("BOCPD prior kappa0, alpha0 and beta0 must be > 0")


class Bocpd:
    """Online change point detector over throughput samples; ``update(rate_bps) -> bool`` (a change detected),
    ``state`` (the current :class:`BandwidthState`), ``run_length_probs`` (the posterior, for inspection)."""

    def __init__(self, config: BocpdConfig | None = None) -> None:
        self.config = c = config or BocpdConfig()
        n = c.max_run + 1
        r = np.arange(n, dtype=np.float64)
        kappa = c.kappa0 + r
        alpha = c.alpha0 + r / 2
        # per-bin constants of the Student-t predictive (they depend on r only)
        self._k1 = kappa / (kappa + 1)
        self._two_over_k1 = 2.0 / self._k1
        self._one_minus_k1 = 1.0 - self._k1
        self._half_k1 = 0.5 * self._k1
        self._d, self._d2, self._v, self._t = (np.empty(n) for _ in range(4))
        self._half_a = alpha + 0.5
        self._const = gammaln(alpha + 0.5) - gammaln(alpha) - 0.5 * math.log(math.pi)
        self._alpha = alpha
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next sample starts a run."""
        n = self.config.max_run + 1
        self._mu = np.full(n, self.config.mu0)
        self._beta = np.full(n, self.config.beta0)
        self._p = np.zeros(n)
        self._p[0] = 1.0
        self._map_run = 0
        self._seen = 0
        self._last_x = math.nan
        self.last_change_sample: int | None = None

    @property
    def run_length_probs(self) -> np.ndarray:
        """Posterior over run lengths ``0..max_run`` (the last bin: ``>= max_run``)."""
        return self._p.copy()

    @property
    def map_run_length(self) -> int:
        return self._map_run

    def update(self, rate_bps: float) -> bool:
        """Feed one throughput sample (bit/s); return True when it reveals a change point."""
        return self.update_log(log_mbps(rate_bps))

    def update_log(self, x: float) -> bool:
        """Feed one sample already on the log scale (natural log of Mbit/s)."""
        mu, beta, d, d2, v, t = self._mu, self._beta, self._d, self._d2, self._v, self._t
        np.subtract(x, mu, out=d)
        np.multiply(d, d, out=d2)
        np.multiply(beta, self._two_over_k1, out=v)  # nu * scale^2 = 2 beta (kappa + 1) / kappa
        # log Student-t predictive of x under every run length
        np.divide(d2, v, out=t)
        np.log1p(t, out=t)
        np.multiply(t, self._half_a, out=t)
        np.log(v, out=v)
        np.multiply(v, 0.5, out=v)
        np.add(v, t, out=t)
        np.subtract(self._const, t, out=t)  # t = log pred
        t -= t.max()
        np.exp(t, out=t)
        p = self._p
        np.multiply(p, t, out=t)  # joint (unnormalised)
        change = self.config.hazard * t.sum()
        # shift by one run length; the last bin keeps the mass that grows past max_run
        last = t[-1] + t[-2]
        p[1:-1] = t[:-2]
        p[-1] = last
        p *= 1.0 - self.config.hazard
        p[0] = change
        p /= p.sum()
        # posterior statistics after seeing x, shifted the same way (bin r+1 <- bin r updated with x)
        np.multiply(d, self._one_minus_k1, out=v)  # (kappa mu + x) / (kappa + 1) - mu
        mu[1:] = mu[:-1] + v[:-1]
        mu[0] = self.config.mu0
        np.multiply(d2, self._half_k1, out=d2)
        beta[1:] = beta[:-1] + d2[:-1]
        beta[0] = self.config.beta0
        self._seen += 1
        self._last_x = x
        prev = self._map_run
        self._map_run = int(p.argmax())
        changed = self._map_run < prev  # the most probable run length fell: a new state
        if changed:
            self.last_change_sample = self._seen - self._map_run
        return changed

    @property
    def state(self) -> BandwidthState:
        """Mean and spread of log-throughput over the run since the last change point (the MAP run length)."""
        r = self._map_run
        if r == 0:  # only the prior: nothing seen since the change
            r = min(1, self._seen)
        return BandwidthState(
            mean_log_mbps=float(self._mu[r]),
            std_log=float(math.sqrt(self._beta[r] / self._alpha[r])),
            run_samples=r,
            samples_seen=self._seen,
            last_log_mbps=self._last_x,
        )
