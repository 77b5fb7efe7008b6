"""Planning a batch of Store changes: the semantics of ``Store.apply`` in one place.

Both builtin stores read the current state of the records a batch names, hand it to
:func:`plan_batch`, and then write the plan in their own way (dict updates, bulk SQL). Keeping the
rules here means the memory oracle and the SQLite store cannot drift apart; the tests hold both to
an independent model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import define, field

from tasker_core.errors import TaskNotFoundError
from tasker_core.fsm import STEP, TASK
from tasker_core.models import StepChange, TaskChange

Change = StepChange | TaskChange
StepKey = tuple[str, str]
"""(task_id, step name)."""
Encode = Callable[[Any, str], Any]
"""Turns a JSON payload into its stored form, raising TypeError (naming ``where``) if not JSON."""

STORES_RESULTS = frozenset({"complete", "resolved_manually"})
"""Target states whose change stores ``results``."""
_TASK_DONE = frozenset({"complete", "error", "cancelled", "resolved_manually"})


@define(slots=True)
class StepNow:
    """What the planner needs to know about a step: its state and attempt count."""

    state: str
    attempts: int


@define(slots=True)
class TaskNow:
    """What the planner needs to know about a task: its state and whether it ever started."""

    state: str
    started_at: float | None


@define(slots=True)
class PlannedTransition:
    """A transition to record; ``step`` is None for the task's own."""

    task_id: str
    step: str | None
    from_state: str
    to_state: str
    event: str
    reason: str
    metadata: Any
    most_recent: bool = True


@define(slots=True)
class Plan:
    """The outcome of a batch: per-change results and the final field updates per record.

    ``step_updates``/``task_updates`` map a record to the fields to set (domain field names, the
    JSON payloads already encoded); ``*_before`` hold the state each record had before the batch,
    which the writer can use as a compare-and-set guard.
    """

    applied: list[bool]
    step_updates: dict[StepKey, dict[str, Any]] = field(factory=dict)
    task_updates: dict[str, dict[str, Any]] = field(factory=dict)
    step_before: dict[StepKey, StepNow] = field(factory=dict)
    task_before: dict[str, TaskNow] = field(factory=dict)
    transitions: list[PlannedTransition] = field(factory=list)


_LEGAL: dict[tuple[bool, str, str], str] = {}
"""(is a step change, from, to) -> event, for pairs the state tables accepted (fixed)."""


def check_events(changes: Sequence[Change]) -> list[str]:
    """Every change's event name, in order; InvalidTransitionError for the first illegal one."""
    legal = _LEGAL
    out: list[str] = []
    for c in changes:
        is_step = type(c) is StepChange
        key = (is_step, c.from_state, c.to_state)
        event = legal.get(key)
        if event is None:
            table = STEP if is_step else TASK
            event = legal[key] = table.check(c.from_state, c.to_state)
        out.append(event)
    return out


def referenced(changes: Sequence[Change]) -> tuple[set[str], set[StepKey]]:
    """Task ids (of every change) and step keys (of step changes) a batch names."""
    task_ids: set[str] = set()
    step_keys: set[StepKey] = set()
    for c in changes:
        task_ids.add(c.task_id)
        if type(c) is StepChange:
            step_keys.add((c.task_id, c.step))
    return task_ids, step_keys


def write_step_fields(
    out: dict[str, Any], c: StepChange, now_attempts: int, results: Any, now: float
) -> None:
    """Set in ``out`` the fields a step ends up with after ``c`` applied (StepChange's rules).

    ``now_attempts`` is the step's attempt count before ``c``; ``results`` is already encoded.
    Writing into a given mapping lets a store update its own record without an intermediate dict.
    """
    to = c.to_state
    out["state"] = to
    out["updated_at"] = now
    if to == "in_progress":
        out["attempts"] = now_attempts + 1
        out["lease_owner"] = c.lease_owner
        out["lease_expires_at"] = c.lease_expires_at
        out["next_retry_at"] = None
    elif to == "complete":
        out["results"] = results
        out["error"] = None
        out["lease_owner"] = out["lease_expires_at"] = None
    elif to == "error":
        out["error"] = c.error
        out["next_retry_at"] = c.next_retry_at
        out["lease_owner"] = out["lease_expires_at"] = None
    elif to == "resolved_manually":
        out["results"] = results
        out["lease_owner"] = out["lease_expires_at"] = None
    elif to == "cancelled":
        out["lease_owner"] = out["lease_expires_at"] = None
    if c.max_attempts is not None:
        out["max_attempts"] = c.max_attempts


