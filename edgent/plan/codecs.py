"""The codec as the third planning dimension: what each codec costs at each partition point of a model.

A :class:`CodecVariant` says, for one codec, at which (exit, partition point) cells it can carry the tensor, how
many bytes it sends there (priced), what encoding costs on the device and decoding on the edge (ms), and the
top-1 accuracy of each exit when the tensor crosses the link through it (from the model card,
``codec_accuracy``). A :class:`~edgent.plan.table.LatencyTable` holds a tuple of them (``variants``); the planner
enumerates every (exit, partition, codec) triple from the table's own codec plus the variants.

Where a codec applies (:func:`codec_points`): a pixel codec (``uint8``, ``jpegQQ``) at point 0 only; a learned
bottleneck (``bneck-<model>``) at its own point only; a tensor codec (``float16``, ``int8``, ``int8c``, with an
optional ``+zlib``/``+zstd``) at every cut ``1..N_i - 1``. Device-only (point ``N_i``) sends nothing and has no
codec.

Sizes (:func:`measure_variants`): a fixed-size codec's payload is exact (:meth:`Codec.payload_bytes`); a
variable-size one (JPEG, compressed, bottleneck) is encoded on real sample inputs, one request each, and priced
at the 95th percentile of its sizes (the mean and the spread are kept in ``bytes_stats``) so that the planned
latency holds for the large payloads too.

Times (:func:`time_codec_calls`): each side's work is timed as that side runs it, once per request after it has
been idle: one call after an idle spell (:data:`edgent.profile.sweep.CALL_IDLE_S`), on the role's own clock
(the device role's steady CPU clock, :mod:`edgent.profile.hostspeed`, with its one torch thread; the edge's wall
clock with its threads), the median over a few interleaved rounds, times the role's emulated slowdown. A warm
back-to-back median would not do: a 32x32 JPEG encode takes ~0.17 ms warm on the development host but ~0.5 ms
of steady CPU as a single call after idle, which the x100 device turns into ~50 ms instead of ~17 ms
(docs/planner.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from edgent.errors import ConfigError

if TYPE_CHECKING:
    from edgent.model.chain import MultiExitChain
    from edgent.profile.throttle import DeviceEmulation

#: the codecs a table offers by default for alexnet-cifar10-sized models (the bottleneck is added where trained)
DEFAULT_CODECS: tuple[str, ...] = ("uint8", "jpeg90", "jpeg75", "jpeg50", "jpeg25", "jpeg90a", "jpeg75a", "jpeg50a",
                                   "jpeg25a", "float16", "int8", "int8c",
                                   "int8+zstd", "int8c+zstd")

PIXEL_CODEC = re.compile(r"(uint8(\+(zlib|zstd))?|jpeg\d{0,3}|jpeg\d{1,3}a)")


@dataclass(frozen=True)
class CodecVariant:
    """One codec's cells of a model (see the module docstring). Per exit ``i`` (position ``i - 1``):
    ``points[i-1]`` the partition points it applies at, and aligned with them ``transfer_bytes`` (priced),
    ``encode_ms`` (device) and ``decode_ms`` (edge); ``accuracy[i-1]`` the exit's top-1 through this codec."""

    codec: str
    points: tuple[tuple[int, ...], ...]
    transfer_bytes: tuple[tuple[float, ...], ...]
    encode_ms: tuple[tuple[float, ...], ...]
    decode_ms: tuple[tuple[float, ...], ...]
    accuracy: tuple[float, ...]
    bytes_stats: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        n = len(self.accuracy)
        for name in ("points", "transfer_bytes", "encode_ms", "decode_ms"):
            v = getattr(self, name)
            if len(v) != n:
                raise ConfigError(f"codec {self.codec}: {name} has {len(v)} exits, accuracy {n}")
            for i, row in enumerate(v):
                if len(row) != len(self.points[i]):
                    raise ConfigError(f"codec {self.codec}: exit {i + 1}: {name} and points differ in length")
                if name != "points" and any(not (math.isfinite(x) and x >= 0) for x in row):
                    raise ConfigError(f"codec {self.codec}: exit {i + 1}: {name} must be finite and >= 0")
        if any(not 0.0 <= a <= 1.0 for a in self.accuracy):
            raise ConfigError(f"codec {self.codec}: accuracies must lie in [0, 1]")

    def __hash__(self) -> int:
        return hash((self.codec, self.points, self.transfer_bytes, self.encode_ms, self.decode_ms, self.accuracy))

    def to_json(self) -> dict[str, Any]:
        return {"codec": self.codec, "points": [list(p) for p in self.points],
                "transfer_bytes": [list(p) for p in self.transfer_bytes],
                "encode_ms": [list(p) for p in self.encode_ms], "decode_ms": [list(p) for p in self.decode_ms],
                "accuracy": list(self.accuracy), "bytes_stats": self.bytes_stats}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "CodecVariant":
        t = lambda rows, f: tuple(tuple(f(x) for x in r) for r in rows)  # noqa: E731
        return cls(codec=str(d["codec"]), points=t(d["points"], int), transfer_bytes=t(d["transfer_bytes"], float),
                   encode_ms=t(d["encode_ms"], float), decode_ms=t(d["decode_ms"], float),
                   accuracy=tuple(float(a) for a in d["accuracy"]), bytes_stats=dict(d.get("bytes_stats", {})))


