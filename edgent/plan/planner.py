"""The static configurator: pick the exit point and partition point that meet a deadline with the best accuracy.

For a link (uplink/downlink rate, round-trip time) and a latency requirement, Edgent evaluates every
(exit, partition) pair of a :class:`~edgent.plan.table.LatencyTable`. The latency of exit ``i`` cut at point ``p``
(device runs units ``[0, p)``, edge runs ``[p, N_i)``) is::

    device(i, p) + edge(i, p)                                                 compute, from prefix sums
                                                                              (+ a per-call constant per part)
    + [p < N_i] * ( bytes(i, p) * 8 / uplink + result_bytes * 8 / downlink     transfer
                    + rtt + 2 * fixed + per_byte * (bytes(i, p) + result)        round trip, (de)serialization
                    + edge_queue )                                               queueing at a shared edge

Nothing crosses the link at ``p = N_i`` (device only), so no transfer, round trip or serialization is paid there.
With a shaper's burst on the link (``Link.burst_bytes``) or the transport's bytes counted
(``OverheadModel.framing``), each transfer is ``max(wire_bytes - burst, 0) * 8 / rate``, where ``wire_bytes`` is
the payload plus the message's framing plus the headers of its packets (:meth:`WireFraming.wire_bytes`).
All pairs are evaluated at once with numpy on arrays precomputed per table (:class:`Planner`), so one decision
costs time linear in the number of pairs (tens of microseconds for alexnet-cifar10).

With codec variants in the table (:mod:`edgent.plan.codecs`) a configuration is a triple (exit, partition, codec):
each variant adds its own cells, priced with its bytes, its encode time on the device and decode time on the edge,
and its own accuracy (the exit's top-1 through that codec, from the model card). A raw-input table's own point 0
sends ``uint8`` pixels; a plan always names the codec it was priced with, and the runtime sends exactly that.

Selection (Edgent): the most accurate configuration that meets the deadline (with one codec, exits from the most
to the least accurate, the first whose best partition meets it); equal accuracy: the faster; equal times: the
first in table order (lowest exit and partition point, the table's own codec before the variants). When nothing
meets the deadline, the plan says why and falls back to the fastest configuration of its policy.

Policies (the paper's baselines share this interface, each a restriction of the search space):

- ``edgent``: every (exit, partition, codec);
- ``device``: the main exit, all on the device (``p = N``);
- ``edge``: the main exit, all on the edge (``p = 0``, the raw input sent with any input codec);
- ``neurosurgeon``: the main exit, best partition and codec (partitioning only);
- ``rightsize``: every exit, all on the device (right-sizing only).

The oracle is Edgent planning on measured instead of predicted unit times: :func:`oracle_plan` with a table from
:func:`~edgent.plan.table.table_from_measurements`.
"""

from __future__ import annotations

import functools
import math
from numbers import Integral
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgent.errors import ConfigError
from edgent.plan.link import Link
from edgent.plan.codecs import PIXEL_CODEC
from edgent.plan.overhead import OverheadModel
from edgent.plan.table import LatencyTable

POLICIES: tuple[str, ...] = ("edgent", "device", "edge", "neurosurgeon", "rightsize")
BITS_PER_BYTE = 8


@dataclass(frozen=True)
class LatencyBreakdown:
    """Predicted end-to-end latency of one configuration, in ms, by where the time goes."""

    device_ms: float
    upload_ms: float
    edge_ms: float
    download_ms: float
    rtt_ms: float
    serialization_ms: float
    queue_ms: float
    total_ms: float

    def bottleneck(self) -> tuple[str, float]:
        """The largest part (name without ``_ms``, time in ms)."""
        parts = {k[:-3]: v for k, v in asdict(self).items() if k != "total_ms"}
        name = max(parts, key=parts.__getitem__)
        return name, parts[name]


@dataclass(frozen=True)
class Plan:
    """A planning decision: run exit ``exit`` cut at ``partition`` (device runs units ``[0, partition)``).

    ``feasible`` says whether ``predicted_ms <= deadline_ms``; when it is not, ``reason`` says why and ``fallback``
    is true: the plan is then the fastest configuration of its policy, served anyway.
    """

    exit: int
    partition: int
    codec: str
    feasible: bool
    accuracy: float
    predicted_ms: float
    breakdown: LatencyBreakdown | None
    policy: str
    reason: str
    fallback: bool
    deadline_ms: float = math.nan
    model: str = ""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["breakdown"] = None if self.breakdown is None else asdict(self.breakdown)
        return d

    @classmethod
    def fixed(cls, exit: int, partition: int, codec: str = "float32", predicted_ms: float = math.nan,
              policy: str = "fixed") -> "Plan":
        """A plan chosen outside the planner (a fixed configuration, a map lookup): what to run, with the
        prediction when one is known; no breakdown, deadline or feasibility verdict."""
        return cls(exit=int(exit), partition=int(partition), codec=str(codec), feasible=True, accuracy=math.nan,
                   predicted_ms=float(predicted_ms), breakdown=None, policy=policy, reason="", fallback=False)

    def predicted_stages_ms(self) -> dict[str, float] | None:
        """The prediction as recorded per request: the breakdown by stage, or just the total, or None."""
        if self.breakdown is not None:
            return {k: round(float(v), 4) for k, v in asdict(self.breakdown).items()}
        return None if math.isnan(self.predicted_ms) else {"total_ms": round(self.predicted_ms, 4)}


