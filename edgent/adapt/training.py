"""Configuration maps for a device x edge pair, built from training traces and cached.

The map of the dynamic configurator is learned offline from bandwidth traces (:func:`build_config_map`). A
device that meets a new edge builds its map once from seeded synthetic traces of random piecewise-stationary
states in the paper's range (:func:`synthetic_training_traces`) and its own latency tables, and keeps it in
a cache keyed by everything it depends on (the tables, the requirement, the RTT, the seed), so that the next
start loads it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgent.adapt.config_map import Candidates, ConfigurationMap, MapReward, StateGrid, build_config_map
from edgent.adapt.detectors import make_detector
from edgent.adapt.traces import BandwidthTrace, synthetic_trace
from edgent.errors import EdgentError

#: the range of the synthetic training states (bit/s)
TRAINING_MIN_BPS = 0.04e6
TRAINING_MAX_BPS = 2.5e6


def synthetic_training_traces(seed: int, n: int = 24) -> list[BandwidthTrace]:
    """``n`` seeded traces (seeds ``seed + 1000 + i``) of 5-9 states each, means log-uniform in
    [:data:`TRAINING_MIN_BPS`, :data:`TRAINING_MAX_BPS`], 5-14 s per state, log-std 0.05-0.3."""
    rng = np.random.default_rng(seed + 1000)
    out = []
    for i in range(n):
        k = int(rng.integers(5, 10))
        means = np.exp(rng.uniform(np.log(TRAINING_MIN_BPS), np.log(TRAINING_MAX_BPS), k))
        lens = [int(v) for v in rng.integers(5, 15, k)]
        stds = [float(v) for v in rng.uniform(0.05, 0.3, k)]
        out.append(synthetic_trace(means, lens, stds, 1.0, seed + 1000 + i, name=f"train-synthetic-{i}").trace)
    return out


def cache_dir() -> Path:
    """Where edgent caches what a device builds for itself: ``$EDGENT_CACHE`` or ``~/.cache/edgent``."""
    return Path(os.environ.get("EDGENT_CACHE") or Path.home() / ".cache" / "edgent")


def map_for(cands: Candidates, deadline_ms: float, rtt_ms: float, seed: int = 0, period_s: float = 0.5,
            cache: Path | None = None, built_by: str = "edgent run") -> tuple[ConfigurationMap, str]:
    """The BOCPD configuration map for these candidates and requirement: loaded from the cache (``cache`` or
    :func:`cache_dir` ``/maps``) when built before, else built from :func:`synthetic_training_traces` and
    saved there. Returns the map and a sentence saying which."""
    key = hashlib.sha256(json.dumps({"tables": [t.to_json() for t in cands.tables], "deadline_ms": deadline_ms,
                                     "rtt_ms": rtt_ms, "seed": seed, "period_s": period_s},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = (cache or cache_dir()) / "maps"
    path = folder / f"{cands.model}-{key}.json"
    if path.is_file():
        try:
            return ConfigurationMap.load(path), f"configuration map loaded from {path}"
        except (EdgentError, ValueError, KeyError, OSError):
            pass  # a damaged cache entry: build it again
    meta: dict[str, Any] = {"detector": "bocpd", "built_by": built_by, "training": f"24 synthetic traces, seed {seed}"}
    m = build_config_map(synthetic_training_traces(seed), cands, deadline_ms, lambda: make_detector("bocpd"),
                         StateGrid(), MapReward(), period_s, rtt_ms, 2.0, meta, smooth_bins=1)
    folder.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return m, f"configuration map built from 24 synthetic traces and saved to {path}"
