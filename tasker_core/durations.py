"""Human-friendly durations (``250ms``, ``30s``, ``5m``, ``1h``, ``1m30s``) as float seconds.

Config files and templates both accept durations; this one parser keeps the spelling the same
everywhere. A bare number means seconds, so values written back as numbers load unchanged.
"""

from __future__ import annotations

import math
import re

__all__ = ["format_duration", "parse_duration"]

_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
# Largest unit first: a compound duration must list its units in this order, each at most once.
_UNITS: tuple[tuple[str, float], ...] = (("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 1e-3))
_PART = re.compile(rf"\s*({_NUMBER})\s*(ms|h|m|s)\s*")
_BARE = re.compile(rf"\s*({_NUMBER})\s*")
_UNIT_RANK = {unit: rank for rank, (unit, _) in enumerate(_UNITS)}
_FACTOR = dict(_UNITS)


def _scale(number: float, unit: str) -> float:
    # Milliseconds divide (correctly rounded) so that "250ms" is exactly the float 0.25.
    return number / 1000.0 if unit == "ms" else number * _FACTOR[unit]


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a non-negative number (seconds) or text like ``1.5s`` or ``1h30m``.

    Raises ValueError naming the offending text when it is not a finite, non-negative duration.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(
            f"invalid duration {value!r}: expected a number of seconds or text like "
            "'250ms', '30s', '5m', '1h'"
        )
    seconds = _parse_text(value) if isinstance(value, str) else float(value)
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"invalid duration {value!r}: must be finite")
    if seconds < 0:
        raise ValueError(f"invalid duration {value!r}: must not be negative")
    return seconds


def _parse_text(text: str) -> float:
    if text.strip().startswith("-"):
        raise ValueError(f"invalid duration {text!r}: must not be negative")
    bare = _BARE.fullmatch(text)
    if bare:
        return float(bare.group(1))
    total = 0.0
    position = 0
    last_rank = -1
    while position < len(text):
        match = _PART.match(text, position)
        if not match or match.end() == position:
            break
        unit = match.group(2)
        rank = _UNIT_RANK[unit]
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {text!r}: units must go from largest to smallest "
                "(h, m, s, ms), each at most once"
            )
        last_rank = rank
        total += _scale(float(match.group(1)), unit)
        position = match.end()
    if position != len(text) or last_rank < 0:
        raise ValueError(
            f"invalid duration {text!r}: expected a number with a unit "
            "(ms, s, m, h), e.g. '250ms', '30s', '5m', '1h', '1m30s'"
        )
    return total


def format_duration(seconds: float) -> str:
    """Shortest readable text that :func:`parse_duration` turns back into exactly ``seconds``."""
    if isinstance(seconds, bool) or math.isnan(seconds) or math.isinf(seconds) or seconds < 0:
        raise ValueError(f"cannot format {seconds!r} as a duration: need a finite number >= 0")
    seconds = float(seconds)
    if seconds == 0:
        return "0s"
    for unit, factor in _UNITS[:3]:
        count = seconds / factor
        if count.is_integer() and 1 <= count < 1e15 and count * factor == seconds:
            return f"{int(count)}{unit}"
    millis = seconds * 1000.0
    if seconds < 1 and millis.is_integer() and millis / 1000.0 == seconds:
        return f"{int(millis)}ms"
    # repr() of a float reads back as the same float, so this spelling always round-trips.
    return f"{seconds!r}s"