class Planner:
    """Plans for one :class:`LatencyTable`; precomputes flat arrays over all (exit, partition, codec) triples once
    so that each :meth:`plan` is a handful of vector operations over them (see [Note: exact search] below)."""

    # [Note: exact search]
    # Every triple's latency is affine in 1/uplink and 1/downlink with coefficients fixed per table (compute,
    # encode and decode times, bytes), so the arrays below are built once per table and each decision evaluates
    # all triples with a few numpy operations, then picks by the rule of the module docstring over the whole
    # candidate set (max accuracy among the feasible, then min latency, then the lowest index). No triple is
    # pruned, so the search is exact; it equals the brute force over (exit, partition, codec) (a property test).

    def __init__(self, table: LatencyTable, overhead: OverheadModel | None = None) -> None:
        self.table = table
        self.overhead = overhead or OverheadModel()
        exits, points, dev, edge, tx, res, cross, codec, acc = [], [], [], [], [], [], [], [], []
        names = list(table.codecs)
        code = {c: i for i, c in enumerate(names)}
        suffix: dict[int, np.ndarray] = {}
        for e in table.exits:
            n = e.num_units
            g = np.concatenate([[0.0], np.cumsum(e.edge_unit_ms, dtype=float)])
            pts = np.arange(n + 1)
            suffix[e.exit] = g[-1] - g + e.edge_part_ms * (pts < n)
            exits.append(np.full(n + 1, e.exit))
            points.append(pts)
            dev.append(table.device_calls_ms(e.exit))
            # the edge runs units [p, N) (suffix sums), and preprocesses the raw input sent at point 0
            edge.append(suffix[e.exit] + table.edge_preprocess_ms * ((pts == 0) & table.raw_input))
            tx.append(np.asarray(e.transfer_bytes, dtype=float))
            res.append(np.full(n + 1, float(e.result_bytes)))
            cross.append((pts < n).astype(float))  # anything crosses the link unless device only
            codec.append(np.where(pts == 0, code[table.input_codec], code[table.codec]))
            acc.append(np.full(n + 1, e.accuracy))
        for v in table.variants:
            pixels = PIXEL_CODEC.fullmatch(v.codec) is not None
            for e, pts_v, tx_v, enc_v, dec_v, a in zip(table.exits, v.points, v.transfer_bytes, v.encode_ms,
                                                        v.decode_ms, v.accuracy):
                if not pts_v:
                    continue
                pts = np.asarray(pts_v, dtype=int)
                calls = table.device_calls_ms(e.exit)[pts]
                if pixels:  # the device sends the raw input as it is: no preprocessing, no units
                    calls = np.zeros(len(pts))
                exits.append(np.full(len(pts), e.exit))
                points.append(pts)
                dev.append(calls + np.asarray(enc_v, dtype=float))
                edge.append(suffix[e.exit][pts] + np.asarray(dec_v, dtype=float)
                            + table.edge_preprocess_ms * ((pts == 0) & pixels))
                tx.append(np.asarray(tx_v, dtype=float))
                res.append(np.full(len(pts), float(e.result_bytes)))
                cross.append(np.ones(len(pts)))
                codec.append(np.full(len(pts), code[v.codec]))
                acc.append(np.full(len(pts), float(a)))
        self.codec_names = tuple(names)
        self.pair_exit = np.concatenate(exits)
        self.pair_point = np.concatenate(points)
        self.pair_codec = np.concatenate(codec)
        self.pair_accuracy = np.concatenate(acc)
        self.device_ms = np.concatenate(dev)
        self.edge_ms = np.maximum(np.concatenate(edge), 0.0)
        self.compute_ms = self.device_ms + self.edge_ms
        self.tx_bytes = np.concatenate(tx)
        self.result_bytes = np.concatenate(res)
        self.crosses = np.concatenate(cross)
        self._result_cross = self.result_bytes * self.crosses
        self.accuracy = np.array([e.accuracy for e in table.exits], dtype=float)
        offsets = np.concatenate([[0], np.cumsum([e.num_units + 1 for e in table.exits])])
        self._offsets = offsets
        self._index = {(int(x), int(p), names[int(c)]): j
                       for j, (x, p, c) in enumerate(zip(self.pair_exit, self.pair_point, self.pair_codec))}
        main = len(table.exits)
        last = np.array([table.exits[int(x) - 1].num_units for x in self.pair_exit])
        at_n = self.pair_point == last
        is_main = self.pair_exit == main
        masks = {"edgent": np.ones(self.pair_exit.size, dtype=bool), "device": is_main & at_n,
                 "edge": is_main & (self.pair_point == 0), "neurosurgeon": is_main, "rightsize": at_n}
        self._spaces: dict[str, np.ndarray | None] = {
            k: (None if m.all() else np.flatnonzero(m)) for k, m in masks.items()}

    @property
    def pairs(self) -> list[tuple[int, int]]:
        """The (exit, partition) of every triple, in the order of :meth:`totals` (the table's own codec first)."""
        return list(zip(self.pair_exit.tolist(), self.pair_point.tolist()))

    @property
    def triples(self) -> list[tuple[int, int, str]]:
        """Every (exit, partition, codec) configuration, in the order of :meth:`totals`."""
        names = self.codec_names
        return [(x, p, names[c]) for x, p, c in zip(self.pair_exit.tolist(), self.pair_point.tolist(),
                                                      self.pair_codec.tolist())]

    def index_of(self, exit: int, partition: int, codec: str | None = None) -> int:
        """Position of a configuration in :attr:`triples` (``codec`` None: the table's own codec)."""
        if codec is None:
            n = self.table.exit_costs(exit).num_units
            if isinstance(partition, bool) or not isinstance(partition, Integral) or not 0 <= partition <= n:
                raise ConfigError(f"partition point {partition!r} is out of range: exit {exit} has points "
                                  f"0..{n} (0 = edge only, {n} = device only)")
            return int(self._offsets[exit - 1] + partition)
        j = self._index.get((int(exit), int(partition), str(codec)))
        if j is None:
            n = self.table.exit_costs(exit).num_units
            if int(partition) == n:  # device only sends nothing: every codec names the same configuration
                return int(self._offsets[exit - 1] + n)
            raise ConfigError(f"codec {codec!r} is not a candidate at exit {exit}, partition {partition} of "
                              f"{self.table.model!r} (codecs: {', '.join(self.codec_names)})")
        return j

    def totals(self, link: Link, *, edge_queue_ms: float = 0.0) -> np.ndarray:
        """Predicted total latency (ms) of every pair of :attr:`pairs` on ``link``."""
        ov = self.overhead
        const = link.rtt_ms + 2.0 * ov.fixed_ms_per_message + edge_queue_ms
        if link.burst_bytes or ov.framing.counted:  # the wire model (see the module docstring)
            fr = ov.framing
            transfer = (link.transfer_ms(fr.wire_bytes(self.tx_bytes, fr.request_bytes), link.uplink_bps)
                        + link.transfer_ms(fr.wire_bytes(self.result_bytes, fr.response_bytes), link.downlink_bps))
            return (self.compute_ms + self.crosses * (transfer + const)
                    + ov.per_byte_ms * (self.tx_bytes + self._result_cross))
        up = BITS_PER_BYTE * 1000.0 / link.uplink_bps + ov.per_byte_ms
        down = BITS_PER_BYTE * 1000.0 / link.downlink_bps + ov.per_byte_ms
        return self.compute_ms + self.tx_bytes * up + self._result_cross * down + self.crosses * const

    def predict(self, link: Link, exit: int, partition: int, *, edge_queue_ms: float = 0.0,
                codec: str | None = None) -> LatencyBreakdown:
        """The latency breakdown of exit ``exit`` cut at ``partition`` with ``codec`` (None: the table's own) on
        ``link``."""
        return self._breakdown(self.index_of(exit, partition, codec), link, edge_queue_ms)

    def _breakdown(self, j: int, link: Link, edge_queue_ms: float) -> LatencyBreakdown:
        dev = float(self.device_ms[j])
        edge = float(self.edge_ms[j])
        if not self.crosses[j]:
            return LatencyBreakdown(dev, 0.0, edge, 0.0, 0.0, 0.0, 0.0, dev + edge)
        tx = float(self.tx_bytes[j])
        res = float(self.result_bytes[j])
        ov = self.overhead
        if link.burst_bytes or ov.framing.counted:
            fr = ov.framing
            upload = link.transfer_ms(fr.wire_bytes(tx, fr.request_bytes), link.uplink_bps)
            download = link.transfer_ms(fr.wire_bytes(res, fr.response_bytes), link.downlink_bps)
        else:
            upload = tx * BITS_PER_BYTE * 1000.0 / link.uplink_bps
            download = res * BITS_PER_BYTE * 1000.0 / link.downlink_bps
        ser = 2.0 * ov.fixed_ms_per_message + ov.per_byte_ms * (tx + res)
        total = dev + upload + edge + download + link.rtt_ms + ser + edge_queue_ms
        return LatencyBreakdown(dev, upload, edge, download, float(link.rtt_ms), ser, float(edge_queue_ms), total)

    def plan(self, link: Link, deadline_ms: float, policy: str = "edgent", *,
             edge_queue_ms: float = 0.0) -> Plan:
        """The best configuration of ``policy`` for ``link`` and the latency requirement ``deadline_ms``."""
        if policy not in self._spaces:
            raise ConfigError(f"unknown policy {policy!r}; known policies: {', '.join(POLICIES)}")
        if not deadline_ms > 0:
            raise ConfigError(f"the deadline must be a positive time in ms, got {deadline_ms!r}")
        if not edge_queue_ms >= 0:
            raise ConfigError(f"the edge queueing delay must be >= 0 ms, got {edge_queue_ms!r}")
        total = self.totals(link, edge_queue_ms=edge_queue_ms)
        idx = self._spaces[policy]
        tot = total if idx is None else total[idx]
        acc = self.pair_accuracy if idx is None else self.pair_accuracy[idx]
        ok = tot <= deadline_ms
        feasible = bool(ok.any())
        if feasible:  # the most accurate feasible triple; ties: the fastest, then the first
            key = np.where(ok, acc, -np.inf)
            k = int(np.argmin(np.where(key == key.max(), tot, np.inf)))
        else:
            k = int(np.argmin(tot))
        j = k if idx is None else int(idx[k])
        bd = self._breakdown(j, link, edge_queue_ms)
        ex = int(self.pair_exit[j])
        reason = "" if feasible else self._reason(policy, ex, int(self.pair_point[j]), bd, deadline_ms)
        return Plan(exit=ex, partition=int(self.pair_point[j]), codec=self.codec_names[int(self.pair_codec[j])],
                    feasible=feasible, accuracy=float(self.pair_accuracy[j]), predicted_ms=bd.total_ms,
                    breakdown=bd, policy=policy, reason=reason, fallback=not feasible,
                    deadline_ms=float(deadline_ms), model=self.table.model)

    def _reason(self, policy: str, exit: int, point: int, bd: LatencyBreakdown, deadline_ms: float) -> str:
        n = self.table.exits[exit - 1].num_units
        where = "device only" if point == n else "edge only" if point == 0 else f"partition {point}"
        part, part_ms = bd.bottleneck()
        return (f"no configuration of policy {policy!r} meets the deadline: the fastest possible, exit {exit} "
                f"({where}), takes {bd.total_ms:.1f} ms > deadline {deadline_ms:.1f} ms; its bottleneck is "
                f"{part} ({part_ms:.1f} ms); falling back to it")


