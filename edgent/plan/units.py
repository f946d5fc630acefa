"""Strict parsing of rates and durations given on the command line (``400kbit``, ``2Mbit/s``, ``300ms``).

A number without a unit, an unknown unit or an ambiguous one (``kbps``, ``KB``, ``mbit``) is an error that says
what to write instead: a planner fed 400 bit/s instead of 400 kbit/s would silently plan nonsense.
"""

from __future__ import annotations

import math
import re

from edgent.errors import ConfigError

RATE_UNITS_BPS: dict[str, float] = {"bit": 1.0, "kbit": 1e3, "Mbit": 1e6, "Gbit": 1e9}
TIME_UNITS_MS: dict[str, float] = {"us": 1e-3, "ms": 1.0, "s": 1e3}

_NUMBER = r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?"
_VALUE = re.compile(rf"^\s*(?P<num>{_NUMBER})\s*(?P<unit>[A-Za-z/µ]*)\s*$")
_RATE_HINTS = {
    "kbps": "kbit/s", "mbps": "Mbit/s", "gbps": "Gbit/s", "bps": "bit/s", "kb": "kbit (bits) or a byte rate x8",
    "mb": "Mbit (bits)", "kbit": "kbit", "mbit": "Mbit", "gbit": "Gbit", "k": "kbit", "m": "Mbit",
}


def _split(text: str, what: str, example: str) -> tuple[float, str]:
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string like {example!r}, got {text!r}")
    m = _VALUE.match(text)
    if m is None:
        raise ConfigError(f"cannot read {what} {text!r}: write a non-negative number and a unit, e.g. {example!r}")
    value = float(m.group("num"))
    if not math.isfinite(value):
        raise ConfigError(f"{what} {text!r} is not finite")
    return value, m.group("unit")


def parse_rate_bps(text: str, *, what: str = "rate") -> float:
    """Parse a bit rate (``bit``, ``kbit``, ``Mbit``, ``Gbit``, each optionally followed by ``/s``) into bit/s.

    Decimal prefixes (1 kbit = 1000 bit). The rate must be positive.
    """
    value, unit = _split(text, what, "400kbit")
    base = unit[:-2] if unit.endswith("/s") else unit
    if not unit:
        raise ConfigError(f"{what} {text!r} has no unit; write e.g. '{text.strip()}kbit' or '{text.strip()}Mbit/s' "
                          f"(units: {', '.join(RATE_UNITS_BPS)}, optionally with /s)")
    if base not in RATE_UNITS_BPS:
        hint = _RATE_HINTS.get(base.lower())
        extra = f" (did you mean {hint}?)" if hint else ""
        raise ConfigError(f"{what} {text!r} has an unknown unit {unit!r}{extra}; units are bits per second: "
                          f"{', '.join(RATE_UNITS_BPS)}, optionally with /s, e.g. '400kbit' or '2Mbit/s'")
    rate = value * RATE_UNITS_BPS[base]
    if rate <= 0:
        raise ConfigError(f"{what} {text!r} must be positive")
    return rate


def parse_duration_ms(text: str, *, what: str = "duration", allow_zero: bool = True) -> float:
    """Parse a duration (``us``, ``ms``, ``s``) into milliseconds."""
    value, unit = _split(text, what, "300ms")
    if not unit:
        raise ConfigError(f"{what} {text!r} has no unit; write e.g. '{text.strip()}ms' (units: us, ms, s)")
    if unit not in TIME_UNITS_MS:
        hint = {"sec": "s", "secs": "s", "msec": "ms", "µs": "us", "m": "ms or s (minutes are not accepted)",
                "min": "s (minutes are not accepted)", "ns": "us"}.get(unit.lower() if unit != "µs" else unit)
        extra = f" (did you mean {hint}?)" if hint else ""
        raise ConfigError(f"{what} {text!r} has an unknown unit {unit!r}{extra}; units: us, ms, s")
    ms = value * TIME_UNITS_MS[unit]
    if ms == 0 and not allow_zero:
        raise ConfigError(f"{what} {text!r} must be positive")
    return ms


def format_rate(rate_bps: float) -> str:
    """A rate in the largest unit that keeps the number >= 1, e.g. ``400kbit/s``."""
    for unit in ("Gbit", "Mbit", "kbit"):
        if rate_bps >= RATE_UNITS_BPS[unit]:
            return f"{rate_bps / RATE_UNITS_BPS[unit]:g}{unit}/s"
    return f"{rate_bps:g}bit/s"