def codec_points(chain: "MultiExitChain", exit: int, codec: str) -> tuple[int, ...]:
    """The partition points of ``exit``'s sub-model at which ``codec`` can carry the tensor."""
    n = chain.exit_point(exit).num_units
    if PIXEL_CODEC.fullmatch(codec):
        return (0,)
    if codec.startswith("bneck-"):
        from edgent.codec import get_codec

        p = int(get_codec(codec).point)
        return (p,) if 0 < p < n else ()
    return tuple(range(1, n))


def time_codec_calls(fns: Sequence[Any], role: "DeviceEmulation | None" = None, rounds: int = 5,
                     idle_s: float | None = None) -> list[float]:
    """Each of ``fns`` timed as ``role`` runs it once per request (ms, the role's slowdown included): after
    ``idle_s`` of idle (default :data:`edgent.profile.sweep.CALL_IDLE_S`), on the role's clock, with its torch
    threads, the median over ``rounds`` interleaved rounds of one call each. ``role=None``: this host as it
    is (wall clock, no slowdown)."""
    from edgent.profile.sweep import CALL_IDLE_S
    from edgent.profile.timing import idle_gap, time_interleaved

    if not fns:
        return []
    if int(rounds) < 1:
        raise ConfigError(f"codec timing needs at least 1 round, got {rounds!r}")
    gap = CALL_IDLE_S if idle_s is None else float(idle_s)
    before = (lambda: idle_gap(gap)) if gap > 0 else None
    if role is None:
        stats = time_interleaved(fns, throttled=False, clock="wall", rounds=int(rounds), calls=1, before=before)
        return [st.median_ms for st in stats]
    with role.real_part():
        stats = time_interleaved(fns, throttled=role.uses_quota, clock=role.timing_clock or "wall",
                                 rounds=int(rounds), calls=1, before=before)
    return [st.median_ms * role.slowdown for st in stats]


