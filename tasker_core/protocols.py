"""The contracts a backend implements: Store, Queue, EventSink, TemplateFinder.

Each method's docstring is the contract: what must be atomic, what must be idempotent, which errors
mean what. The conformance kit (pytest-tasker) is the executable form of these texts; a backend that
passes it can replace a builtin one. All times are UNIX seconds (float) passed in by the caller, so
tests can drive a backend with a controlled clock.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from tasker_core.models import (
    Claim,
    Event,
    Step,
    StepChange,
    Task,
    TaskChange,
    Transition,
    WorkItem,
)

if TYPE_CHECKING:
    from tasker_core.templates import TaskTemplate

Change = StepChange | TaskChange


@runtime_checkable
class Store(Protocol):
    """Durable record of tasks, steps, results and every transition.

    Thread safety: every method may be called from several threads at once. Errors: a missing task
    raises ``TaskNotFoundError``; an illegal transition raises ``InvalidTransitionError`` and writes
    nothing; a lost compare-and-set is not an error (see :meth:`apply`).
    """

    scheme: str
    """The URL scheme this store owns (``memory``, ``sqlite``, ``postgresql``)."""

    def create_task(self, task: Task, steps: Sequence[Step]) -> tuple[Task, bool]:
        """Persist a new task and its steps atomically; return ``(task, True)``.

        Idempotent by ``task.idempotency_key``: when a task with the same non-None key exists,
        nothing is written and ``(existing_task, False)`` is returned, also when two callers race.
        A task id that already exists, a duplicate step name, or a step of another task raises
        ValueError; a context or result that is not plain JSON raises TypeError naming it.
        Nothing is written in either case.
        """
        ...

    def get_task(self, task_id: str) -> Task:
        """The task as stored now; ``TaskNotFoundError`` if there is none."""
        ...

    def list_tasks(
        self, states: Collection[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        """Tasks (in ``states`` when given), newest first by ``created_at`` then id."""
        ...

    def get_steps(self, task_id: str) -> list[Step]:
        """Every step of the task ordered by ``index``; ``TaskNotFoundError`` if no task."""
        ...

    def get_transitions(self, task_id: str) -> list[Transition]:
        """Every transition of the task and its steps, ordered by ``sort_key``."""
        ...

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        """Apply a batch of task and step changes in ONE transaction; say which ones applied.

        Before writing anything, every change is checked against the state table:
        an illegal (from, to) raises ``InvalidTransitionError`` and nothing of the batch is written;
        a change naming a missing task or step raises ``TaskNotFoundError``/``KeyError`` likewise.
        Then each change is a compare-and-set: it applies only if the record is still in
        ``from_state`` (and, for ``StepChange.expect_attempt``, still at that attempt), taking into
        account earlier changes of the same batch; one that does not match is skipped (False) and
        the rest still apply. Each applied change appends a :class:`Transition` (``created_at`` =
        ``now``, next ``sort_key``, ``most_recent`` True, the previous one of that record False) and
        sets ``updated_at`` = ``now``; see StepChange and TaskChange for the other fields.
        A payload (metadata, results) that is not plain JSON raises TypeError naming it, and
        nothing of the batch is written.

        With ``atomic=True`` the batch is all or nothing: if any change loses its compare-and-set,
        nothing is written and every entry is False (the engine builds each tick's changes on
        top of each other and uses this, so a refused tick leaves no partial trace).
        """
        ...

    def heartbeat(
        self, task_id: str, steps: Sequence[str], owner: str, expires_at: float
    ) -> list[bool]:
        """Extend ``owner``'s leases on ``steps`` (only those in_progress and leased to it)."""
        ...

    def expired_leases(self, now: float, limit: int) -> list[Step]:
        """Up to ``limit`` steps ``in_progress`` whose lease expired before ``now``, the longest
        expired first (by ``lease_expires_at``, then task id and step index)."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


@runtime_checkable
class Queue(Protocol):
    """Delivers work items to workers, at least once, with leases.

    Items are keyed by (task_id, step): enqueueing a key that is already waiting or claimed is a
    no-op (the queue never holds two copies of one step). Order: among visible items, the one
    that became visible first is claimed first (ties: enqueue order).
    """

    scheme: str

    def enqueue(self, items: Sequence[WorkItem]) -> None:
        """Add items; each becomes visible at its ``available_at``."""
        ...

    def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Claim]:
        """Lease up to ``limit`` visible items to ``owner`` until ``now + lease``.

        Visible: ``available_at <= now`` and not claimed, or claimed under a lease that expired
        before ``now`` (redelivery). No item is ever held by two live claims.
        """
        ...

    def ack(self, claims: Sequence[Claim]) -> list[bool]:
        """Remove the claimed items; False for a claim that is no longer current (lease lost)."""
        ...

    def nack(self, claims: Sequence[Claim], delay: float, now: float) -> list[bool]:
        """Release the claims; the items become visible again at ``now + delay``."""
        ...

    def extend(self, claims: Sequence[Claim], lease: float, now: float) -> list[Claim | None]:
        """Renew current claims to ``now + lease``; None for a claim that is no longer current."""
        ...

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds until an enqueue may have made work visible."""
        ...

    def __len__(self) -> int:
        """Items waiting or claimed."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class EventSink(Protocol):
    """Receives lifecycle events in batches, from the engine's event thread.

    A sink may be slow or raise: the engine isolates it (its failures are logged and counted, and
    its buffer drops the oldest events rather than block orchestration).

    A sink may set ``inline = True`` to be called on the thread that emits the events instead,
    with no buffer or delivery thread of the engine's: ``publish`` may then run on several
    threads at once and must only hand the events to a bounded queue of its own (dropping and
    counting what does not fit), never wait. Worth it only when the sink's real work runs outside
    the GIL; a raise is still logged and counted, never passed on.
    """

    name: str

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver a batch, oldest first."""
        ...

    def close(self) -> None:
        """Flush what can be flushed and release resources."""
        ...


@runtime_checkable
class TemplateFinder(Protocol):
    """Finds workflow templates the registry does not hold (e.g. YAML files on disk)."""

    def find(self, namespace: str, name: str, version: str | None) -> TaskTemplate | None:
        """The template, the latest version when ``version`` is None, or None if not found."""
        ...
