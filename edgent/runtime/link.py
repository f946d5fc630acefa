"""What the application adds to the link: the round-trip delay (this kernel has no netem) and, without root, an
emulated rate limit (a token bucket in the device's socket writes and reads) that stands in for ``tc tbf``."""

from __future__ import annotations

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
        if rate_bps is not None and not rate_bps > 0:
            raise ConfigError(f"the link rate must be > 0 bit/s, got {rate_bps}")
        self.rate_bps = rate_bps

    def one_way_delay(self) -> None:
        """Sleep half the round-trip delay (called once before sending and once after receiving)."""
        if self.delay_ms > 0:
            time.sleep(self.delay_ms / 2e3)

    def _pace(self, nbytes: int, up: bool) -> None:
        rate = self.rate_bps
        if rate is None or nbytes <= 0:
            return
        with self._lock:
            now = time.monotonic()
            free = max(now, self._up_free_s if up else self._down_free_s)
            free += 8.0 * nbytes / rate
            if up:
                self._up_free_s = free
            else:
                self._down_free_s = free
        wait = free - now - 8.0 * self.bucket_bytes / rate
        if wait > 0:
            time.sleep(wait)

    def pace_upload(self, nbytes: int) -> None:
        """Block until the token bucket lets ``nbytes`` go up."""
        self._pace(nbytes, True)

    def pace_download(self, nbytes: int) -> None:
        """Block until the token bucket lets ``nbytes`` come down."""
        self._pace(nbytes, False)
