"""Rows to domain objects, payloads to JSONB text, and the counter class of a step.

The counter classes are what the task row keeps counts of (``satisfied``, ``in_flight``,
``retrying``, ``failed``) so that finalizing a task reads one row instead of scanning its steps.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from tasker_core import Step, StepError, Task, Transition, dumps_json

__all__ = [
    "STEP_COLUMNS",
    "TASK_COLUMNS",
    "TRANSITION_COLUMNS",
    "counter_class",
    "decode",
    "encode",
    "encode_error",
    "encode_metadata",
    "step_from_row",
    "task_from_row",
    "transition_from_row",
]

TASK_COLUMNS = (
    "id, namespace, name, version, state, context, created_at, updated_at, idempotency_key, "
    "started_at, completed_at, wake_at"
)
STEP_COLUMNS = (
    "task_id, idx, name, handler, state, max_attempts, retryable, attempts, next_retry_at, "
    "lease_owner, lease_expires_at, results, error, updated_at"
)
TRANSITION_COLUMNS = (
    "task_id, step, from_state, to_state, event, reason, metadata, created_at, id, most_recent"
)

SATISFIED = frozenset({"complete", "resolved_manually"})
IN_FLIGHT = frozenset({"enqueued", "in_progress"})


WRAP = "$tasker_json"
"""Key of the envelope holding JSON text that JSONB cannot keep exactly (see :func:`encode`)."""
_EXPONENT = re.compile(r"[0-9][eE][-+]?[0-9]")


def encode(value: Any, where: str) -> str | None:
    """JSONB text for a payload (None stays SQL NULL); TypeError naming ``where`` if not JSON.

    JSONB refuses ``\\u0000`` in strings and keeps numbers as exact decimals (``1e300`` would
    come back as a 301-digit integer). Payloads that may hold either (a cheap, conservative text
    check), or that look like the envelope itself, are stored as ``{"$tasker_json": "<text>"}``
    so that what is read back is exactly what was written.
    """
    if value is None:
        return None
    text = dumps_json(value, where)
    if "\\u0000" in text or WRAP in text or _EXPONENT.search(text):
        return json.dumps({WRAP: text}, separators=(",", ":"))
    return text


_ATTEMPT_DURATION = ("attempt", "duration")


def encode_metadata(meta: dict[str, Any]) -> str:
    """:func:`encode` of a transition's metadata (``"{}"`` for none), byte for byte.

    A successful attempt's metadata is always ``{"attempt": int, "duration": float}``; its text
    is built directly (``json`` writes ints and finite floats as ``repr`` does), which costs a
    fraction of the general path: this runs for every outcome settled.
    """
    if tuple(meta) == _ATTEMPT_DURATION:
        attempt, duration = meta["attempt"], meta["duration"]
        if type(attempt) is int and type(duration) is float and math.isfinite(duration):
            seconds = repr(duration)
            text = f'{{"attempt":{attempt!r},"duration":{seconds}}}'
            if "e" in seconds:  # an exponent (1e-05): kept exactly in the envelope, as encode does
                return '{"' + WRAP + '":"' + text.replace('"', '\\"') + '"}'
            return text
    return encode(meta, "metadata") or "{}"


def decode(value: Any) -> Any:
    """The payload :func:`encode` was given, from what JSONB returned."""
    if type(value) is dict and len(value) == 1 and WRAP in value:
        return json.loads(value[WRAP])
    return value


def encode_error(error: StepError | None) -> str | None:
    if error is None:
        return None
    return encode(
        {"error_class": error.error_class, "message": error.message, "retryable": error.retryable},
        "error",
    )


def _error(data: Any) -> StepError | None:
    if data is None:
        return None
    data = decode(data)
    return StepError(str(data["error_class"]), str(data["message"]), bool(data["retryable"]))


def task_from_row(row: Any) -> Task:
    return Task(
        id=row[0],
        namespace=row[1],
        name=row[2],
        version=row[3],
        state=row[4],
        context=decode(row[5]),
        created_at=row[6],
        updated_at=row[7],
        idempotency_key=row[8],
        started_at=row[9],
        completed_at=row[10],
        wake_at=row[11],
    )


def step_from_row(row: Any) -> Step:
    return Step(
        task_id=row[0],
        index=row[1],
        name=row[2],
        handler=row[3],
        state=row[4],
        max_attempts=row[5],
        retryable=row[6],
        attempts=row[7],
        next_retry_at=row[8],
        lease_owner=row[9],
        lease_expires_at=row[10],
        results=decode(row[11]),
        error=_error(row[12]),
        updated_at=row[13],
    )


def transition_from_row(row: Any) -> Transition:
    return Transition(
        task_id=row[0],
        step=row[1],
        from_state=row[2],
        to_state=row[3],
        event=row[4],
        reason=row[5],
        metadata=decode(row[6]),
        created_at=row[7],
        sort_key=row[8],
        most_recent=row[9],
    )


def counter_class(
    state: str,
    retryable: bool,
    next_retry_at: float | None,
    error_retryable: bool | None,
    attempts: int,
    max_attempts: int,
) -> str | None:
    """Which task counter a step in this condition counts toward (None: none of them).

    ``error`` splits like finalizer.can_retry: a scheduled retry with attempts left is
    ``retrying``, anything else ``failed``.
    """
    if state in SATISFIED:
        return "satisfied"
    if state in IN_FLIGHT:
        return "in_flight"
    if state == "error":
        retry = (
            retryable
            and next_retry_at is not None
            and error_retryable is not False
            and attempts < max_attempts
        )
        return "retrying" if retry else "failed"
    return None
