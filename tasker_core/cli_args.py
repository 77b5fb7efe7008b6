"""argparse value types shared by the `tasker` command and the subcommands plugins add.

Plugins get them from :mod:`tasker_core.plugin` so every command rejects bad numbers and
durations with the same one-line message.
"""

from __future__ import annotations

import argparse

from tasker_core.durations import parse_duration


def positive_int(text: str) -> int:
    """A whole number >= 1 (``--concurrency 4``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def duration(text: str) -> float:
    """Seconds from ``250ms``, ``30s``, ``5m`` or a plain number (``--timeout 2s``)."""
    try:
        return parse_duration(text)
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
