"""Bandwidth traces: one type for every format, with scaling, slicing and exact transfer times.

A :class:`BandwidthTrace` is a piecewise-constant rate: sample ``k`` holds ``rate_bps[k]`` from ``time_s[k]`` to
``time_s[k + 1]`` (the last one until ``end_s``). Beyond ``end_s`` the trace repeats, so that a simulation never runs
out of bandwidth (the convention of trace-driven network simulators such as Mahimahi).

Loaders, all raising :class:`~edgent.errors.DataError` that names the file and line of a bad entry:

- :func:`load_cooked`: the "cooked" two-column text of the Norway 3G set, ``<time_s> <Mbit/s>`` per line;
- :func:`load_belgium_json`: the JSON list of ``{"duration_ms", "bandwidth_kbps", "latency_ms"}`` of the Belgium 4G set;
- :func:`load_mahimahi`: Mahimahi packet-delivery traces, one millisecond timestamp per 1500-byte delivery
  opportunity, binned into a rate;
- :func:`load_trace` picks one by the file's content, :func:`load_trace_dir` loads a folder.

:func:`synthetic_trace` makes a trace of known bandwidth states and change points, for tests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from edgent.errors import ConfigError, DataError

MAHIMAHI_PACKET_BYTES = 1500


@dataclass(frozen=True)
class BandwidthTrace:
    """A piecewise-constant bandwidth over time.

    Attributes:
        name: where it came from (file stem, or a description).
        time_s: start of each sample, strictly increasing, first one 0.
        rate_bps: rate of each sample in bit/s (>= 0).
        end_s: end of the last sample (> ``time_s[-1]``).
        scale: factor the original rates were multiplied by (1.0 when unscaled), kept so results can say so.
    """

    name: str
    time_s: np.ndarray
    rate_bps: np.ndarray
    end_s: float
    scale: float = 1.0
    _cum_bits: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.time_s, dtype=np.float64)
        r = np.asarray(self.rate_bps, dtype=np.float64)
        if t.ndim != 1 or t.shape != r.shape or t.size == 0:
            raise DataError(f"trace {self.name}: time_s and rate_bps must be 1-D arrays of the same, non-zero length")
        if t[0] != 0.0 or np.any(np.diff(t) <= 0) or not self.end_s > t[-1]:
            raise DataError(f"trace {self.name}: times must start at 0, increase strictly and end before end_s")
        if np.any(~np.isfinite(r)) or np.any(r < 0):
            raise DataError(f"trace {self.name}: rates must be finite and >= 0")
        if not np.any(r > 0):
            raise DataError(f"trace {self.name}: every rate is 0, nothing could ever be sent")
        t.setflags(write=False)
        r.setflags(write=False)
        object.__setattr__(self, "time_s", t)
        object.__setattr__(self, "rate_bps", r)
        object.__setattr__(self, "end_s", float(self.end_s))
        edges = np.append(t, self.end_s)
        cum = np.concatenate([[0.0], np.cumsum(r * np.diff(edges))])
        cum.setflags(write=False)
        object.__setattr__(self, "_cum_bits", cum)

    # -- basic views -------------------------------------------------------------------------------------------
    @property
    def duration_s(self) -> float:
        return self.end_s

    @property
    def edges_s(self) -> np.ndarray:
        """Sample boundaries: ``time_s`` plus ``end_s``."""
        return np.append(self.time_s, self.end_s)

    @property
    def mean_rate_bps(self) -> float:
        """Time-weighted mean rate over the whole trace."""
        return float(self._cum_bits[-1] / self.end_s)

    def __len__(self) -> int:
        return int(self.time_s.size)

    def scaled(self, factor: float) -> BandwidthTrace:
        """The same trace with every rate multiplied by ``factor`` (> 0)."""
        if not factor > 0:
            raise ConfigError(f"trace scale must be > 0, got {factor}")
        return BandwidthTrace(self.name, self.time_s, self.rate_bps * factor, self.end_s, self.scale * factor)

    def sliced(self, start_s: float, end_s: float) -> BandwidthTrace:
        """The part ``[start_s, end_s)`` of the trace, re-timed to start at 0."""
        if not 0 <= start_s < end_s <= self.end_s:
            raise ConfigError(f"trace {self.name}: slice [{start_s}, {end_s}) is not inside [0, {self.end_s}]")
        first = int(np.searchsorted(self.time_s, start_s, side="right")) - 1
        last = int(np.searchsorted(self.time_s, end_s, side="left"))
        t = self.time_s[first:last].copy()
        t[0] = start_s
        return BandwidthTrace(f"{self.name}[{start_s:g}:{end_s:g}]", t - start_s, self.rate_bps[first:last],
                              end_s - start_s, self.scale)

    # -- rates and transfers (periodic beyond end_s) -----------------------------------------------------------
    def rate_at(self, t_s: float | np.ndarray) -> np.ndarray | float:
        """Rate in bit/s at time(s) ``t_s``."""
        tt = np.mod(np.asarray(t_s, dtype=np.float64), self.end_s)
        idx = np.searchsorted(self.time_s, tt, side="right") - 1
        out = self.rate_bps[idx]
        return float(out) if np.ndim(out) == 0 else out

    def bits_until(self, t_s: float | np.ndarray) -> np.ndarray:
        """Bits the link could carry from time 0 to ``t_s`` (the integral of the rate)."""
        t = np.asarray(t_s, dtype=np.float64)
        loops, rem = np.divmod(t, self.end_s)
        idx = np.clip(np.searchsorted(self.time_s, rem, side="right") - 1, 0, len(self) - 1)
        within = self._cum_bits[idx] + self.rate_bps[idx] * (rem - self.time_s[idx])
        return loops * self._cum_bits[-1] + within

    def transfer_end_s(self, start_s: float | np.ndarray, size_bytes: float | np.ndarray) -> np.ndarray:
        """When a transfer of ``size_bytes`` that starts at ``start_s`` ends, integrating the rate over time
        (not one sample's rate). Works on arrays (broadcast) for many transfers at once."""
        start = np.asarray(start_s, dtype=np.float64)
        size_bits = np.asarray(size_bytes, dtype=np.float64) * 8.0
        target = self.bits_until(start) + size_bits
        total = self._cum_bits[-1]
        loops, rem = np.divmod(target, total)
        # first knot whose cumulative bits reach rem; the segment before it has a positive rate
        k = np.clip(np.searchsorted(self._cum_bits, rem, side="left"), 1, len(self))
        seg = k - 1
        rate = self.rate_bps[seg]
        safe = np.where(rate > 0, rate, 1.0)
        t_end = self.time_s[seg] + np.where(rate > 0, (rem - self._cum_bits[seg]) / safe, 0.0)
        end = loops * self.end_s + t_end
        return np.where(size_bits > 0, np.maximum(end, start), start)

    def transfer_ms(self, start_s: float | np.ndarray, size_bytes: float | np.ndarray) -> np.ndarray:
        """Duration in ms of a transfer of ``size_bytes`` starting at ``start_s`` (see :meth:`transfer_end_s`)."""
        start = np.asarray(start_s, dtype=np.float64)
        return (self.transfer_end_s(start, size_bytes) - start) * 1e3

    def samples_between(self, t0_s: float, t1_s: float) -> np.ndarray:
        """Indices of samples whose interval *ended* in ``(t0_s, t1_s]``: what a throughput monitor that reports a
        sample once it is complete has newly measured (within one pass of the trace)."""
        ends = self.edges_s[1:]
        lo = int(np.searchsorted(ends, t0_s, side="right"))
        hi = int(np.searchsorted(ends, t1_s, side="right"))
        return np.arange(lo, hi)


# -- loaders ------------------------------------------------------------------------------------------------------

def _from_durations(name: str, durations_s: Sequence[float], rates_bps: Sequence[float]) -> BandwidthTrace:
    d = np.asarray(durations_s, dtype=np.float64)
    edges = np.concatenate([[0.0], np.cumsum(d)])
    return BandwidthTrace(name, edges[:-1], np.asarray(rates_bps, dtype=np.float64), float(edges[-1]))


def load_cooked(path: str | Path) -> BandwidthTrace:
    """Load a two-column text trace ``<time_s> <Mbit/s>`` (the Norway 3G "cooked" format).

    Sample ``k`` holds until sample ``k + 1``; the last one holds for the median step. Times are re-based to 0.
    """
    path = Path(path)
    times: list[float] = []
    rates: list[float] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{path}:{lineno}: expected two columns '<time_s> <Mbit/s>', got {line.strip()!r}")
        try:
            t, mbps = float(parts[0]), float(parts[1])
        except ValueError:
            raise DataError(f"{path}:{lineno}: not numbers: {line.strip()!r}") from None
        if not (np.isfinite(t) and np.isfinite(mbps)) or mbps < 0:
            raise DataError(f"{path}:{lineno}: throughput must be a finite number >= 0, got {line.strip()!r}")
        if times and t <= times[-1]:
            raise DataError(f"{path}:{lineno}: time {t} does not increase (previous line had {times[-1]})")
        times.append(t)
        rates.append(mbps * 1e6)
    if len(times) < 2:
        raise DataError(f"{path}: a cooked trace needs at least two samples, found {len(times)}")
    t_arr = np.asarray(times) - times[0]
    step = float(np.median(np.diff(t_arr)))
    return _checked(path, BandwidthTrace, path.stem, t_arr, np.asarray(rates), float(t_arr[-1] + step))


def load_belgium_json(path: str | Path) -> BandwidthTrace:
    """Load a JSON list of ``{"duration_ms", "bandwidth_kbps", "latency_ms"}`` (the Belgium 4G format).

    ``latency_ms`` is ignored: in this data set it is a constant added by the converter, not a measurement.
    """
    path = Path(path)
    text = _read_text(path)
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: expected a non-empty JSON list of {{duration_ms, bandwidth_kbps}} entries")
    lines = _entry_lines(text, len(entries))
    durations, rates = [], []
    for i, e in enumerate(entries):
        where = f"{path}:{lines[i]} (entry {i})"
        if not isinstance(e, dict) or "duration_ms" not in e or "bandwidth_kbps" not in e:
            raise DataError(f"{where}: expected an object with 'duration_ms' and 'bandwidth_kbps', got {e!r}")
        try:
            d, bw = float(e["duration_ms"]), float(e["bandwidth_kbps"])
        except (TypeError, ValueError):
            raise DataError(f"{where}: duration_ms and bandwidth_kbps must be numbers, got {e!r}") from None
        if not (np.isfinite(d) and d > 0):
            raise DataError(f"{where}: duration_ms must be > 0, got {e['duration_ms']!r}")
        if not (np.isfinite(bw) and bw >= 0):
            raise DataError(f"{where}: bandwidth_kbps must be >= 0, got {e['bandwidth_kbps']!r}")
        durations.append(d / 1e3)
        rates.append(bw * 1e3)
    return _checked(path, _from_durations, path.stem, durations, rates)


def load_mahimahi(path: str | Path, bin_ms: float = 1000.0) -> BandwidthTrace:
    """Load a Mahimahi packet-delivery trace: one integer millisecond timestamp per line, each a chance to deliver
    one 1500-byte packet (several lines may share a timestamp). The opportunities are counted in bins of ``bin_ms``
    to give a rate; the trace lasts until the bin holding the last timestamp ends."""
    path = Path(path)
    if not bin_ms > 0:
        raise ConfigError(f"bin_ms must be > 0, got {bin_ms}")
    stamps: list[int] = []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        try:
            v = int(s)
        except ValueError:
            raise DataError(f"{path}:{lineno}: a Mahimahi trace has one integer millisecond timestamp per line, "
                            f"got {s!r}") from None
        if v < 0 or (stamps and v < stamps[-1]):
            raise DataError(f"{path}:{lineno}: timestamps must be >= 0 and never decrease, got {v} after "
                            f"{stamps[-1] if stamps else 'start'}")
        stamps.append(v)
    if not stamps:
        raise DataError(f"{path}: the Mahimahi trace has no timestamps")
    n_bins = int(np.floor(stamps[-1] / bin_ms)) + 1
    counts = np.bincount((np.asarray(stamps) // bin_ms).astype(np.int64), minlength=n_bins)
    rates = counts * MAHIMAHI_PACKET_BYTES * 8 / (bin_ms / 1e3)
    return _checked(path, _from_durations, path.stem, [bin_ms / 1e3] * n_bins, rates)


def load_trace(path: str | Path) -> BandwidthTrace:
    """Load a trace of any supported format, chosen by content: JSON (starts with ``[``), one integer per line
    (Mahimahi) or two columns (cooked)."""
    path = Path(path)
    text = _read_text(path)
    head = text.lstrip()[:1]
    if head == "[":
        return load_belgium_json(path)
    first = next((ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise DataError(f"{path}: the trace file is empty")
    if len(first) == 1:
        return load_mahimahi(path)
    return load_cooked(path)


def load_trace_dir(directory: str | Path, pattern: str = "*") -> list[BandwidthTrace]:
    """Load every trace file in ``directory`` (sorted by name)."""
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"trace folder {d} does not exist (the shared traces are in ../shared/traces/<set>)")
    files = sorted(p for p in d.glob(pattern) if p.is_file() and not p.name.startswith("."))
    if not files:
        raise DataError(f"trace folder {d} holds no files matching {pattern!r}")
    return [load_trace(p) for p in files]


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise DataError(f"trace file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"trace file {path} cannot be read as text ({exc})") from None


def _entry_lines(text: str, n: int) -> list[int]:
    """Line number of each top-level entry of a JSON list (for error messages); best effort."""
    lines, depth, lineno = [], 0, 1
    for ch in text:
        if ch == "\n":
            lineno += 1
        elif ch in "[{":
            if depth == 1:
                lines.append(lineno)
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif depth == 1 and ch not in " \t\r,":
            lines.append(lineno)  # a scalar entry
            depth = 1
    return (lines + [lineno] * n)[:n]


def _checked(path: Path, build, *args):  # noqa: ANN001 - small helper
    try:
        return build(*args)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


# -- synthetic traces -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticTrace:
    """A generated trace with the truth about it: where the state changes and what each state is."""

    trace: BandwidthTrace
    change_points_s: tuple[float, ...]
    change_point_samples: tuple[int, ...]
    state_mean_bps: tuple[float, ...]
    state_log_std: tuple[float, ...]


def synthetic_trace(
    mean_rates_bps: Sequence[float],
    segment_samples: Sequence[int] | int = 60,
    log_std: float | Sequence[float] = 0.1,
    step_s: float = 1.0,
    seed: int = 0,
    name: str = "synthetic",
) -> SyntheticTrace:
    """A trace of piecewise-stationary states: segment ``j`` has ``segment_samples[j]`` samples, log-normal
    around ``mean_rates_bps[j]`` with log standard deviation ``log_std[j]``; one sample every ``step_s``.
    The change points are the first sample of every segment after the first."""
    means = [float(m) for m in mean_rates_bps]
    if not means or any(m <= 0 for m in means):
        raise ConfigError("synthetic_trace needs at least one mean rate, all > 0")
    lens = ([int(segment_samples)] * len(means) if isinstance(segment_samples, int)
            else [int(n) for n in segment_samples])
    stds = [float(log_std)] * len(means) if isinstance(log_std, (int, float)) else [float(s) for s in log_std]
    if len(lens) != len(means) or len(stds) != len(means) or any(n < 1 for n in lens) or any(s < 0 for s in stds):
        raise ConfigError("synthetic_trace: one segment length (>= 1) and one log_std (>= 0) per mean rate")
    rng = np.random.default_rng(seed)
    rates = np.concatenate([m * np.exp(rng.normal(0.0, s, n)) for m, s, n in zip(means, stds, lens)])
    cps = np.cumsum(lens)[:-1]
    trace = _from_durations(name, [step_s] * rates.size, rates)
    return SyntheticTrace(trace, tuple(float(c * step_s) for c in cps), tuple(int(c) for c in cps),
                          tuple(means), tuple(stds))