def _step_fields(c: StepChange, now_attempts: int, results: Any, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    write_step_fields(out, c, now_attempts, results, now)
    return out


def task_fields(c: TaskChange, started_at: float | None, now: float) -> dict[str, Any]:
    """The fields a task ends up with after ``c`` applied (TaskChange's rules)."""
    to = c.to_state
    out: dict[str, Any] = {"state": to, "updated_at": now}
    if to == "in_progress":
        out["wake_at"] = None
        if started_at is None:
            out["started_at"] = now
    elif to in _TASK_DONE:
        out["completed_at"] = now
    elif to == "pending":
        out["wake_at"] = c.wake_at
        out["completed_at"] = None
    return out


def plan_batch(
    changes: Sequence[Change],
    events: Sequence[str],
    tasks: Mapping[str, TaskNow],
    steps: Mapping[StepKey, StepNow],
    now: float,
    encode: Encode,
) -> Plan:
    """Decide, in order, which changes apply and what each record ends up as.

    ``tasks``/``steps`` hold the current state of every record the batch names (see
    :func:`referenced`); a missing one raises TaskNotFoundError (no task) or KeyError (no such step
    in an existing task), as does a payload ``encode`` rejects, all before the caller writes.
    """
    for c in changes:
        if c.task_id not in tasks:
            raise TaskNotFoundError(c.task_id)
        if type(c) is StepChange and (c.task_id, c.step) not in steps:
            raise KeyError(f"task {c.task_id!r} has no step {c.step!r}")

    plan = Plan(applied=[False] * len(changes))
    step_cur: dict[StepKey, StepNow] = {}
    task_cur: dict[str, TaskNow] = {}
    last: dict[tuple[str, str | None], int] = {}
    for i, c in enumerate(changes):
        # Payloads are checked whether or not the change applies: a bad batch fails as a whole.
        metadata = encode(c.metadata, "metadata")
        if type(c) is StepChange:
            results = encode(c.results, "results") if c.to_state in STORES_RESULTS else None
            key = (c.task_id, c.step)
            cur = step_cur.get(key)
            if cur is None:
                before = steps[key]
                plan.step_before[key] = before
                cur = step_cur[key] = StepNow(before.state, before.attempts)
            if cur.state != c.from_state or (
                c.expect_attempt is not None and cur.attempts != c.expect_attempt
            ):
                continue
            fields = _step_fields(c, cur.attempts, results, now)
            cur.state = c.to_state
            cur.attempts = fields.get("attempts", cur.attempts)
            plan.step_updates.setdefault(key, {}).update(fields)
            record: tuple[str, str | None] = key
            step_name: str | None = c.step
        else:
            assert isinstance(c, TaskChange)
            tcur = task_cur.get(c.task_id)
            if tcur is None:
                tbefore = tasks[c.task_id]
                plan.task_before[c.task_id] = tbefore
                tcur = task_cur[c.task_id] = TaskNow(tbefore.state, tbefore.started_at)
            if tcur.state != c.from_state:
                continue
            fields = task_fields(c, tcur.started_at, now)
            tcur.state = c.to_state
            tcur.started_at = fields.get("started_at", tcur.started_at)
            plan.task_updates.setdefault(c.task_id, {}).update(fields)
            record = (c.task_id, None)
            step_name = None
        plan.applied[i] = True
        previous = last.get(record)
        if previous is not None:
            plan.transitions[previous].most_recent = False
        last[record] = len(plan.transitions)
        plan.transitions.append(
            PlannedTransition(
                c.task_id,
                step_name,
                c.from_state,
                c.to_state,
                events[i],
                c.reason,
                metadata,
            )
        )
    return plan
