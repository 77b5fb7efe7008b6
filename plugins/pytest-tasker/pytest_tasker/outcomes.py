"""Compare two implementations call by call: same value, or the same exception with the same facts.

Differential tests run one call against the native core and the reference model and assert that
the two :class:`Outcome` values are equal. For tasker's own exceptions the attributes (cycle path,
step, dependency, states ...) and the message must match; for built-in exceptions (ValueError,
IndexError, KeyError, OverflowError) only the type does, since their wording is free.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from tasker_core import TaskerError

__all__ = ["Outcome", "outcome"]


class Outcome(NamedTuple):
    """What a call did: ``value`` if it returned, else the exception type and its facts."""

    value: Any = None
    error: type[BaseException] | None = None
    facts: tuple[tuple[str, Any], ...] = ()
    message: str | None = None


def outcome(call: Callable[..., Any], *args: Any, **kwargs: Any) -> Outcome:
    """Run ``call`` and describe what happened, catching any ``Exception``."""
    try:
        return Outcome(value=call(*args, **kwargs))
    except TaskerError as exc:
        facts = tuple(sorted(vars(exc).items()))
        return Outcome(error=type(exc), facts=facts, message=str(exc))
    except Exception as exc:
        return Outcome(error=type(exc))
