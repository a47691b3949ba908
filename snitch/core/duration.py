"""Human durations for rule lifetimes: ``30s``, ``5m``, ``1h``, ``2d``, ``1w``, ``1h30m``."""

from __future__ import annotations

import re

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError for anything that is not a positive duration.

    A bare number is seconds. Parts may be chained, largest first or not: ``1h30m``.
    """
    s = text.strip().lower()
    if not s:
        raise ValueError("empty duration")
    if re.fullmatch(r"\d+(?:\.\d+)?", s):
        seconds = float(s)
    else:
        pos, seconds = 0, 0.0
        for m in _PART.finditer(s):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _UNITS[m.group(2)]
            pos = m.end()
        if pos != len(s):
            raise ValueError(f"bad duration {text!r} (use e.g. 30s, 5m, 1h, 2d)")
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest chained form, rounded down to whole seconds: ``5400`` -> ``1h30m``."""
    rest = max(0, int(seconds))
    if rest == 0:
        return "0s"
    parts = []
    for unit, size in sorted(_UNITS.items(), key=lambda kv: -kv[1]):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)
