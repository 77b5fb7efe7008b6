"""A model of the Store contract, written from protocols.Store, StepChange/TaskChange and the spec.

It is deliberately longhand (no shared code with any store), so that a store and the model agreeing
after every operation means the store does what the contract's prose says. Also here: small
builders for the tasks and changes the store suite feeds a backend.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import attrs
from tasker_core import Step, StepChange, StepError, Task, TaskChange

from pytest_tasker.reference import ref_step_machine, ref_task_machine

__all__ = [
    "ModelStep",
    "ModelStore",
    "ModelTask",
    "is_legal",
    "make_steps",
    "make_task",
    "start_changes",
]

Change = StepChange | TaskChange

_STEP = ref_step_machine()
_TASK = ref_task_machine()
_CLEARS_LEASE = frozenset({"complete", "error", "resolved_manually", "cancelled"})
_TASK_DONE = frozenset({"complete", "error", "cancelled", "resolved_manually"})


def is_legal(change: Change) -> bool:
    """Whether the spec's state table allows the change's (from, to)."""
    machine = _STEP if isinstance(change, StepChange) else _TASK
    if change.from_state not in machine.states or change.to_state not in machine.states:
        return False
    return machine.can(machine.state_code(change.from_state), machine.state_code(change.to_state))


def make_task(
    task_id: str,
    *,
    key: str | None = None,
    created_at: float = 100.0,
    context: dict[str, Any] | None = None,
    namespace: str = "kit",
    name: str = "wf",
    version: str = "1.0.0",
) -> Task:
    """A fresh ``pending`` task as an engine would create it."""
    return Task(
        task_id,
        namespace,
        name,
        version,
        "pending",
        {"order": 7} if context is None else context,
        created_at,
        created_at,
        key,
    )


def make_steps(
    task_id: str, count: int = 3, *, max_attempts: int = 3, created_at: float = 100.0
) -> list[Step]:
    """``count`` fresh ``pending`` steps named s0, s1, ... of task ``task_id``."""
    return [
        Step(
            task_id,
            i,
            f"s{i}",
            "kit.handler",
            "pending",
            max_attempts,
            True,
            updated_at=created_at,
        )
        for i in range(count)
    ]


def start_changes(
    task_id: str, step: str, owner: str = "w1", expires: float = 200.0
) -> list[StepChange]:
    """pending -> enqueued -> in_progress under a lease held by ``owner``."""
    return [
        StepChange(task_id, step, "pending", "enqueued"),
        StepChange(
            task_id, step, "enqueued", "in_progress", lease_owner=owner, lease_expires_at=expires
        ),
    ]


@attrs.define
class ModelStep:
    """The fields of a Step that changes affect, in the order :meth:`ModelStore.step_view` uses."""

    index: int
    state: str = "pending"
    attempts: int = 0
    max_attempts: int = 3
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    next_retry_at: float | None = None
    results: Any = None
    error: StepError | None = None
    updated_at: float = 0.0


@attrs.define
class ModelTask:
    state: str = "pending"
    started_at: float | None = None
    completed_at: float | None = None
    wake_at: float | None = None
    updated_at: float = 0.0
    created_at: float = 0.0
    steps: dict[str, ModelStep] = attrs.field(factory=dict)
    history: list[tuple[str | None, str, str]] = attrs.field(factory=list)
    """(step or None, from, to) of every applied change, in order."""


class ModelStore:
    """What a store must hold after each call, per the contract."""

    def __init__(self) -> None:
        self.tasks: dict[str, ModelTask] = {}
        self.keys: dict[str, str] = {}

    def create(self, task: Task, steps: Sequence[Step]) -> tuple[str, bool]:
        """(id of the task that now answers for the request, whether it was new)."""
        if task.idempotency_key is not None and task.idempotency_key in self.keys:
            return self.keys[task.idempotency_key], False
        self.tasks[task.id] = ModelTask(
            updated_at=task.updated_at,
            created_at=task.created_at,
            steps={
                s.name: ModelStep(s.index, max_attempts=s.max_attempts, updated_at=s.updated_at)
                for s in steps
            },
        )
        if task.idempotency_key is not None:
            self.keys[task.idempotency_key] = task.id
        return task.id, True

    def apply(self, changes: Sequence[Change], now: float, atomic: bool) -> list[bool]:
        """Apply a batch the store accepted (legal, every record known); the expected answer."""
        saved = copy.deepcopy(self.tasks) if atomic else None
        expected: list[bool] = []
        for c in changes:
            task = self.tasks[c.task_id]
            if isinstance(c, StepChange):
                step = task.steps[c.step]
                ok = step.state == c.from_state and (
                    c.expect_attempt is None or c.expect_attempt == step.attempts
                )
                if ok:
                    _step_effects(step, c, now)
                    task.history.append((c.step, c.from_state, c.to_state))
            else:
                ok = task.state == c.from_state
                if ok:
                    _task_effects(task, c, now)
                    task.history.append((None, c.from_state, c.to_state))
            expected.append(ok)
        if saved is not None and not all(expected):
            self.tasks = saved
            return [False] * len(changes)
        return expected

    def heartbeat(
        self, task_id: str, steps: Sequence[str], owner: str, expires: float
    ) -> list[bool]:
        task = self.tasks[task_id]
        out = []
        for name in steps:
            step = task.steps.get(name)
            held = step is not None and step.state == "in_progress" and step.lease_owner == owner
            if held and step is not None:
                step.lease_expires_at = expires
            out.append(held)
        return out

    def expired(self, now: float) -> set[tuple[str, str]]:
        """(task id, step) of every ``in_progress`` step whose lease expired before ``now``."""
        return {
            (tid, name)
            for tid, task in self.tasks.items()
            for name, step in task.steps.items()
            if step.state == "in_progress"
            and step.lease_expires_at is not None
            and step.lease_expires_at < now
        }

    @staticmethod
    def step_view(step: Step) -> ModelStep:
        """The model's view of a stored step, for comparison."""
        return ModelStep(
            step.index,
            step.state,
            step.attempts,
            step.max_attempts,
            step.lease_owner,
            step.lease_expires_at,
            step.next_retry_at,
            step.results,
            step.error,
            step.updated_at,
        )


def _step_effects(step: ModelStep, c: StepChange, now: float) -> None:
    """StepChange's documented effects, by target state."""
    step.state = c.to_state
    step.updated_at = now
    if c.to_state == "in_progress":
        step.attempts += 1
        step.lease_owner, step.lease_expires_at = c.lease_owner, c.lease_expires_at
        step.next_retry_at = None
    if c.to_state in ("complete", "resolved_manually"):
        step.results = copy.deepcopy(c.results)
    if c.to_state == "complete":
        step.error = None
    if c.to_state == "error":
        step.error, step.next_retry_at = c.error, c.next_retry_at
    if c.to_state in _CLEARS_LEASE:
        step.lease_owner = step.lease_expires_at = None
    if c.max_attempts is not None:
        step.max_attempts = c.max_attempts


def _task_effects(task: ModelTask, c: TaskChange, now: float) -> None:
    """TaskChange's documented effects, by target state."""
    task.state = c.to_state
    task.updated_at = now
    if c.to_state == "in_progress":
        task.wake_at = None
        if task.started_at is None:
            task.started_at = now
    if c.to_state in _TASK_DONE:
        task.completed_at = now
    if c.to_state == "pending":
        task.wake_at, task.completed_at = c.wake_at, None
