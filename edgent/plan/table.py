"""The latency table: what every (exit, partition) configuration of one model costs, before the link is known.

A :class:`LatencyTable` holds, per exit, the predicted (or measured) time of each unit on the device and on the
edge, the bytes that cross the link at each partition point, and the size of the result. The planner combines it
with a :class:`~edgent.plan.link.Link` to get the latency of every configuration. Tables are built from a model and
two latency predictors (:func:`build_latency_table`) or from measured per-unit times
(:func:`table_from_measurements`, the oracle's table), and are saved as JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from numbers import Integral
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from edgent.jsonio import write_json_file
from edgent.errors import ConfigError, DataError
from edgent.plan.codecs import CodecVariant
from edgent.plan.transfer import check_codec, payload_bytes, raw_input_bytes

if TYPE_CHECKING:
    from edgent.model.chain import MultiExitChain
    from edgent.model.describe import UnitInfo

TABLE_VERSION = 1


class UnitLatencyPredictor(Protocol):
    """What the planner needs from a latency model: the time of one unit, in ms, at batch size 1."""

    def predict_unit_ms(self, unit: "UnitInfo") -> float: ...


@dataclass(frozen=True)
class ExitCosts:
    """Costs of the sub-model to one exit.

    Attributes:
        exit: the exit, 1-based.
        accuracy: top-1 accuracy of this exit (from the model card).
        device_unit_ms: device time of each of the ``N_i`` units inside one call (a part costs its units'
            times plus ``device_part_ms``; :func:`part_costs_ms`).
        edge_unit_ms: edge time of each of the ``N_i`` units inside one call.
        transfer_bytes: ``N_i + 1`` payload sizes sent device -> edge at point ``p`` (``p = 0``: the raw input as
            really sent; ``p = N_i``: 0, device only, nothing is sent).
        result_bytes: bytes of the answer sent edge -> device.
        device_part_ms: constant cost of one device call (``run_device``) when the device runs any unit (p > 0).
        edge_part_ms: constant cost of one edge call (``run_edge``) when the edge runs any unit (p < N_i).
    """

    exit: int
    accuracy: float
    device_unit_ms: tuple[float, ...]
    edge_unit_ms: tuple[float, ...]
    transfer_bytes: tuple[int, ...]
    result_bytes: int
    device_part_ms: float = 0.0
    edge_part_ms: float = 0.0

    def __post_init__(self) -> None:
        n = len(self.device_unit_ms)
        where = f"exit {self.exit}"
        if n < 1:
            raise ConfigError(f"{where}: the sub-model has no units")
        if len(self.edge_unit_ms) != n:
            raise ConfigError(f"{where}: {n} device unit times but {len(self.edge_unit_ms)} edge unit times")
        if len(self.transfer_bytes) != n + 1:
            raise ConfigError(f"{where}: {n} units need {n + 1} transfer sizes (points 0..{n}), "
                              f"got {len(self.transfer_bytes)}")
        for name in ("device_unit_ms", "edge_unit_ms"):
            for v in getattr(self, name):
                if not (math.isfinite(v) and v >= 0):
                    raise ConfigError(f"{where}: {name} holds {v!r}; unit times must be finite and >= 0 ms")
        for name in ("device_part_ms", "edge_part_ms"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"{where}: {name} is {v!r}; it must be finite and >= 0 ms")
        if any(b < 0 for b in self.transfer_bytes) or self.result_bytes < 0:
            raise ConfigError(f"{where}: byte counts must be >= 0")
        if self.transfer_bytes[-1] != 0:
            raise ConfigError(f"{where}: nothing crosses the link at the device-only point {n}, "
                              f"but transfer_bytes[{n}] = {self.transfer_bytes[-1]}")
        if not 0.0 <= self.accuracy <= 1.0:
            raise ConfigError(f"{where}: accuracy {self.accuracy!r} is outside [0, 1]")

    @property
    def num_units(self) -> int:
        """``N_i``: units of this sub-model; partition points are ``0..N_i``."""
        return len(self.device_unit_ms)


@dataclass(frozen=True)
class LatencyTable:
    """Per-exit costs of one model; ``codec`` is the codec the intermediate transfer sizes assume.

    Preprocessing (raw pixels to the model's input) runs where the input is first computed on: on the edge when
    point 0 sends the raw input (``raw_input``, e.g. uint8 pixels), else on the device before its units (at
    point 0 too, when it sends the model's float input). ``device_preprocess_ms`` / ``edge_preprocess_ms`` are
    its predicted cost on each side (timed as a call of its own after idle, so it carries its own start-up
    cost; ``device_part_ms`` counts only when the device runs units). :meth:`device_call_ms` is the one
    pricing of a device call: the planner, the client's fallback, the benchmarks and the demo all use it.

    ``variants`` are further codecs the planner may choose (:mod:`edgent.plan.codecs`): each adds its own
    (exit, partition) cells, with its bytes, encode/decode times and accuracies, to the table's own codec's."""

    model: str
    exits: tuple[ExitCosts, ...]
    codec: str = "float32"
    raw_input: bool = True
    device_preprocess_ms: float = 0.0
    edge_preprocess_ms: float = 0.0
    variants: tuple["CodecVariant", ...] = ()

    def __post_init__(self) -> None:
        if not self.exits:
            raise ConfigError(f"latency table of {self.model!r} has no exits")
        for name in ("device_preprocess_ms", "edge_preprocess_ms"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"latency table of {self.model!r}: {name} is {v!r}; it must be finite and >= 0 ms")
        for i, e in enumerate(self.exits, start=1):
            if e.exit != i:
                raise ConfigError(f"latency table of {self.model!r}: exits must be 1..{len(self.exits)} in order, "
                                  f"position {i} holds exit {e.exit}")
        check_codec(self.codec)
        for v in self.variants:
            if len(v.accuracy) != len(self.exits):
                raise ConfigError(f"latency table of {self.model!r}: codec {v.codec} has {len(v.accuracy)} exits")
            for e, pts in zip(self.exits, v.points):
                if any(not 0 <= p < e.num_units for p in pts):
                    raise ConfigError(f"codec {v.codec}: a point of exit {e.exit} is outside 0..{e.num_units - 1}")

    @property
    def input_codec(self) -> str:
        """The codec of the table's own point-0 transfer: ``uint8`` when the raw input is sent, else the table's
        codec (the model's float input)."""
        return "uint8" if self.raw_input else self.codec

    def exit_costs(self, exit: int) -> ExitCosts:
        """The :class:`ExitCosts` of ``exit`` (1-based), with a clear error when out of range."""
        if isinstance(exit, bool) or not isinstance(exit, Integral) or not 1 <= exit <= len(self.exits):
            raise ConfigError(f"exit {exit!r} is out of range: {self.model!r} has exits 1..{len(self.exits)}")
        return self.exits[int(exit) - 1]

    def device_calls_ms(self, exit: int) -> np.ndarray:
        """Predicted device time at every partition point ``0..N_i`` of ``exit``'s sub-model: the units
        ``[0, p)``, the call's constant cost when there is a unit to run, and the preprocessing when the device
        preprocesses (it runs any unit, or sends the model's input rather than the raw input at point 0)."""
        e = self.exit_costs(exit)
        pts = np.arange(e.num_units + 1)
        units_ms = np.concatenate([[0.0], np.cumsum(e.device_unit_ms, dtype=float)])
        preprocesses = (pts > 0) | (not self.raw_input)
        return units_ms + e.device_part_ms * (pts > 0) + self.device_preprocess_ms * preprocesses

    def device_call_ms(self, exit: int, partition: int | None = None) -> float:
        """Predicted time of one device call: ``exit``'s sub-model cut at ``partition`` (default: all of it on
        the device, what a fallback runs); see :meth:`device_calls_ms`."""
        calls = self.device_calls_ms(exit)
        p = len(calls) - 1 if partition is None else int(partition)
        if not 0 <= p < len(calls):
            raise ConfigError(f"partition {partition!r} is out of range for exit {exit}: points 0..{len(calls) - 1}")
        return float(calls[p])

    def with_device_factor(self, factor: float) -> "LatencyTable":
        """This table for a device ``factor`` times as slow (its unit, call and preprocessing times scaled; the
        edge's, the bytes and the codec variants' own encode times unchanged): the table of a lighter or heavier
        emulated device than the one its latency model was fitted for."""
        if not (math.isfinite(factor) and factor > 0):
            raise ConfigError(f"the device factor must be a finite number > 0, got {factor!r}")
        exits = tuple(replace(e, device_unit_ms=tuple(v * factor for v in e.device_unit_ms),
                              device_part_ms=e.device_part_ms * factor) for e in self.exits)
        return replace(self, exits=exits, device_preprocess_ms=self.device_preprocess_ms * factor)

    def fallback_device_ms(self) -> dict[int, float]:
        """Exit -> predicted time of running that exit entirely on the device (the client's fallback budget)."""
        return {e.exit: self.device_call_ms(e.exit) for e in self.exits}

    @property
    def num_pairs(self) -> int:
        """Number of (exit, partition) configurations of the table's own codec."""
        return sum(e.num_units + 1 for e in self.exits)

    @property
    def num_triples(self) -> int:
        """Number of (exit, partition, codec) configurations, variants included."""
        return self.num_pairs + sum(len(p) for v in self.variants for p in v.points)

    @property
    def codecs(self) -> tuple[str, ...]:
        """Every codec a plan on this table can carry: the table's own (and its input codec), then the variants'."""
        own = (self.input_codec,) if self.input_codec == self.codec else (self.input_codec, self.codec)
        return own + tuple(v.codec for v in self.variants if v.codec not in own)

    def to_json(self) -> dict[str, Any]:
        return {"table_version": TABLE_VERSION, "model": self.model, "codec": self.codec,
                "raw_input": self.raw_input, "device_preprocess_ms": self.device_preprocess_ms,
                "edge_preprocess_ms": self.edge_preprocess_ms,
                "exits": [asdict(e) for e in self.exits], "variants": [v.to_json() for v in self.variants]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LatencyTable":
        try:
            exits = tuple(ExitCosts(exit=int(e["exit"]), accuracy=float(e["accuracy"]),
                                    device_unit_ms=tuple(float(v) for v in e["device_unit_ms"]),
                                    edge_unit_ms=tuple(float(v) for v in e["edge_unit_ms"]),
                                    transfer_bytes=tuple(int(v) for v in e["transfer_bytes"]),
                                    result_bytes=int(e["result_bytes"]),
                                    device_part_ms=float(e.get("device_part_ms", 0.0)),
                                    edge_part_ms=float(e.get("edge_part_ms", 0.0))) for e in d["exits"])
            return cls(model=str(d["model"]), exits=exits, codec=str(d.get("codec", "float32")),
                       raw_input=bool(d.get("raw_input", True)),
                       device_preprocess_ms=float(d.get("device_preprocess_ms", 0.0)),
                       edge_preprocess_ms=float(d.get("edge_preprocess_ms", 0.0)),
                       variants=tuple(CodecVariant.from_json(v) for v in d.get("variants", ())))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ConfigError):
                raise
            raise DataError(f"latency table JSON is malformed ({exc!r})") from exc

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON to ``path``."""
        return write_json_file(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read a table written by :meth:`save`."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError as exc:
            raise DataError(f"latency table {path} does not exist") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"latency table {path} is not JSON ({exc})") from exc
        return cls.from_json(data)


def transfer_sizes(chain: "MultiExitChain", exit: int, codec: str = "float32",
                   input_bytes: int | None = None) -> tuple[int, ...]:
    """Bytes sent device -> edge at each point ``0..N_i`` of ``exit``'s sub-model: the raw input at 0
    (default: one byte per input element, uint8 pixels), :func:`payload_bytes` of the tensor in between,
    0 at ``N_i``."""
    ep = chain.exit_point(exit)
    n = ep.num_units
    first = raw_input_bytes(chain.input_shape) if input_bytes is None else int(input_bytes)
    mid = [payload_bytes(chain.unit_input_shape(ep.exit, p), codec) for p in range(1, n)]
    return (first, *mid, 0)


def _check_accuracies(chain: "MultiExitChain", accuracies: Sequence[float]) -> list[float]:
    if len(accuracies) != chain.num_exits:
        raise ConfigError(f"model {chain.name!r} has {chain.num_exits} exits but {len(accuracies)} accuracies "
                          "were given (one per exit, 1..N, e.g. from the model card)")
    return [float(a) for a in accuracies]


def part_costs_ms(predictor: Any, units: list["UnitInfo"]) -> tuple[tuple[float, ...], float]:
    """Each unit's cost inside one call and the call's constant cost (ms), the form a table stores: a part
    ``[a, b)`` costs the sum of its units' costs plus the constant. From ``part_terms_ms`` where the predictor
    has it (its part model is additive over units, :class:`edgent.latency.predictor.LatencyPredictor`); else
    the units' own times, with the constant ``predict_units_ms`` of the whole sub-model adds to their sum (0
    for predictors with only ``predict_unit_ms``)."""
    terms = getattr(predictor, "part_terms_ms", None)
    if terms is not None:
        unit_ms, const_ms = terms(units)
        return tuple(float(v) for v in unit_ms), max(0.0, float(const_ms))
    unit_ms = tuple(float(predictor.predict_unit_ms(u)) for u in units)
    predict_units = getattr(predictor, "predict_units_ms", None)
    if predict_units is None:
        return unit_ms, 0.0
    return unit_ms, max(0.0, float(predict_units(units)) - sum(unit_ms))


def preprocess_unit(input_shape: Sequence[int]) -> "UnitInfo":
    """The input preprocessing as a unit the latency models can price: uint8 to float, / 255, - mean, / std, i.e.
    four elementwise passes over the input (``edgent.model.preprocess``). Used only for a predictor without
    measured preprocessing (:func:`preprocess_ms`): the passes' own work is a small part of the real call."""
    from edgent.model.describe import LayerInfo, UnitInfo

    shape = tuple(int(d) for d in input_shape)
    n = math.prod(shape)
    layers = tuple(LayerInfo(kind=k, input_shape=shape, output_shape=shape, flops=n, detail=what)
                   for k, what in (("mul", "to float"), ("mul", "/ 255"), ("add", "- mean"), ("mul", "/ std")))
    return UnitInfo(index=-1, name="preprocess", kind="preprocess", input_shape=shape, output_shape=shape,
                    output_bytes=4 * n, params=0, flops=4 * n, layers=layers)


def preprocess_ms(predictor: Any, name: str, input_shape: Sequence[int]) -> float:
    """Predicted time of the preprocessing ``name`` of one input of ``input_shape`` on ``predictor``'s role: its
    fit on the sweep's timings of the real function where the predictor has one
    (``predict_preprocess_ms``), else the four elementwise passes of :func:`preprocess_unit`."""
    measured = getattr(predictor, "predict_preprocess_ms", None)
    ms = measured(name, input_shape) if measured is not None else None
    return float(ms) if ms is not None else float(predictor.predict_unit_ms(preprocess_unit(input_shape)))


def build_latency_table(chain: "MultiExitChain", accuracies: Sequence[float],
                        device_predictor: UnitLatencyPredictor, edge_predictor: UnitLatencyPredictor,
                        codec: str = "float32", *, input_bytes: int | None = None,
                        result_bytes: int | None = None, raw_input: bool = True,
                        preprocess: str | None = None) -> LatencyTable:
    """Predict the cost table of ``chain`` with per-unit latency models of the device and the edge.

    ``accuracies`` is the top-1 of each exit (1..N). ``input_bytes`` is what is sent at point 0 (default: uint8
    pixels, one byte per input element); ``raw_input`` says whether that is the raw input (preprocessed on the
    edge) or the model's input (preprocessed on the device); ``result_bytes`` what the edge returns (default:
    float32 logits). The preprocessing (``preprocess``, default the model's own) is priced on each side by
    :func:`preprocess_ms`.
    """
    from edgent.model.describe import describe_chain
    from edgent.model.preprocess import default_preprocess

    check_codec(codec)
    accs = _check_accuracies(chain, accuracies)
    result = chain.num_classes * 4 if result_bytes is None else int(result_bytes)
    exits = []
    for ep, acc in zip(chain.exit_points, accs):
        units = describe_chain(chain, ep.exit)
        device_ms, device_part_ms = part_costs_ms(device_predictor, units)
        edge_ms, edge_part_ms = part_costs_ms(edge_predictor, units)
        exits.append(ExitCosts(
            exit=ep.exit, accuracy=acc, device_unit_ms=device_ms, edge_unit_ms=edge_ms,
            transfer_bytes=transfer_sizes(chain, ep.exit, codec, input_bytes), result_bytes=result,
            device_part_ms=device_part_ms, edge_part_ms=edge_part_ms,
        ))
    prep = preprocess or default_preprocess(chain.name)
    return LatencyTable(model=chain.name, exits=tuple(exits), codec=codec, raw_input=raw_input,
                        device_preprocess_ms=preprocess_ms(device_predictor, prep, chain.input_shape),
                        edge_preprocess_ms=preprocess_ms(edge_predictor, prep, chain.input_shape))


def table_from_measurements(chain: "MultiExitChain", accuracies: Sequence[float],
                            device_unit_ms: Sequence[Sequence[float]], edge_unit_ms: Sequence[Sequence[float]],
                            codec: str = "float32", *, input_bytes: int | None = None,
                            result_bytes: int | None = None) -> LatencyTable:
    """The oracle's table: the same layout as :func:`build_latency_table`, from measured per-unit times.

    ``device_unit_ms[i]`` and ``edge_unit_ms[i]`` are the measured times (ms) of the units of exit ``i + 1``'s
    sub-model, in execution order (``N_i`` values each).
    """
    check_codec(codec)
    accs = _check_accuracies(chain, accuracies)
    if len(device_unit_ms) != chain.num_exits or len(edge_unit_ms) != chain.num_exits:
        raise ConfigError(f"measured unit times must be given for each of the {chain.num_exits} exits")
    result = chain.num_classes * 4 if result_bytes is None else int(result_bytes)
    exits = []
    for ep, acc, dev, edge in zip(chain.exit_points, accs, device_unit_ms, edge_unit_ms):
        if len(dev) != ep.num_units or len(edge) != ep.num_units:
            raise ConfigError(f"exit {ep.exit} has {ep.num_units} units, got {len(dev)} device and "
                              f"{len(edge)} edge measurements")
        exits.append(ExitCosts(exit=ep.exit, accuracy=acc, device_unit_ms=tuple(float(v) for v in dev),
                               edge_unit_ms=tuple(float(v) for v in edge),
                               transfer_bytes=transfer_sizes(chain, ep.exit, codec, input_bytes),
                               result_bytes=result))
    return LatencyTable(model=chain.name, exits=tuple(exits), codec=codec)
