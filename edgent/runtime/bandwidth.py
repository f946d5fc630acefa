"""Bandwidth measured from the inference traffic itself.

Each upload gives one sample: the bytes that crossed the link over the time the link took, i.e. the request's
round trip minus the time the edge reported for itself minus the round-trip latency of an empty message::

    rate_bps = 8 * (upload_bytes + download_bytes) / (total_ms - server_ms - rtt_ms)

Samples are smoothed by a harmonic mean over a sliding window (the right mean for rates of fixed-size transfers:
it equals total bytes over total time, and one fast outlier cannot inflate it). The RTT estimate is the smallest
recent round trip of a near-empty message (HELLO, HEALTH), the usual way to separate latency from transfer time.

Every transfer also bounds the rate from below (:func:`lower_bound_bps`): the bytes did cross in the time
measured, so the link is at least that fast; delays on either host only make a transfer look slower, so the
bound holds however busy the hosts are, where a sample does not. Kept bounds below it (a timeout's upper bound
from a busy moment, an older lower bound) are refuted and dropped; measured samples stay in the mean. A transfer
that the estimate says would cross in less than a round trip beyond the shaper's burst is latency-bound: its
time is mostly the hosts' and the network's delays, so it gives only its lower bound, not a sample.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass

from edgent.errors import ConfigError
from edgent.plan.link import shaper_burst_bytes, wire_per_payload


@dataclass(frozen=True)
class BandwidthSample:
    """One throughput sample: ``size_bytes`` crossed the link in ``link_ms``; ``rate_bps`` is what the estimator
    keeps (the shaper's burst taken out when it corrects for one), ``raw_rate_bps`` the bytes over the time as
    measured, ``kind`` is ``measured``, ``upper_bound`` (a transfer the edge did not answer in time) or
    ``lower_bound`` (a transfer too small to time the rate by that showed the estimate too low)."""

    size_bytes: int
    link_ms: float
    rate_bps: float
    time_s: float
    raw_rate_bps: float = 0.0
    kind: str = "measured"


class BandwidthEstimator:
    """Smooths throughput samples (harmonic mean over the last ``window``) and tracks the RTT (min of the last
    ``rtt_window`` small round trips). ``min_link_ms`` drops samples too short to time reliably.

    ``shaper``: what shapes the link, for the burst correction of every sample (:func:`corrected_sample_bps`):
    ``None`` (no correction: the bytes over the time), ``"app"`` (a token bucket on the application's bytes, the
    emulated link) or ``"packets"`` (a token bucket counting Ethernet packets, ``tc tbf`` on a veth). A sample
    whose bytes all fit in the burst, or that is latency-bound at the estimate (see the module docstring), is not
    kept as a sample: it gives its lower bound only.

    :meth:`add_upper_bound` takes the evidence of a transfer that did not finish in time: the rate was at most
    the bound, so kept samples above it are dropped before the bound is kept; the estimate then never exceeds it.
    A bound at or above every kept sample says nothing new and is not kept (it would raise the estimate).
    """

    SHAPERS = (None, "app", "packets")

    def __init__(self, window: int = 8, rtt_window: int = 16, min_link_ms: float = 0.5,
                 initial_rate_bps: float | None = None, shaper: str | None = None) -> None:
        if shaper not in self.SHAPERS:
            raise ConfigError(f"the bandwidth estimator's shaper must be one of none, app, packets; got {shaper!r}")
        self.shaper = shaper
        if window < 1 or rtt_window < 1:
            raise ConfigError("the bandwidth estimator's windows must hold at least one sample")
        self.samples: deque[BandwidthSample] = deque(maxlen=window)
        self.rtts_ms: deque[float] = deque(maxlen=rtt_window)
        self.min_link_ms = min_link_ms
        self.initial_rate_bps = initial_rate_bps
        self.last_activity_s = time.monotonic()

    @property
    def rate_bps(self) -> float | None:
        """Current estimate in bit/s (None before the first sample unless an initial rate was given)."""
        if not self.samples:
            return self.initial_rate_bps
        return len(self.samples) / sum(1.0 / s.rate_bps for s in self.samples)

    @property
    def rtt_ms(self) -> float | None:
        """Current round-trip latency estimate in ms (None before the first measurement)."""
        return min(self.rtts_ms) if self.rtts_ms else None

    def observe_rtt(self, rtt_ms: float) -> None:
        """Record the round trip of a near-empty message (it bounds the latency part of every request)."""
        if rtt_ms >= 0:
            self.rtts_ms.append(float(rtt_ms))
        self.last_activity_s = time.monotonic()

    def add(self, size_bytes: int, link_ms: float, download_bytes: int = 0) -> BandwidthSample | None:
        """Add one transfer (``size_bytes`` up and ``download_bytes`` down in ``link_ms``): kept bounds below its
        lower bound are dropped, then it is kept as a sample, burst-corrected when the estimator knows a shaper,
        and returned; one that is all burst or latency-bound keeps its lower bound instead where that dropped a
        bound (returned, ``kind`` ``lower_bound``). None: too short to count, or nothing kept."""
        self.last_activity_s = time.monotonic()
        up, down = int(size_bytes), int(download_bytes)
        total = up + down
        if total <= 0 or link_ms < self.min_link_ms:
            return None
        raw = 8.0 * total / (link_ms / 1e3)
        rate = raw if self.shaper is None else corrected_sample_bps(up, down, raw, self.shaper == "packets")
        estimate, rtt = self.rate_bps, self.rtt_ms
        latency_bound = (estimate is not None and rtt is not None
                         and transfer_ms(up, down, estimate, self.shaper) < rtt)
        # the lower bound matters only where it can refute a kept bound (computed then only: it is a search)
        bounds = [s.rate_bps for s in self.samples if s.kind != "measured"]
        floor = lower_bound_bps(up, down, link_ms, self.shaper) if bounds else None
        dropped = False
        if floor is not None and min(bounds) < floor:
            # the bounds it refutes (a timeout's, from a busy moment; an older lower bound) go; measured samples
            # stay, averaged as they are
            kept = [s for s in self.samples if s.kind == "measured" or s.rate_bps >= floor]
            self.samples.clear()
            self.samples.extend(kept)
            dropped = True
        if rate is None or latency_bound:
            if not dropped:  # consistent with what is kept (or nothing is: the prior stands)
                return None
            s = BandwidthSample(total, float(link_ms), float(floor), time.time(), raw, "lower_bound")
        else:
            s = BandwidthSample(total, float(link_ms), float(rate), time.time(), raw)
        self.samples.append(s)
        return s

    def add_upper_bound(self, rate_bps: float) -> BandwidthSample | None:
        """Evidence that the rate is at most ``rate_bps`` (a transfer that timed out: :func:`timeout_bound_bps`):
        samples above it are dropped, then it is kept as a sample and returned. None (nothing kept) when the bound
        is not above zero or is at or above every kept sample (consistent with them: no news)."""
        self.last_activity_s = time.monotonic()
        if not rate_bps > 0:
            return None
        if self.samples and rate_bps >= max(s.rate_bps for s in self.samples):
            return None
        kept = [s for s in self.samples if s.rate_bps <= rate_bps]
        self.samples.clear()
        self.samples.extend(kept)
        s = BandwidthSample(0, 0.0, float(rate_bps), time.time(), float(rate_bps), "upper_bound")
        self.samples.append(s)
        return s

    def observe_request(self, upload_bytes: int, download_bytes: int, total_ms: float, server_ms: float,
                        rtt_ms: float | None = None) -> BandwidthSample | None:
        """One sample from a request: its bytes over (round trip - server time - RTT)."""
        rtt = self.rtt_ms if rtt_ms is None else rtt_ms
        link_ms = total_ms - server_ms - (rtt or 0.0)
        return self.add(upload_bytes, link_ms, download_bytes)

    def idle_for_s(self) -> float:
        """Seconds since the last request or probe (a light probe is worth sending after a long idle)."""
        return time.monotonic() - self.last_activity_s


def corrected_sample_bps(size_up: int, size_down: int, sample_bps: float | None,
                         packet_headers_counted: bool = False) -> float | None:
    """The link rate behind one throughput sample, without the shaper's bucket: a token-bucket shaper lets one
    burst (:func:`edgent.plan.link.shaper_burst_bytes`) through at once after an idle spell, so a small message
    reads faster than the link; only the bytes beyond the burst, in each direction, took the time. Where the
    shaper counts Ethernet packets (``packet_headers_counted``) the packets' headers are added back. None when no
    byte was shaped (the sample then says nothing about the rate)."""
    if not sample_bps or sample_bps <= 0:
        return None
    link_s = 8.0 * (size_up + size_down) / sample_bps
    shaped = _paced_bytes(size_up, size_down, shaper_burst_bytes(sample_bps))
    if shaped <= 0 or link_s <= 0:
        return None
    return 8.0 * shaped * wire_per_payload(packet_headers_counted) / link_s


def _paced_bytes(size_up: int, size_down: int, burst_bytes: float) -> float:
    """The bytes a full token bucket of ``burst_bytes`` does not let through at once, both directions summed."""
    return max(size_up - burst_bytes, 0.0) + max(size_down - burst_bytes, 0.0)


def transfer_ms(size_up: int, size_down: int, rate_bps: float, shaper: str | None = None) -> float:
    """How long (ms) ``size_up`` bytes up and ``size_down`` down take on a link of ``rate_bps`` behind edgent's
    token-bucket ``shaper`` (``None``, ``"app"``, ``"packets"``; see :class:`BandwidthEstimator`) whose bucket is
    full: only the bytes beyond the burst are paced, in each direction, one after the other (the wire model's
    :meth:`edgent.plan.link.Link.transfer_ms` with that rate's burst, for the two messages of one sample)."""
    burst = shaper_burst_bytes(rate_bps) if shaper is not None else 0
    return 8.0 * _paced_bytes(size_up, size_down, burst) * wire_per_payload(shaper == "packets") / rate_bps * 1e3


def lower_bound_bps(size_up: int, size_down: int, link_ms: float, shaper: str | None = None) -> float | None:
    """The lowest rate (bit/s) at which the transfer could have taken ``link_ms`` (:func:`transfer_ms`, which
    falls as the rate rises): the link is at least this fast, since delays on the hosts only add to a
    transfer's time. None when every rate would do (all of it fits in the burst at any rate) or ``link_ms`` is
    not above 0."""
    if not link_ms > 0 or transfer_ms(size_up, size_down, 1.0, shaper) <= link_ms:
        return None
    lo, hi = 1.0, 1e12
    if transfer_ms(size_up, size_down, hi, shaper) > link_ms:
        return hi
    for _ in range(100):  # bisection on a log scale: the bound to a part in 1e6
        mid = math.sqrt(lo * hi)
        if transfer_ms(size_up, size_down, mid, shaper) <= link_ms:
            hi = mid
        else:
            lo = mid
        if hi / lo < 1 + 1e-6:
            break
    return hi


def timeout_bound_bps(upload_bytes: float, total_ms: float, device_ms: float, encode_ms: float = 0.0) -> float:
    """The highest rate consistent with a request the edge did not answer in time: its upload was still under
    way when the device gave up waiting, so the rate was at most its bytes over the time it waited (the
    request's ``total_ms`` minus the device's own work and the encoding; at least 1 ms). Without it, a device
    stuck on an edge plan during an outage would see no sample at all."""
    waited_ms = float(total_ms) - float(device_ms) - float(encode_ms or 0.0)
    return 8.0 * float(upload_bytes) / (max(waited_ms, 1.0) / 1e3)
