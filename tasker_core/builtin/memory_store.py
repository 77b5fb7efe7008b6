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

from tasker_core._native import StepBatchApplier
from tasker_core.builtin.batch import (
    STORES_RESULTS,
    Change,
    StepKey,
    check_events,
    task_fields,
    write_step_fields,
)
from tasker_core.errors import ConfigError, TaskNotFoundError
from tasker_core.models import Step, StepChange, Task, TaskChange, Transition
from tasker_core.plugin import hookimpl
from tasker_core.serialization import copy_json

if TYPE_CHECKING:
    from tasker_core.config import Config
    from tasker_core.plugin.hookspecs import RegisterStore

__all__ = ["MemoryStore", "make_memory_store", "tasker_register_stores"]

DEFAULT_MAX_CALLS = 10_000

_R = TypeVar("_R", Step, Task)
_Logged = tuple[str, str | None, str, str, str, str, float, int]
"""A stored transition: Transition's fields in order, but ``metadata`` and ``most_recent``."""

_Decided = tuple[int, Change, "dict[str, Any] | None", Any, Any, int]
"""(index, change, its step row or None for a task change, copied metadata, copied results,
the step's attempts before the change)."""
_Undo = tuple["dict[str, Any]", str, int]
"""A step row and the (state, attempts) it had before pass one moved it."""

_TASK_FIELDS = tuple(a.name for a in attrs.fields(Task))


def _row(s: Step) -> dict[str, Any]:
    """A step's fields as a stored row, in Step's field order (get_steps builds Steps from the
    values positionally). A Step's own ``__dict__`` is exactly that (attrs fills it in field
    order, and a frozen instance holds nothing else); a subclass is read field by field."""
    if type(s) is Step:
        return s.__dict__.copy()
    return {
        "task_id": s.task_id,
        "index": s.index,
        "name": s.name,
        "handler": s.handler,
        "state": s.state,
        "max_attempts": s.max_attempts,
        "retryable": s.retryable,
        "attempts": s.attempts,
        "next_retry_at": s.next_retry_at,
        "lease_owner": s.lease_owner,
        "lease_expires_at": s.lease_expires_at,
        "results": s.results,
        "error": s.error,
        "updated_at": s.updated_at,
    }