def measure_variants(chain: "MultiExitChain", codecs: Sequence[str], accuracies: Mapping[str, Sequence[float]],
                     images: np.ndarray, *, device: "DeviceEmulation | None" = None,
                     edge: "DeviceEmulation | None" = None, rounds: int = 5, idle_s: float | None = None,
                     preprocess=None) -> tuple[CodecVariant, ...]:
    """The :class:`CodecVariant` of each codec of ``codecs`` for ``chain``, measured on ``images`` (uint8
    ``(n, C, H, W)``, real inputs; one request each). ``accuracies[codec]`` is each exit's top-1 through the
    codec (the model card's ``codec_accuracy``); a codec without one is left out (its accuracy cost would be a
    guess). Encodes are timed as the ``device`` role runs them and decodes as the ``edge`` role does
    (:func:`time_codec_calls`, ``rounds`` and ``idle_s``; None: this host as it is)."""
    import torch

    from edgent.codec import get_codec
    from edgent.data.cifar10 import to_model_input

    prep = preprocess or to_model_input
    imgs = torch.as_tensor(np.asarray(images))
    with torch.inference_mode():
        x = prep(imgs)
    cache: dict[tuple[str, int, int], tuple[float, dict[str, float]]] = {}
    calls: dict[tuple[str, int, int], tuple[Any, Any]] = {}  # per cell: its encode and decode, to be timed
    pending: list[tuple[Any, ...]] = []
    per_exit: dict[int, list[list[torch.Tensor]]] = {}

    def tensors(exit: int) -> list[list[torch.Tensor]]:
        """Per point of ``exit``, each image's tensor there, one request per image as the device computes it
        (its units applied one after the other, once per image for all points)."""
        if exit not in per_exit:
            units = chain.units(exit)
            pts: list[list[torch.Tensor]] = [[] for _ in range(len(units) + 1)]
            with torch.inference_mode():
                for i in range(imgs.shape[0]):
                    h = x[i:i + 1]
                    pts[0].append(h)
                    for k, unit in enumerate(units):
                        h = unit(h)
                        pts[k + 1].append(h)
            per_exit[exit] = pts
        return per_exit[exit]

    out = []
    for name in codecs:
        if name not in accuracies:
            continue
        codec = get_codec(name)
        pts_all, tx_all, keys_all = [], [], []
        stats: dict[str, Any] = {}
        for ep in chain.exit_points:
            pts = codec_points(chain, ep.exit, name)
            tx, keys = [], []
            for p in pts:
                # the tensor at p is the trunk's when p lies before the branch: share the measurement
                key = (name, p if p <= ep.after_trunk_units else -ep.exit * 1000 - p, 0)
                if key not in cache:
                    hs = ([imgs[i:i + 1] for i in range(imgs.shape[0])] if codec.kind == "pixels"
                          else tensors(ep.exit)[p])
                    one = hs[0]
                    sizes = np.array([len(codec.encode(h)) for h in hs], dtype=float)
                    if codec.exact_size:
                        priced = float(codec.payload_bytes(tuple(one.shape)))
                    else:
                        priced = float(np.percentile(sizes, 95))
                    data = codec.encode(one)
                    cache[key] = (priced, {"mean": float(sizes.mean()), "std": float(sizes.std()),
                                           "p95": float(np.percentile(sizes, 95)), "n": int(sizes.size)})
                    calls[key] = (lambda c=codec, t=one: c.encode(t),
                                  lambda c=codec, d=data, s=tuple(one.shape): c.decode(d, s))
                priced, st = cache[key]
                tx.append(priced)
                keys.append(key)
                stats[f"{ep.exit}/{p}"] = st
            pts_all.append(pts)
            tx_all.append(tuple(tx))
            keys_all.append(keys)
        acc = [float(a) for a in accuracies[name]]
        if len(acc) != chain.num_exits:
            raise ConfigError(f"codec {name}: {len(acc)} accuracies for {chain.num_exits} exits")
        pending.append((name, tuple(pts_all), tuple(tx_all), keys_all, tuple(acc), stats))
    # every distinct cell's encode on the device and decode on the edge, timed together (interleaved rounds)
    order = list(calls)
    enc_ms = dict(zip(order, time_codec_calls([calls[k][0] for k in order], device, rounds, idle_s)))
    dec_ms = dict(zip(order, time_codec_calls([calls[k][1] for k in order], edge, rounds, idle_s)))
    for name, pts_all, tx_all, keys_all, acc, stats in pending:
        out.append(CodecVariant(codec=name, points=pts_all, transfer_bytes=tx_all,
                                encode_ms=tuple(tuple(enc_ms[k] for k in ks) for ks in keys_all),
                                decode_ms=tuple(tuple(dec_ms[k] for k in ks) for ks in keys_all),
                                accuracy=acc, bytes_stats=stats))
    return tuple(out)
