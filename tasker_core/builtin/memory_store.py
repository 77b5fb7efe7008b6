"""The in-memory store: dicts behind one lock, and the inspectable oracle of the tests.

It keeps nothing across processes; it is what tests compare other backends with and what a
throwaway embedded run uses. Every public call is recorded in :attr:`MemoryStore.calls` (bounded),
so a test can assert how an engine talked to its store. Payloads are copied through JSON on the way
in, so the store holds exactly what a durable backend would give back.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from tasker_core.builtin.batch import (
    Change,
    StepKey,
    StepNow,
    TaskNow,
    check_events,
    plan_batch,
    referenced,
)
from tasker_core.errors import ConfigError, TaskNotFoundError
from tasker_core.models import Step, Task, Transition
from tasker_core.plugin import hookimpl
from tasker_core.serialization import copy_json

if TYPE_CHECKING:
    from tasker_core.config import Config
    from tasker_core.plugin.hookspecs import RegisterStore

__all__ = ["MemoryStore", "make_memory_store", "tasker_register_stores"]

DEFAULT_MAX_CALLS = 10_000

_R = TypeVar("_R", Step, Task)
_MOST_RECENT = [a.name for a in attrs.fields(Transition)].index("most_recent")


_STEP_FIELDS = tuple(a.name for a in attrs.fields(Step))
_TASK_FIELDS = tuple(a.name for a in attrs.fields(Task))


def _with(record: _R, names: tuple[str, ...], updates: dict[str, Any]) -> _R:
    """``record`` with ``updates`` applied (attrs.evolve without its per-call introspection)."""
    return type(record)(*[updates[n] if n in updates else getattr(record, n) for n in names])


class MemoryStore:
    """A Store in process memory. ``calls`` lists ``(method, summary)`` of every call, oldest first.

    ``max_calls`` bounds the call log (oldest entries are dropped), so a long embedded run does not
    grow without limit; ``record_calls=False`` turns it off.
    """

    scheme = "memory"

    def __init__(self, *, record_calls: bool = True, max_calls: int | None = DEFAULT_MAX_CALLS):
        self.record_calls = record_calls
        self.max_calls = max_calls
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.RLock()
        self._init_data()

    def _init_data(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._by_key: dict[str, str] = {}
        # Steps as mutable field dicts: a change updates fields in place; reads build Step objects.
        self._steps: dict[str, list[dict[str, Any]]] = {}
        self._positions: dict[str, dict[str, int]] = {}
        # Transitions as mutable field lists (Transition's field order), so most_recent can flip.
        self._transitions: dict[str, list[list[Any]]] = {}
        self._recent: dict[tuple[str, str | None], int] = {}
        self._in_progress: set[StepKey] = set()
        self._sort_key = 0

    def reset(self) -> None:
        """Forget every task, step, transition and recorded call."""
        with self._lock:
            self._init_data()
            self.calls.clear()

    def _record(self, method: str, **summary: Any) -> None:
        if not self.record_calls:
            return
        calls = self.calls
        calls.append((method, summary))
        limit = self.max_calls
        if limit is not None and len(calls) > 2 * limit:
            del calls[: len(calls) - limit]

    # -- writes ---------------------------------------------------------------------------------

    def create_task(self, task: Task, steps: Sequence[Step]) -> tuple[Task, bool]:
        with self._lock:
            self._record("create_task", task_id=task.id, steps=len(steps))
            key = task.idempotency_key
            if key is not None and key in self._by_key:
                return self._tasks[self._by_key[key]], False
            if task.id in self._tasks:
                raise ValueError(f"task {task.id!r} already exists")
            stored_task = attrs.evolve(task, context=copy_json(task.context, "context"))
            ordered = sorted(steps, key=lambda s: s.index)
            positions: dict[str, int] = {}
            stored_steps: list[dict[str, Any]] = []
            for step in ordered:
                if step.task_id != task.id:
                    raise ValueError(
                        f"step {step.name!r} belongs to task {step.task_id!r}, not {task.id!r}"
                    )
                if step.name in positions:
                    raise ValueError(f"task {task.id!r}: duplicate step name {step.name!r}")
                positions[step.name] = len(stored_steps)
                row = {name: getattr(step, name) for name in _STEP_FIELDS}
                if step.results is not None:
                    row["results"] = copy_json(step.results, "results")
                stored_steps.append(row)
            self._tasks[task.id] = stored_task
            if key is not None:
                self._by_key[key] = task.id
            self._steps[task.id] = stored_steps
            self._positions[task.id] = positions
            self._transitions[task.id] = []
            for row in stored_steps:
                if row["state"] == "in_progress":
                    self._in_progress.add((task.id, row["name"]))
            return stored_task, True

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        events = check_events(changes)
        with self._lock:
            self._record("apply", changes=len(changes), now=now)
            task_ids, step_keys = referenced(changes)
            tasks = {
                tid: TaskNow(t.state, t.started_at)
                for tid in task_ids
                if (t := self._tasks.get(tid)) is not None
            }
            steps: dict[StepKey, StepNow] = {}
            for tid, name in step_keys:
                pos = self._positions.get(tid, {}).get(name)
                if pos is not None:
                    s = self._steps[tid][pos]
                    steps[(tid, name)] = StepNow(s["state"], s["attempts"])
            plan = plan_batch(changes, events, tasks, steps, now, copy_json)
            if atomic and not all(plan.applied):
                return [False] * len(changes)

            # Nothing below can fail: the batch is valid and every payload is already copied.
            for tid, fields in plan.task_updates.items():
                self._tasks[tid] = _with(self._tasks[tid], _TASK_FIELDS, fields)
            for (tid, name), fields in plan.step_updates.items():
                self._steps[tid][self._positions[tid][name]].update(fields)
                if fields["state"] == "in_progress":
                    self._in_progress.add((tid, name))
                else:
                    self._in_progress.discard((tid, name))
            for pt in plan.transitions:
                record = (pt.task_id, pt.step)
                log = self._transitions[pt.task_id]
                previous = self._recent.get(record)
                if previous is not None:
                    log[previous][_MOST_RECENT] = False
                self._sort_key += 1
                log.append(
                    [
                        pt.task_id,
                        pt.step,
                        pt.from_state,
                        pt.to_state,
                        pt.event,
                        pt.reason,
                        pt.metadata,
                        now,
                        self._sort_key,
                        pt.most_recent,
                    ]
                )
                if pt.most_recent:
                    self._recent[record] = len(log) - 1
            return plan.applied

    def heartbeat(
        self, task_id: str, steps: Sequence[str], owner: str, expires_at: float
    ) -> list[bool]:
        with self._lock:
            self._record("heartbeat", task_id=task_id, steps=len(steps), owner=owner)
            if task_id not in self._tasks:
                raise TaskNotFoundError(task_id)
            positions = self._positions[task_id]
            step_list = self._steps[task_id]
            out: list[bool] = []
            for name in steps:
                pos = positions.get(name)
                if pos is None:
                    out.append(False)
                    continue
                row = step_list[pos]
                held = row["state"] == "in_progress" and row["lease_owner"] == owner
                if held:
                    row["lease_expires_at"] = expires_at
                out.append(held)
            return out

    # -- reads ----------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        with self._lock:
            self._record("get_task", task_id=task_id)
            task = self._tasks.get(task_id)
            if task is None:
                raise TaskNotFoundError(task_id)
            return task

    def list_tasks(
        self, states: Collection[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        with self._lock:
            self._record("list_tasks", states=None if states is None else sorted(states))
            wanted = None if states is None else set(states)
            found = [t for t in self._tasks.values() if wanted is None or t.state in wanted]
        found.sort(key=lambda t: (t.created_at, t.id), reverse=True)
        return found[offset : offset + limit]

    def get_steps(self, task_id: str) -> list[Step]:
        with self._lock:
            self._record("get_steps", task_id=task_id)
            rows = self._steps.get(task_id)
            if rows is None:
                raise TaskNotFoundError(task_id)
            return [Step(**row) for row in rows]

    def get_transitions(self, task_id: str) -> list[Transition]:
        with self._lock:
            self._record("get_transitions", task_id=task_id)
            log = self._transitions.get(task_id)
            if log is None:
                raise TaskNotFoundError(task_id)
            return [Transition(*fields) for fields in log]

    def expired_leases(self, now: float, limit: int) -> list[Step]:
        with self._lock:
            self._record("expired_leases", now=now, limit=limit)
            expired: list[Step] = []
            for tid, name in self._in_progress:
                row = self._steps[tid][self._positions[tid][name]]
                if row["lease_expires_at"] is not None and row["lease_expires_at"] < now:
                    expired.append(Step(**row))
        expired.sort(key=lambda s: (s.lease_expires_at or 0.0, s.task_id, s.index))
        return expired[:limit]

    def close(self) -> None:
        with self._lock:
            self._record("close")


def make_memory_store(url: str, config: Config | None = None) -> MemoryStore:
    """Factory for ``memory://``: options ``record_calls`` (bool) and ``max_calls`` (int|null)."""
    options: dict[str, Any] = dict(config.store.options) if config is not None else {}
    record_calls = options.get("record_calls", True)
    max_calls = options.get("max_calls", DEFAULT_MAX_CALLS)
    if not isinstance(record_calls, bool):
        raise ConfigError(
            f"must be true or false, not {record_calls!r}", "store.options.record_calls"
        )
    if max_calls is not None and (
        isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 0
    ):
        raise ConfigError(
            f"must be a non-negative integer or null, not {max_calls!r}", "store.options.max_calls"
        )
    return MemoryStore(record_calls=record_calls, max_calls=max_calls)


@hookimpl
def tasker_register_stores(register: RegisterStore) -> None:
    register("memory", make_memory_store)
