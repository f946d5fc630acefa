"""The configuration map: bandwidth state -> best configuration (exit, partition, codec), built offline from traces.

**States.** A :class:`~edgent.adapt.bocpd.BandwidthState` (mean and spread of log-throughput since the last change
point) falls in one cell of a :class:`StateGrid`: uniform bins of the mean (natural log of Mbit/s, default 0.1
wide, i.e. ~10 % of bandwidth) times a few bins of the spread. The cell index is arithmetic on the mean plus a
bisection over a handful of spread edges, and the map is a flat integer array over cells: a lookup costs constant
time whatever the map holds.

**Building** (:func:`build_config_map`). Requests are issued along each training trace at a fixed period. Before
each request the change detector has seen the throughput samples measured so far (the same online detector the
configurator runs); its state gives the request's cell. Every candidate configuration is then evaluated on that
request with the bandwidth the trace really gives during its transfers (:meth:`Candidates.latency_on_trace`,
integrating the rate over time), so each cell collects, per candidate, how its requests would have fared.

**Reward** (explicit, ours; :class:`MapReward`): per request ``W * met + accuracy + 1e-4 * speed``, with
``W >= 1`` so that on one request meeting the deadline comes first, then accuracy, then throughput
(``speed = 1 - latency / deadline``); a cell takes the configuration with the largest sum over its requests. ``W``
is the smallest weight for which the map meets the deadline on the training traces for ``met_target`` (99.5 %) of
the requests that some configuration could serve in time: misses are spent only where they buy the most accuracy.

Cells seen on fewer than ``min_requests`` requests are left empty; the configurator falls back to the static planner
for them.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from edgent.jsonio import write_json_file
from edgent.adapt.bocpd import BandwidthState
from edgent.adapt.detectors import ChangeDetector
from edgent.adapt.traces import BandwidthTrace
from edgent.errors import ConfigError, DataError
from edgent.plan.link import Link
from edgent.plan.overhead import OverheadModel
from edgent.plan.planner import Planner
from edgent.plan.table import LatencyTable

MAP_VERSION = 1


@dataclass(frozen=True, order=True)
class Configuration:
    """What the device runs for one request: exit (1-based), partition point, codec of the intermediate tensor."""

    exit: int
    partition: int
    codec: str

    def as_tuple(self) -> tuple[int, int, str]:
        return (self.exit, self.partition, self.codec)


class Candidates:
    """Every (codec, exit, partition) configuration of one model, as flat arrays, from one latency table per codec.

    The latency of a configuration on a trace is computed from the same terms as the planner's formula
    (:mod:`edgent.plan.planner`), but the upload and the result's return take the time the trace's rate needs to
    carry their bytes from the moment they start, instead of ``bytes / one rate``.
    """

    def __init__(self, tables: Sequence[LatencyTable], overhead: OverheadModel | None = None) -> None:
        if not tables:
            raise ConfigError("Candidates need at least one latency table")
        names = {t.model for t in tables}
        if len(names) != 1 or len({t.codec for t in tables}) != len(tables):
            raise ConfigError("Candidates take one table per codec, all of the same model (a table's variants "
                              "add further codecs)")
        self.tables = tuple(tables)
        self.overhead = overhead or OverheadModel()
        self.planners = tuple(Planner(t, self.overhead) for t in tables)
        p = self.planners
        self.exit = np.concatenate([q.pair_exit for q in p])
        self.partition = np.concatenate([q.pair_point for q in p])
        names: list[str] = []
        for q in p:
            names += [c for c in q.codec_names if c not in names]
        self.codecs = tuple(names)
        self.codec_index = np.concatenate([np.array([names.index(q.codec_names[c]) for c in q.pair_codec.tolist()],
                                                    dtype=int) for q in p])
        self.device_ms = np.concatenate([q.device_ms for q in p])
        self.edge_ms = np.concatenate([q.edge_ms for q in p])
        self.tx_bytes = np.concatenate([q.tx_bytes for q in p])
        self.result_bytes = np.concatenate([q.result_bytes for q in p])
        self.crosses = np.concatenate([q.crosses for q in p]).astype(bool)
        self.accuracy = np.concatenate([q.pair_accuracy for q in p])
        self.configs = [Configuration(int(e), int(pt), self.codecs[int(c)])
                        for e, pt, c in zip(self.exit, self.partition, self.codec_index)]
        self._index: dict[Configuration, int] = {}
        for i, c in enumerate(self.configs):  # a configuration two tables share (the input) is the first's
            self._index.setdefault(c, i)
        # point 0 of a table sends its input codec (uint8 pixels for a raw-input table); a configuration naming
        # the table's own codec there (maps written before the codec was a planning dimension) means the same
        for q in p:
            if q.table.input_codec != q.table.codec:
                for e in q.table.exits:
                    alias = Configuration(e.exit, 0, q.table.codec)
                    if alias not in self._index:
                        self._index[alias] = self._index[Configuration(e.exit, 0, q.table.input_codec)]

    @property
    def model(self) -> str:
        return self.tables[0].model

    def __len__(self) -> int:
        return len(self.configs)

    def index(self, config: Configuration) -> int:
        try:
            return self._index[config]
        except KeyError:
            raise ConfigError(f"configuration {config} is not a candidate of {self.model!r} "
                              f"with codecs {self.codecs}") from None

    def latency_ms(self, link: Link, edge_queue_ms: float = 0.0) -> np.ndarray:
        """Latency (ms) of every candidate at a constant link (the planner's formula)."""
        return np.concatenate([q.totals(link, edge_queue_ms=edge_queue_ms) for q in self.planners])

    def latency_on_trace(self, trace: BandwidthTrace, start_s: np.ndarray, rtt_ms: float = 0.0,
                         edge_queue_ms: float = 0.0) -> np.ndarray:
        """Latency (ms) of every candidate for requests issued at ``start_s`` (shape ``(K,)``) on ``trace``:
        a ``(K, len(self))`` array. The device computes its units, encodes, uploads over the trace, the edge
        decodes, computes and encodes, the result returns over the trace (uplink and downlink share the trace's
        rate, the result is tiny); half the round-trip time is paid each way."""
        ov = self.overhead
        t0 = np.asarray(start_s, dtype=np.float64)[:, None]
        cr = self.crosses
        send_ms = self.device_ms + cr * (ov.fixed_ms_per_message + ov.per_byte_ms * self.tx_bytes)
        up_end = trace.transfer_end_s(t0 + send_ms / 1e3, self.tx_bytes * cr)
        edge_side_ms = cr * (rtt_ms / 2 + edge_queue_ms + ov.fixed_ms_per_message
                             + ov.per_byte_ms * self.result_bytes) + self.edge_ms
        down_end = trace.transfer_end_s(up_end + edge_side_ms / 1e3, self.result_bytes * cr)
        return (down_end - t0) * 1e3 + cr * (rtt_ms / 2)

    def best(self, latency_ms: np.ndarray, deadline_ms: float, allowed: np.ndarray | None = None) -> int:
        """Edgent's rule on known latencies: the most accurate candidate that meets the deadline (ties: the
        fastest); when none does, the fastest. ``allowed`` restricts the candidates (boolean mask)."""
        lat = latency_ms if allowed is None else np.where(allowed, latency_ms, np.inf)
        ok = lat <= deadline_ms
        if ok.any():
            acc = np.where(ok, self.accuracy, -np.inf)
            tied = np.flatnonzero(acc == acc.max())
            return int(tied[np.argmin(lat[tied])])
        return int(np.argmin(lat))

    def plan_static(self, rate_bps: float, deadline_ms: float, rtt_ms: float = 0.0, edge_queue_ms: float = 0.0,
                    policy: str = "edgent") -> int:
        """The static planner's choice (index) over all codecs for a constant ``rate_bps`` link: per codec
        :meth:`Planner.plan`, then the feasible one with the best accuracy (ties: fastest)."""
        link = Link(max(rate_bps, 1.0), max(rate_bps, 1.0), rtt_ms)
        best, best_key = 0, None
        offset = 0
        for q in self.planners:
            pl = q.plan(link, deadline_ms, policy, edge_queue_ms=edge_queue_ms)
            key = (pl.feasible, pl.accuracy if pl.feasible else 0.0, -pl.predicted_ms)
            if best_key is None or key > best_key:
                best, best_key = offset + q.index_of(pl.exit, pl.partition, pl.codec), key
            offset += q.pair_exit.size
        return best


@dataclass(frozen=True)
class StateGrid:
    """Discretisation of bandwidth states: ``n_mean`` uniform bins of the mean log-throughput (natural log of
    Mbit/s) from ``mean_min`` in steps of ``mean_step`` (values outside go to the end bins), times the spread bins
    cut at ``std_edges``, times (optional, ours; empty by default) bins of the latest sample's offset from the
    state's mean cut at ``last_edges`` (log units), which lets the map use the short-term correlation of real
    throughput that the state's i.i.d. model ignores."""

    mean_min: float = math.log(0.02)
    mean_step: float = 0.1
    n_mean: int = 90
    std_edges: tuple[float, ...] = (0.1, 0.2, 0.35, 0.6)
    last_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.mean_step <= 0 or self.n_mean < 1 or list(self.std_edges) != sorted(self.std_edges) \
                or list(self.last_edges) != sorted(self.last_edges):
            raise ConfigError("state grid: mean_step > 0, n_mean >= 1 and increasing std_edges and last_edges "
                              "are required")

    @property
    def n_std(self) -> int:
        return len(self.std_edges) + 1

    @property
    def n_last(self) -> int:
        return len(self.last_edges) + 1

    @property
    def n_cells(self) -> int:
        return self.n_mean * self.n_std * self.n_last

    def mean_bin(self, mean_log_mbps: float) -> int:
        return min(max(int((mean_log_mbps - self.mean_min) // self.mean_step), 0), self.n_mean - 1)

    def base_cell(self, state: BandwidthState) -> int:
        """The (mean, spread) part of the cell of ``state``."""
        return self.mean_bin(state.mean_log_mbps) * self.n_std + bisect.bisect_right(self.std_edges, state.std_log)

    def last_bin(self, state: BandwidthState) -> int:
        if not self.last_edges:
            return 0
        off = state.last_log_mbps - state.mean_log_mbps
        return bisect.bisect_right(self.last_edges, off if off == off else 0.0)

    def cell(self, state: BandwidthState) -> int:
        """The cell of ``state`` (constant time)."""
        return self.base_cell(state) * self.n_last + self.last_bin(state)

    def cells(self, mean_log_mbps: np.ndarray, std_log: np.ndarray, last_log_mbps: np.ndarray | None = None,
              ) -> np.ndarray:
        """Vectorised :meth:`cell`."""
        mean = np.asarray(mean_log_mbps, dtype=np.float64)
        mb = np.clip(np.floor((mean - self.mean_min) / self.mean_step), 0, self.n_mean - 1)
        sb = np.searchsorted(np.asarray(self.std_edges), np.asarray(std_log), side="right")
        base = mb.astype(np.int64) * self.n_std + sb
        if not self.last_edges or last_log_mbps is None:
            return (base * self.n_last).astype(np.int64)
        off = np.nan_to_num(np.asarray(last_log_mbps) - mean)
        lb = np.searchsorted(np.asarray(self.last_edges), off, side="right")
        return (base * self.n_last + lb).astype(np.int64)

    def describe_cell(self, cell: int) -> dict[str, float]:
        """Bounds of a cell: mean rate range (bit/s), spread range and latest-sample offset range (log units)."""
        base, lb = divmod(int(cell), self.n_last)
        m, s = divmod(base, self.n_std)
        lo = self.mean_min + m * self.mean_step
        edges = (0.0, *self.std_edges, math.inf)
        ledges = (-math.inf, *self.last_edges, math.inf)
        d = {"rate_lo_bps": math.exp(lo) * 1e6, "rate_hi_bps": math.exp(lo + self.mean_step) * 1e6,
             "std_lo": edges[s], "std_hi": edges[s + 1]}
        if self.last_edges:
            d.update(last_offset_lo=ledges[lb], last_offset_hi=ledges[lb + 1])
        return d


@dataclass(frozen=True)
class MapReward:
    """The reward of a configuration on one request, summed over a cell's requests::

        reward = W * met + accuracy + throughput_weight * (1 - min(latency, deadline) / deadline)

    with ``W >= 1`` (a met deadline outweighs any accuracy difference, accuracies being in [0, 1]) and
    ``throughput_weight`` below the smallest accuracy difference between exits (accuracy outweighs speed): on one
    request the order is strictly deadline, then accuracy, then throughput. Summed over many requests, ``W`` is
    the accuracy (summed over requests) that one missed deadline is worth. It is set once per map, as the
    smallest ``W`` for which the chosen configurations meet the deadline, on the training traces, for at least
    ``met_target`` of the requests that some configuration can serve in time (the oracle's); so the map spends
    at most ``1 - met_target`` of misses, where they buy the most accuracy. ``W = w_max`` is pure deadline-first.
    ``w_min < 1`` gives up the strict per-request order (for ablations only).
    """

    met_target: float = 0.995
    throughput_weight: float = 1e-4
    w_min: float = 1.0
    w_max: float = 1e6
    min_requests: int = 5

    def __post_init__(self) -> None:
        if not 0 < self.met_target <= 1 or not 0 < self.w_min <= self.w_max or self.throughput_weight < 0:
            raise ConfigError("map reward: met_target in (0, 1], 0 < w_min <= w_max, throughput_weight >= 0")

    def choose(self, met: np.ndarray, acc_sum: np.ndarray, speed_sum: np.ndarray, w: float) -> np.ndarray:
        """Best candidate per cell for weight ``w``; ``met``, ``acc_sum``, ``speed_sum``: (cells, candidates)."""
        return np.argmax(w * met + acc_sum + self.throughput_weight * speed_sum, axis=1)

    def solve(self, met: np.ndarray, count: np.ndarray, accuracy: np.ndarray, speed_sum: np.ndarray,
              servable: float) -> tuple[float, np.ndarray, float]:
        """The smallest ``W`` (bisection on a log scale) meeting ``met_target``; returns ``W``, the choice per cell
        and the training met share (of servable requests) it gives."""
        acc_sum = count[:, None] * accuracy[None, :]
        rows = np.arange(met.shape[0])

        def share(w: float) -> tuple[float, np.ndarray]:
            pick = self.choose(met, acc_sum, speed_sum, w)
            return float(met[rows, pick].sum() / max(servable, 1.0)), pick

        lo, hi = math.log(self.w_min), math.log(self.w_max)
        got, pick = share(self.w_min)
        if got >= self.met_target:
            return self.w_min, pick, got
        got_hi, pick_hi = share(self.w_max)
        if got_hi < self.met_target:
            return self.w_max, pick_hi, got_hi
        for _ in range(40):
            mid = (lo + hi) / 2
            if share(math.exp(mid))[0] >= self.met_target:
                hi = mid
            else:
                lo = mid
        w = math.exp(hi)
        got, pick = share(w)
        return w, pick, got


@dataclass
class ConfigurationMap:
    """Cell -> configuration, for one model, deadline and state grid; ``cell_config[c]`` indexes ``configs``
    (-1: no data for that state). ``info`` records how it was built."""

    model: str
    deadline_ms: float
    grid: StateGrid
    configs: list[Configuration]
    cell_config: np.ndarray
    cell_requests: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    tables: list[dict[str, Any]] = field(default_factory=list)  # the latency tables it was built with (JSON)

    def lookup(self, state: BandwidthState) -> Configuration | None:
        """The configuration of ``state``'s cell, or None when the map has none (constant time)."""
        return self.lookup_cell(self.grid.cell(state))

    def lookup_cell(self, cell: int) -> Configuration | None:
        k = int(self.cell_config[cell])
        return self.configs[k] if k >= 0 else None

    def candidates(self) -> "Candidates":
        """The :class:`Candidates` of the latency tables the map was built with (for the static fallback)."""
        if not self.tables:
            raise DataError("this configuration map holds no latency tables; pass the model's Candidates")
        return Candidates([LatencyTable.from_json(t) for t in self.tables])

    @property
    def filled_cells(self) -> int:
        return int((self.cell_config >= 0).sum())

    def to_json(self) -> dict[str, Any]:
        filled = np.flatnonzero(self.cell_config >= 0)
        return {
            "map_version": MAP_VERSION, "model": self.model, "deadline_ms": self.deadline_ms,
            "grid": {**asdict(self.grid), "std_edges": list(self.grid.std_edges),
                     "last_edges": list(self.grid.last_edges)},
            "configs": [asdict(c) for c in self.configs],
            "cells": [{"cell": int(c), "config": int(self.cell_config[c]), "requests": int(self.cell_requests[c]),
                       **self.grid.describe_cell(int(c))} for c in filled],
            "info": self.info,
            "tables": self.tables,
        }

    def save(self, path: str | Path) -> Path:
        """Write the map as JSON to ``path``."""
        return write_json_file(path, self.to_json())

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ConfigurationMap":
        try:
            if int(d["map_version"]) != MAP_VERSION:
                raise DataError(f"configuration map version {d['map_version']} is not {MAP_VERSION}; rebuild it "
                                "with `edgent map build`")
            g = d["grid"]
            grid = StateGrid(float(g["mean_min"]), float(g["mean_step"]), int(g["n_mean"]),
                             tuple(float(x) for x in g["std_edges"]),
                             tuple(float(x) for x in g.get("last_edges", ())))
            configs = [Configuration(int(c["exit"]), int(c["partition"]), str(c["codec"])) for c in d["configs"]]
            cell_config = np.full(grid.n_cells, -1, dtype=np.int64)
            cell_requests = np.zeros(grid.n_cells, dtype=np.int64)
            for c in d["cells"]:
                k = int(c["config"])
                if not 0 <= k < len(configs):
                    raise DataError(f"configuration map cell {c['cell']} names config {k}, which is not listed")
                cell_config[int(c["cell"])] = k
                cell_requests[int(c["cell"])] = int(c.get("requests", 0))
            return cls(str(d["model"]), float(d["deadline_ms"]), grid, configs, cell_config, cell_requests,
                       dict(d.get("info", {})), list(d.get("tables", [])))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(f"configuration map JSON is malformed ({exc!r}); rebuild it with `edgent map build`") \
                from None

    @classmethod
    def load(cls, path: str | Path) -> "ConfigurationMap":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"configuration map {path} does not exist; build one with `edgent map build`") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"configuration map {path}:{exc.lineno}: not JSON ({exc.msg})") from None
        return cls.from_json(d)


# -- replay helpers shared by the builder and the benchmark ------------------------------------------------------

def request_times(trace: BandwidthTrace, period_s: float, warmup_s: float = 0.0) -> np.ndarray:
    """Start times of requests issued every ``period_s`` from ``warmup_s`` to the end of one pass of ``trace``."""
    if not period_s > 0:
        raise ConfigError(f"request period must be > 0 s, got {period_s}")
    return np.arange(warmup_s, trace.end_s, period_s)


def replay_detector(trace: BandwidthTrace, detector: ChangeDetector, times_s: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Feed ``detector`` the trace's samples as they complete and read its state before each request at
    ``times_s``. Returns per request (mean_log, std_log, latest sample's log, changed since the previous request)
    and the sample indices where changes were detected (as the detector placed them)."""
    ends = trace.edges_s[1:]
    upto = np.searchsorted(ends, times_s, side="right")  # samples completed by each request
    means = np.empty(times_s.size)
    stds = np.empty(times_s.size)
    lasts = np.empty(times_s.size)
    changed = np.zeros(times_s.size, dtype=bool)
    cps: list[int] = []
    fed = 0
    rates = trace.rate_bps
    for k, n in enumerate(upto):
        ch = False
        while fed < n:
            if detector.update(float(rates[fed])):
                ch = True
                if detector.last_change_sample is not None:
                    cps.append(int(detector.last_change_sample))
            fed += 1
        st = detector.state
        means[k], stds[k], lasts[k], changed[k] = st.mean_log_mbps, st.std_log, st.last_log_mbps, ch
    return means, stds, lasts, changed, cps


def _smooth_mean_axis(a: np.ndarray, grid: StateGrid, k: int) -> np.ndarray:
    """Sum of ``a`` (per cell, optionally per candidate) over the cells within ``k`` mean bins of each cell (same
    spread and latest-sample bins); cells with no requests of their own stay empty."""
    per_mean = grid.n_cells // grid.n_mean
    shaped = a.reshape(grid.n_mean, per_mean, *a.shape[1:])
    c = np.cumsum(np.concatenate([np.zeros_like(shaped[:1]), shaped]), axis=0)
    idx = np.arange(grid.n_mean)
    lo, hi = np.clip(idx - k, 0, grid.n_mean), np.clip(idx + k + 1, 0, grid.n_mean)
    out = (c[hi] - c[lo]).reshape(a.shape)
    own = a if a.ndim == 1 else a.sum(axis=tuple(range(1, a.ndim)))
    mask = own > 0
    return np.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), out, 0)


def build_config_map(
    traces: Sequence[BandwidthTrace],
    candidates: Candidates,
    deadline_ms: float,
    detector_factory: Callable[[], ChangeDetector],
    grid: StateGrid | None = None,
    reward: MapReward | None = None,
    period_s: float = 0.5,
    rtt_ms: float = 0.0,
    warmup_s: float = 5.0,
    info: dict[str, Any] | None = None,
    smooth_bins: int = 0,
) -> ConfigurationMap:
    """Build a :class:`ConfigurationMap` from ``traces`` (see the module docstring for the method and reward)."""
    if not traces:
        raise ConfigError("building a configuration map needs at least one trace")
    grid = grid or StateGrid()
    reward = reward or MapReward()
    n_c = len(candidates)
    met = np.zeros((grid.n_cells, n_c))
    speed = np.zeros((grid.n_cells, n_c))
    count = np.zeros(grid.n_cells, dtype=np.int64)
    servable_cell = np.zeros(grid.n_cells)
    for tr in traces:
        times = request_times(tr, period_s, min(warmup_s, tr.end_s / 2))
        if times.size == 0:
            continue
        means, stds, lasts, _, _ = replay_detector(tr, detector_factory(), times)
        cells = grid.cells(means, stds, lasts)
        lat = candidates.latency_on_trace(tr, times, rtt_ms)
        ok = lat <= deadline_ms
        np.add.at(met, cells, ok.astype(float))
        np.add.at(speed, cells, 1.0 - np.minimum(lat, deadline_ms) / deadline_ms)
        np.add.at(count, cells, 1)
        np.add.at(servable_cell, cells, ok.any(axis=1).astype(float))
    if smooth_bins > 0:  # pool each cell's evidence with its neighbours along the mean axis
        met, speed, count, servable_cell = (_smooth_mean_axis(a, grid, smooth_bins)
                                            for a in (met, speed, count, servable_cell))
        count = count.astype(np.int64)
    filled = np.flatnonzero(count >= reward.min_requests)
    servable = int(servable_cell[filled].sum())  # requests of the cells the map fills that some config serves
    w, pick, train_share = reward.solve(met[filled], count[filled].astype(float), candidates.accuracy,
                                        speed[filled], float(servable))
    cell_config = np.full(grid.n_cells, -1, dtype=np.int64)
    cell_config[filled] = pick
    used = sorted({int(k) for k in cell_config if k >= 0})
    remap = {k: i for i, k in enumerate(used)}
    compact = np.array([remap.get(int(k), -1) for k in cell_config], dtype=np.int64)
    meta = {"traces": [t.name for t in traces], "period_s": period_s, "smooth_bins": smooth_bins, "rtt_ms": rtt_ms,
            "warmup_s": warmup_s,
            "reward": asdict(reward), "deadline_weight": w, "train_met_share_of_servable": train_share,
            "train_requests": int(count.sum()), "train_servable": servable, "codecs": list(candidates.codecs),
            **(info or {})}
    return ConfigurationMap(candidates.model, float(deadline_ms), grid, [candidates.configs[k] for k in used],
                            compact, count, meta, [t.to_json() for t in candidates.tables])
