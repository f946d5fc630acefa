"""What the application adds to the link: the round-trip delay (this kernel has no netem) and, without root, an
emulated rate limit (a token bucket in the device's socket writes and reads) that stands in for ``tc tbf``."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from edgent.errors import ConfigError
from edgent.plan.link import shaper_burst_bytes


@dataclass
class AppLink:
    """Round-trip delay ``delay_ms`` (half before sending, half after receiving) and, when ``rate_bps`` is set,
    a token bucket pacing the bytes of each direction (``emulated`` says the rate is not the kernel's). The
    bucket holds ``burst_bytes``, by default the same as ``tc tbf``'s on the namespace testbed
    (:func:`edgent.plan.link.shaper_burst_bytes` of the rate)."""

    delay_ms: float = 0.0
    rate_bps: float | None = None
    burst_bytes: int | None = None
    _up_free_s: float = field(default=0.0, repr=False)
    _down_free_s: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.delay_ms < 0:
            raise ConfigError(f"the link delay must be >= 0 ms, got {self.delay_ms}")
        self.set_rate(self.rate_bps)

    @property
    def emulated(self) -> bool:
        """Whether this link limits the rate itself (no root, no tc)."""
        return self.rate_bps is not None

    @property
    def bucket_bytes(self) -> int:
        """Bytes the bucket lets through at once after an idle spell at the current rate."""
        if self.burst_bytes is not None:
            return int(self.burst_bytes)
        return shaper_burst_bytes(self.rate_bps or 0.0)

    def set_rate(self, rate_bps: float | None) -> None:
        """Change the emulated rate (None: no limit in the application)."""
        if rate_bps is not None and not (math.isfinite(rate_bps) and rate_bps > 0):
            raise ConfigError(f"the link rate must be a finite number > 0 bit/s, got {rate_bps}")
        self.rate_bps = rate_bps

    def one_way_delay(self) -> None:
        """Sleep half the round-trip delay (called once before sending and once after receiving)."""
        if self.delay_ms > 0:
            time.sleep(self.delay_ms / 2e3)

    def _pace(self, nbytes: int, up: bool, max_wait_s: float | None) -> None:
        rate = self.rate_bps
        if rate is None or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            free = max(now, self._up_free_s if up else self._down_free_s) + 8.0 * nbytes / rate
            wait = free - now - 8.0 * self.bucket_bytes / rate
            if max_wait_s is not None and wait > max_wait_s:
                wait = max(max_wait_s, 0.0)  # the bytes do not go: the bucket keeps its tokens
                give_up = True
            else:
                give_up = False
                if up:
                    self._up_free_s = free
                else:
                    self._down_free_s = free
        if wait > 0:
            time.sleep(wait)
        if give_up:
            raise TimeoutError(f"the emulated link ({rate:g} bit/s) cannot carry {nbytes} bytes in "
                               f"{max_wait_s * 1e3:.0f} ms")

    def pace_upload(self, nbytes: int, max_wait_s: float | None = None) -> None:
        """Block until the token bucket lets ``nbytes`` go up; TimeoutError (after waiting ``max_wait_s``) when
        that would take longer than ``max_wait_s``."""
        self._pace(nbytes, True, max_wait_s)

    def pace_download(self, nbytes: int, max_wait_s: float | None = None) -> None:
        """Block until the token bucket lets ``nbytes`` come down (``max_wait_s`` as in :meth:`pace_upload`)."""
        self._pace(nbytes, False, max_wait_s)