def _undo(undo: list[_Undo]) -> None:
    """Put step rows back, newest first (a row moved twice in a batch ends as it started)."""
    for row, state, attempts in reversed(undo):
        row["state"] = state
        row["attempts"] = attempts


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
        # Transitions as tuples of scalars (Transition's fields but two), which the cyclic GC
        # stops tracking after its first pass, so a long run's history does not make every later
        # full collection slower. Their metadata dicts (flat ones are untracked too) are kept
        # apart, as a tuple holding any dict stays tracked; most_recent is derived from _recent,
        # the log position of each record's last transition.
        self._transitions: dict[str, list[_Logged]] = {}
        self._metadata: dict[str, list[Any]] = {}
        self._recent: dict[str, dict[str | None, int]] = {}  # task -> step (None: task) -> i
        self._in_progress: set[StepKey] = set()
        self._sort_key = 0
        self._native = StepBatchApplier(
            self._positions,
            self._steps,
            self._transitions,
            self._metadata,
            self._recent,
            self._in_progress,
            StepChange,
            copy_json,
        )

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
                row = _row(step)
                if step.results is not None:
                    row["results"] = copy_json(step.results, "results")
                stored_steps.append(row)
            self._tasks[task.id] = stored_task
            if key is not None:
                self._by_key[key] = task.id
            self._steps[task.id] = stored_steps
            self._positions[task.id] = positions
            self._transitions[task.id] = []
            self._metadata[task.id] = []
            self._recent[task.id] = {}
            for row in stored_steps:
                if row["state"] == "in_progress":
                    self._in_progress.add((task.id, row["name"]))
            return stored_task, True

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        """Store.apply: the usual batch natively, anything else by :meth:`_apply_checked`.

        The rules are batch.py's (the planner the SQLite store uses, and :func:`write_step_fields`
        / :func:`task_fields` for what a change sets); the hypothesis state machine of the
        conformance kit holds both stores to the same reference model. ``StepBatchApplier``
        (tasker_native/crates/tasker-py/src/memory_apply.rs) writes the usual batch (step
        changes only, legal pairs of known steps, payloads that copy, every compare-and-set won
        in an atomic batch) in one pass over this store's own tables, and hands anything else
        back untouched: batches with a task change (a task's first and last), errors and lost
        compare-and-sets then take the two-pass path, which raises in the planner's order.
        """
        with self._lock:
            self._record("apply", changes=len(changes), now=now)
            done = self._native.apply(changes, now, atomic, self._sort_key)
            if done is not None:
                applied, self._sort_key = done
                return applied
            return self._apply_checked(changes, now, atomic)

    def _log(self, out: list[_Logged], metadata: list[Any]) -> None:
        """Record applied changes' transitions (numbered already), and which steps are now in
        progress."""
        logs = self._transitions
        metadata_logs = self._metadata
        recents = self._recent
        in_progress = self._in_progress
        log: list[_Logged] = []
        metadata_log: list[Any] = []
        recent: dict[str | None, int] = {}
        log_tid = None
        for record, meta in zip(out, metadata, strict=True):
            tid, step, from_state, to_state = record[:4]
            if tid != log_tid:
                log_tid = tid
                log = logs[tid]
                metadata_log = metadata_logs[tid]
                recent = recents[tid]
            if step is not None:
                if to_state == "in_progress":
                    in_progress.add((tid, step))
                elif from_state == "in_progress":
                    in_progress.discard((tid, step))
            recent[step] = len(log)
            log.append(record)
            metadata_log.append(meta)
        if out:
            self._sort_key = out[-1][7]

    def _apply_checked(self, changes: Sequence[Change], now: float, atomic: bool) -> list[bool]:
        """Store.apply in two passes: decide every change (raising in the planner's order, with
        nothing written), then write. The path of batches the native pass hands back."""
        events = check_events(changes)
        decided, undo = self._decide(changes)
        if atomic and len(decided) != len(changes):
            _undo(undo)
            return [False] * len(changes)
        # Nothing below can fail: the batch is valid and every payload is already copied.
        applied = [False] * len(changes)
        out: list[_Logged] = []
        metadata_out: list[Any] = []
        sort_key = self._sort_key
        for i, c, row, metadata, results, attempts in decided:
            applied[i] = True
            tid = c.task_id
            step: str | None
            if type(c) is StepChange:
                assert row is not None  # set for every step change
                write_step_fields(row, c, attempts, results, now)
                step = c.step
            else:
                assert type(c) is TaskChange
                task = self._tasks[tid]
                self._tasks[tid] = _with(task, _TASK_FIELDS, task_fields(c, task.started_at, now))
                step = None
            sort_key += 1
            out.append((tid, step, c.from_state, c.to_state, events[i], c.reason, now, sort_key))
            metadata_out.append(metadata)
        self._log(out, metadata_out)
        return applied

    def _decide(self, changes: Sequence[Change]) -> tuple[list[_Decided], list[_Undo]]:
        """The changes that win their compare-and-set, with their step row and copied payloads,
        and how to put back the (state, attempts) of the step rows they moved.

        Raises TaskNotFoundError/KeyError for the first change naming a missing task or step and
        then TypeError for the first payload that is not JSON, as the planner does (having put
        every row back).
        """
        positions = self._positions
        all_steps = self._steps
        tasks = self._tasks
        decided: list[_Decided] = []
        undo: list[_Undo] = []
        task_overlay: dict[str, str] = {}
        not_json: TypeError | None = None
        named: dict[str, int] = {}
        rows: list[dict[str, Any]] = []
        named_tid = None
        try:
            for i, c in enumerate(changes):
                tid = c.task_id
                if tid != named_tid:  # batches mostly name one task: look it up once
                    found = positions.get(tid)
                    if found is None:
                        raise TaskNotFoundError(tid)
                    named, named_tid, rows = found, tid, all_steps[tid]
                if type(c) is StepChange:
                    pos = named.get(c.step)
                    if pos is None:
                        raise KeyError(f"task {tid!r} has no step {c.step!r}")
                    if not_json is not None:
                        continue  # only looking for missing records now
                    try:
                        metadata = copy_json(c.metadata, "metadata")
                        results = (
                            copy_json(c.results, "results")
                            if c.results is not None and c.to_state in STORES_RESULTS
                            else None
                        )
                    except TypeError as exc:
                        not_json = exc
                        continue
                    row = rows[pos]
                    state = row["state"]
                    attempts = row["attempts"]
                    expect = c.expect_attempt
                    if state != c.from_state or (expect is not None and attempts != expect):
                        continue
                    undo.append((row, state, attempts))
                    to = c.to_state
                    row["state"] = to
                    if to == "in_progress":
                        row["attempts"] = attempts + 1
                    decided.append((i, c, row, metadata, results, attempts))
                else:
                    if not_json is not None:
                        continue
                    try:
                        metadata = copy_json(c.metadata, "metadata")
                    except TypeError as exc:
                        not_json = exc
                        continue
                    if task_overlay.get(tid, tasks[tid].state) != c.from_state:
                        continue
                    task_overlay[tid] = c.to_state
                    decided.append((i, c, None, metadata, None, 0))
        except BaseException:
            _undo(undo)
            raise
        if not_json is not None:
            _undo(undo)
            raise not_json
        return decided, undo

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
            return [Step(*row.values()) for row in rows]  # rows keep Step's field order

    def get_transitions(self, task_id: str) -> list[Transition]:
        with self._lock:
            self._record("get_transitions", task_id=task_id)
            log = self._transitions.get(task_id)
            if log is None:
                raise TaskNotFoundError(task_id)
            recent = self._recent[task_id]
            return [
                Transition(
                    tid,
                    step,
                    from_state,
                    to_state,
                    event,
                    reason,
                    metadata,
                    at,
                    sort_key,
                    recent.get(step) == i,
                )
                for i, (
                    (tid, step, from_state, to_state, event, reason, at, sort_key),
                    metadata,
                ) in enumerate(zip(log, self._metadata[task_id], strict=True))
            ]

    def expired_leases(self, now: float, limit: int) -> list[Step]:
        with self._lock:
            self._record("expired_leases", now=now, limit=limit)
            expired: list[Step] = []
            for tid, name in self._in_progress:
                row = self._steps[tid][self._positions[tid][name]]
                if row["lease_expires_at"] is not None and row["lease_expires_at"] < now:
                    expired.append(Step(*row.values()))
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
