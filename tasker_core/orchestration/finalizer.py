"""The execution context: where a task stands and what the engine should do about it.

One pure function, :func:`evaluate`, decides from step counts; the coordinator feeds it counters it
keeps incrementally (O(1) per decision), and :func:`context_from_steps` feeds it stored steps (for
``tasker status`` and ``Engine.execution_context``). Deciding in one place is what keeps the
embedded and distributed finalizers from disagreeing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Protocol

from attrs import frozen

from tasker_core.fsm import STEP, StepState
from tasker_core.models import Step, StepError
from tasker_core.solver import WorkflowGraph


class Status(StrEnum):
    HAS_READY_STEPS = "has_ready_steps"
    PROCESSING = "processing"
    WAITING_FOR_BACKOFF = "waiting_for_backoff"
    BLOCKED_BY_FAILURES = "blocked_by_failures"
    ALL_COMPLETE = "all_complete"


class Action(StrEnum):
    DISPATCH = "dispatch_ready_steps"
    WAIT_FOR_COMPLETIONS = "wait_for_completions"
    WAIT_FOR_BACKOFF = "wait_until_next_retry"
    COMPLETE_TASK = "complete_task"
    FAIL_TASK = "fail_task"


_ACTIONS = {
    Status.HAS_READY_STEPS: Action.DISPATCH,
    Status.PROCESSING: Action.WAIT_FOR_COMPLETIONS,
    Status.WAITING_FOR_BACKOFF: Action.WAIT_FOR_BACKOFF,
    Status.BLOCKED_BY_FAILURES: Action.FAIL_TASK,
    Status.ALL_COMPLETE: Action.COMPLETE_TASK,
}


@frozen
class ExecutionContext:
    total: int
    by_state: dict[str, int]
    ready: int
    in_flight: int
    waiting_for_retry: int
    failed_permanently: int
    status: Status
    action: Action
    next_retry_at: float | None


def evaluate(
    *,
    total: int,
    by_state: Mapping[str, int],
    ready: int,
    waiting_for_retry: int,
    failed_permanently: int,
    next_retry_at: float | None,
    stop_on_failure: bool,
) -> ExecutionContext:
    """Classify a task. Order matters: completion first, then work to do, then work in flight."""
    satisfied = by_state.get(StepState.COMPLETE, 0) + by_state.get(StepState.RESOLVED_MANUALLY, 0)
    in_flight = by_state.get(StepState.ENQUEUED, 0) + by_state.get(StepState.IN_PROGRESS, 0)
    if stop_on_failure and failed_permanently:
        ready = 0
        waiting_for_retry = 0
    if satisfied == total:
        status = Status.ALL_COMPLETE
    elif ready:
        status = Status.HAS_READY_STEPS
    elif in_flight:
        status = Status.PROCESSING
    elif waiting_for_retry:
        status = Status.WAITING_FOR_BACKOFF
    else:
        status = Status.BLOCKED_BY_FAILURES
    return ExecutionContext(
        total=total,
        by_state=dict(by_state),
        ready=ready,
        in_flight=in_flight,
        waiting_for_retry=waiting_for_retry,
        failed_permanently=failed_permanently,
        status=status,
        action=_ACTIONS[status],
        next_retry_at=next_retry_at if status is Status.WAITING_FOR_BACKOFF else None,
    )


class RetryFacts(Protocol):
    """What the retry rule reads: a stored Step and the coordinator's StepView both have it."""

    @property
    def state(self) -> str: ...
    @property
    def retryable(self) -> bool: ...
    @property
    def next_retry_at(self) -> float | None: ...
    @property
    def error(self) -> StepError | None: ...
    @property
    def attempts(self) -> int: ...
    @property
    def max_attempts(self) -> int: ...


def can_retry(step: RetryFacts) -> bool:
    """An errored step that still has a scheduled retry (not failed for good)."""
    return (
        step.state == StepState.ERROR
        and step.retryable
        and step.next_retry_at is not None
        and (step.error is None or step.error.retryable)
        and step.attempts < step.max_attempts
    )


def context_from_steps(
    steps: Sequence[Step], graph: WorkflowGraph, now: float, *, stop_on_failure: bool
) -> ExecutionContext:
    """The execution context of stored steps (``steps[i]`` is graph step i)."""
    by_state = Counter(s.state for s in steps)
    retrying = [s for s in steps if can_retry(s)]
    ready = graph.ready(
        [STEP.code(s.state) for s in steps],
        [s.attempts for s in steps],
        [s.max_attempts for s in steps],
        [can_retry(s) for s in steps],
        [s.next_retry_at or 0.0 for s in steps],
        [False] * len(steps),
        now,
    )
    return evaluate(
        total=len(steps),
        by_state=by_state,
        ready=len(ready),
        waiting_for_retry=len(retrying),
        failed_permanently=by_state.get(StepState.ERROR, 0) - len(retrying),
        next_retry_at=min((s.next_retry_at or 0.0 for s in retrying), default=None),
        stop_on_failure=stop_on_failure,
    )