@functools.lru_cache(maxsize=32)
def _planner(table: LatencyTable, overhead: OverheadModel | None) -> Planner:
    return Planner(table, overhead)


def predict_latency(table: LatencyTable, link: Link, exit: int, partition: int, *, edge_queue_ms: float = 0.0,
                    overhead: OverheadModel | None = None, codec: str | None = None) -> LatencyBreakdown:
    """Predicted latency breakdown of exit ``exit`` cut at ``partition`` with ``codec`` (see :class:`Planner`)."""
    return _planner(table, overhead).predict(link, exit, partition, edge_queue_ms=edge_queue_ms, codec=codec)


def plan(table: LatencyTable, link: Link, deadline_ms: float, policy: str = "edgent", *,
         edge_queue_ms: float = 0.0, overhead: OverheadModel | None = None) -> Plan:
    """Plan with ``policy`` on ``table`` (a cached :class:`Planner` per table; use one directly in hot loops)."""
    return _planner(table, overhead).plan(link, deadline_ms, policy, edge_queue_ms=edge_queue_ms)


def oracle_plan(measured_table: LatencyTable, link: Link, deadline_ms: float, *, edge_queue_ms: float = 0.0,
                overhead: OverheadModel | None = None) -> Plan:
    """The oracle baseline: Edgent's search on a table of *measured* unit times (and the true link)."""
    return replace(plan(measured_table, link, deadline_ms, "edgent", edge_queue_ms=edge_queue_ms,
                        overhead=overhead), policy="oracle")
