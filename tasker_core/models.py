"""The domain records every backend stores and every layer passes around.

Frozen attrs classes: safe to share between threads, and converted to and from rows/JSON by the
one cattrs converter (tasker_core.serialization). Those made once or more per step and attempt
(Step, the changes, StepOutcome, WorkItem, Claim, Event) keep a ``__dict__`` instead of slots:
attrs then builds them by writing the dict directly, ~2x faster than one ``object.__setattr__``
per field (what a frozen slotted class needs); the rest are slotted. States are plain strings
from spec/states.toml (``tasker_core.fsm.TaskState``/``StepState`` are StrEnums, so their
members compare equal to these strings).

Changes (``StepChange``, ``TaskChange``) are requests to a Store: compare-and-set on the current
state, legal per the state table, and carrying only the data their transition needs.
"""

from __future__ import annotations

from typing import Any

from attrs import field, frozen

JSON = Any
"""A JSON-compatible value: dict, list, str, int, float, bool or None."""


@frozen
class TaskRequest:
    """What a caller submits: which workflow, with what context."""

    namespace: str
    name: str
    version: str | None = None
    """Exact version, or None for the latest registered/found."""
    context: dict[str, JSON] = field(factory=dict)
    idempotency_key: str | None = None


@frozen
class StepError:
    """Why an attempt failed, as stored with the step and put on events."""

    error_class: str
    message: str
    retryable: bool = True


@frozen
class Task:
    id: str
    namespace: str
    name: str
    version: str
    state: str
    context: dict[str, JSON]
    created_at: float
    updated_at: float
    idempotency_key: str | None = None
    started_at: float | None = None
    completed_at: float | None = None
    wake_at: float | None = None
    """While ``pending`` after a ``wait``: the earliest time a step becomes eligible again."""

    @property
    def workflow_key(self) -> str:
        return f"{self.namespace}/{self.name}@{self.version}"


@frozen(slots=False)
class Step:
    """One step of one task. Identified by (task_id, name); ``index`` is its graph position."""

    task_id: str
    index: int
    name: str
    handler: str
    state: str
    max_attempts: int
    retryable: bool
    attempts: int = 0
    next_retry_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    results: JSON = None
    error: StepError | None = None
    updated_at: float = 0.0


@frozen
class Transition:
    """One recorded state change. ``step`` is None for the task's own transitions."""

    task_id: str
    step: str | None
    from_state: str
    to_state: str
    event: str
    reason: str
    metadata: dict[str, JSON]
    created_at: float
    sort_key: int
    """Strictly increasing within a task: the order transitions happened in."""
    most_recent: bool
    """True for the latest transition of its record (task or step). A store may keep it as a
    column or derive it when reading (the builtin stores derive it from the record's pointer to
    its last transition, so recording a transition never rewrites the previous one)."""


@frozen(slots=False)
class StepChange:
    """Move one step from ``from_state`` to ``to_state`` if it is still there (compare-and-set).

    Effects a Store applies besides the state and the Transition record, by target state:
    ``in_progress`` adds one to ``attempts`` and sets the lease (``lease_owner``,
    ``lease_expires_at``) and clears ``next_retry_at``; ``complete`` stores ``results``, clears the
    lease and the error; ``error`` stores ``error`` and ``next_retry_at`` (None when the failure is
    permanent) and clears the lease; ``resolved_manually`` stores ``results`` and clears the lease;
    ``cancelled`` clears the lease; ``enqueued`` changes nothing else. ``max_attempts``, when given,
    replaces the step's budget (a manual retry grants more attempts).

    ``expect_attempt`` fences changes out of ``in_progress``: when set, the change applies only if
    the step's ``attempts`` still equals it, so a worker whose lease was lost and re-claimed cannot
    complete someone else's attempt.
    """

    task_id: str
    step: str
    from_state: str
    to_state: str
    reason: str = ""
    metadata: dict[str, JSON] = field(factory=dict)
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    results: JSON = None
    error: StepError | None = None
    next_retry_at: float | None = None
    expect_attempt: int | None = None
    max_attempts: int | None = None


@frozen(slots=False)
class TaskChange:
    """Move a task from ``from_state`` to ``to_state`` if it is still there (compare-and-set).

    ``in_progress`` sets ``started_at`` the first time and clears ``wake_at``;
    ``complete``/``error``/``cancelled``/``resolved_manually`` set ``completed_at``; ``pending``
    stores ``wake_at`` (and clears ``completed_at`` on a manual retry).
    """

    task_id: str
    from_state: str
    to_state: str
    reason: str = ""
    metadata: dict[str, JSON] = field(factory=dict)
    wake_at: float | None = None


@frozen(slots=False)
class StepOutcome:
    """What running one attempt of a handler produced, as reported by an executor."""

    task_id: str
    step: str
    attempt: int
    ok: bool
    results: JSON = None
    error: StepError | None = None
    retry_after: float | None = None
    started_at: float = 0.0
    duration: float = 0.0


@frozen(slots=False)
class Event:
    """A lifecycle event. ``data`` holds the event's own catalogue fields (step, attempt, ...)."""

    name: str
    id: str
    time: float
    task_id: str
    namespace: str
    workflow: str
    version: str
    data: dict[str, JSON] = field(factory=dict)

    def to_dict(self) -> dict[str, JSON]:
        """The flat wire shape: common fields plus the event's own (see spec/events.toml)."""
        out: dict[str, JSON] = {
            "name": self.name,
            "id": self.id,
            "time": self.time,
            "task_id": self.task_id,
            "namespace": self.namespace,
            "workflow": self.workflow,
            "version": self.version,
        }
        out.update(self.data)
        return out


@frozen(slots=False)
class WorkItem:
    """A queue message: run this step of this task, not before ``available_at``."""

    task_id: str
    step: str
    available_at: float = 0.0


@frozen(slots=False)
class Claim:
    """A leased work item. ``token`` tells this claim from later claims of the same item."""

    item: WorkItem
    owner: str
    token: int
    expires_at: float
