"""The Postgres store: the Store contract on PostgreSQL (SQLAlchemy pool, psycopg 3, JSONB).

Besides what the contract says, every write keeps the bookkeeping the distributed worker relies
on: per-task counters (satisfied, in flight, retrying, failed) and per-step remaining-parent
counts, and marks a task ``dirty`` when a manual change (cancel, retry, resolve) may have made
work ready, so that a worker re-finalizes it. ``apply`` locks the tasks it touches in id order
(``FOR NO KEY UPDATE``), like every settle does, so one task's changes are serialized and can
never deadlock one another.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Engine
from tasker_core import STEP_MACHINE as STEP
from tasker_core import TASK_MACHINE as TASK
from tasker_core import Config, Step, StepChange, Task, TaskChange, TaskNotFoundError, Transition
from tasker_core.protocols import Change

from tasker_postgres import rows
from tasker_postgres.db import conninfo, make_pool, transaction
from tasker_postgres.schema import LATEST_VERSION, current_version, upgrade

__all__ = ["PostgresStore", "make_postgres_store"]

log = logging.getLogger("tasker.postgres")

DEFAULT_POOL_SIZE = 5
_STORES_RESULTS = frozenset({"complete", "resolved_manually"})
_LEASE_CLEARED = {"lease_owner": None, "lease_expires_at": None}
_TASK_DONE = frozenset({"complete", "error", "cancelled", "resolved_manually"})
_STEP_FIELDS = (
    "state",
    "attempts",
    "max_attempts",
    "next_retry_at",
    "lease_owner",
    "lease_expires_at",
    "results",
    "error",
    "updated_at",
    "last_transition_id",
    "visible_at",
)
_JSONB = frozenset({"results", "error"})


class PostgresStore:
    """A Store in one PostgreSQL database (schema migrated on open unless ``migrate=False``)."""

    scheme = "postgresql"

    def __init__(
        self, url: str, *, pool_size: int = DEFAULT_POOL_SIZE, migrate: bool = True
    ) -> None:
        self.url = url
        self.conninfo = conninfo(url)
        self.pool: Engine = make_pool(url, pool_size)
        self.applied_migrations: list[int] = []
        if migrate:
            self.applied_migrations = self.upgrade()
        else:
            version = self.schema_version()
            if version != LATEST_VERSION:
                self.pool.dispose()
                raise RuntimeError(
                    f"{self._where()}: schema version {version}, this code needs "
                    f"{LATEST_VERSION}: run `tasker db upgrade` (or set store.options.migrate)"
                )

    def _where(self) -> str:
        return conninfo(self.url).split("@")[-1]

    def upgrade(self) -> list[int]:
        """Apply missing migrations; the versions applied (empty when up to date)."""
        with psycopg.connect(self.conninfo) as conn:
            applied = upgrade(conn, self._where())
        if applied:
            log.info("migrated %s to schema version %s", self._where(), applied[-1])
        return applied

    def schema_version(self) -> int:
        with psycopg.connect(self.conninfo) as conn:
            return current_version(conn)

    # -- writes ---------------------------------------------------------------------------------

    def create_task(self, task: Task, steps: Sequence[Step]) -> tuple[Task, bool]:
        context = rows.encode(task.context, "context") or "{}"
        names: set[str] = set()
        counts: Counter[str] = Counter()
        step_rows: list[tuple[Any, ...]] = []
        for s in steps:
            if s.task_id != task.id:
                raise ValueError(f"step {s.name!r} belongs to task {s.task_id!r}, not {task.id!r}")
            if s.name in names:
                raise ValueError(f"task {task.id!r}: duplicate step name {s.name!r}")
            names.add(s.name)
            kind = rows.counter_class(
                s.state,
                s.retryable,
                s.next_retry_at,
                None if s.error is None else s.error.retryable,
                s.attempts,
                s.max_attempts,
            )
            if kind is not None:
                counts[kind] += 1
            step_rows.append(
                (
                    s.task_id,
                    s.index,
                    s.name,
                    s.handler,
                    s.state,
                    s.max_attempts,
                    s.retryable,
                    s.attempts,
                    s.next_retry_at,
                    s.lease_owner,
                    s.lease_expires_at,
                    rows.encode(s.results, f"step {s.name!r} results"),
                    rows.encode_error(s.error),
                    s.updated_at,
                    s.updated_at if s.state == "enqueued" else None,
                )
            )
        try:
            return self._insert_task(task, context, counts, step_rows)
        except psycopg.errors.UniqueViolation as exc:
            raise ValueError(f"task {task.id!r} already exists") from exc

    def _insert_task(
        self, task: Task, context: str, counts: Counter[str], step_rows: list[tuple[Any, ...]]
    ) -> tuple[Task, bool]:
        with transaction(self.pool) as cur:
            cur.execute(
                "INSERT INTO tasker_tasks (id, namespace, name, version, state, context, "
                "created_at, updated_at, idempotency_key, started_at, completed_at, wake_at, "
                "total, satisfied, in_flight, retrying, failed) VALUES (%s, %s, %s, %s, %s, "
                "%s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
                (
                    task.id,
                    task.namespace,
                    task.name,
                    task.version,
                    task.state,
                    context,
                    task.created_at,
                    task.updated_at,
                    task.idempotency_key,
                    task.started_at,
                    task.completed_at,
                    task.wake_at,
                    len(step_rows),
                    counts["satisfied"],
                    counts["in_flight"],
                    counts["retrying"],
                    counts["failed"],
                ),
            )
            if cur.fetchone() is None:
                cur.execute(
                    f"SELECT {rows.TASK_COLUMNS} FROM tasker_tasks WHERE idempotency_key = %s",
                    (task.idempotency_key,),
                )
                found = cur.fetchone()
                if found is None:  # pragma: no cover - the conflict row vanished (deleted)
                    raise ValueError(f"task {task.id!r}: idempotency key conflict, no task")
                return rows.task_from_row(found), False
            if step_rows:
                with cur.copy(
                    "COPY tasker_steps (task_id, idx, name, handler, state, max_attempts, "
                    "retryable, attempts, next_retry_at, lease_owner, lease_expires_at, results, "
                    "error, updated_at, visible_at) FROM STDIN"
                ) as copy:
                    for row in step_rows:
                        copy.write_row(row)
            cur.execute("SELECT pg_notify('tasker_work', 't')")
        return task, True

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        if not changes:
            return []
        events = [
            STEP.check(c.from_state, c.to_state)
            if type(c) is StepChange
            else TASK.check(c.from_state, c.to_state)
            for c in changes
        ]
        task_ids = sorted({c.task_id for c in changes})
        keys = sorted({(c.task_id, c.step) for c in changes if type(c) is StepChange})
        with transaction(self.pool) as cur:
            cur.execute(
                "SELECT id, state, started_at, last_transition_id, graph_loaded "
                "FROM tasker_tasks WHERE id = ANY(%s) ORDER BY id FOR NO KEY UPDATE",
                (task_ids,),
            )
            tasks = {r[0]: list(r) for r in cur.fetchall()}
            steps: dict[tuple[str, str], list[Any]] = {}
            if keys:
                cur.execute(
                    "SELECT s.task_id, s.name, s.idx, s.state, s.attempts, s.max_attempts, "
                    "s.retryable, s.next_retry_at, s.error, s.last_transition_id, s.children "
                    "FROM tasker_steps s JOIN unnest(%s::text[], %s::text[]) AS k(t, n) "
                    "ON s.task_id = k.t AND s.name = k.n ORDER BY s.task_id, s.idx FOR UPDATE "
                    "OF s",
                    ([k[0] for k in keys], [k[1] for k in keys]),
                )
                steps = {(r[0], r[1]): list(r) for r in cur.fetchall()}
            plan = _Plan(changes, events, tasks, steps, now)
            if atomic and not all(plan.applied):
                return [False] * len(changes)
            if plan.transitions:
                plan.write(cur)
        return plan.applied

    def heartbeat(
        self, task_id: str, steps: Sequence[str], owner: str, expires_at: float
    ) -> list[bool]:
        with transaction(self.pool) as cur:
            cur.execute("SELECT 1 FROM tasker_tasks WHERE id = %s", (task_id,))
            if cur.fetchone() is None:
                raise TaskNotFoundError(task_id)
            cur.execute(
                "UPDATE tasker_steps SET lease_expires_at = %s WHERE task_id = %s "
                "AND name = ANY(%s) AND state = 'in_progress' AND lease_owner = %s RETURNING name",
                (expires_at, task_id, list(dict.fromkeys(steps)), owner),
            )
            held = {r[0] for r in cur.fetchall()}
        return [name in held for name in steps]

    # -- reads ----------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        with transaction(self.pool) as cur:
            cur.execute(f"SELECT {rows.TASK_COLUMNS} FROM tasker_tasks WHERE id = %s", (task_id,))
            row = cur.fetchone()
        if row is None:
            raise TaskNotFoundError(task_id)
        return rows.task_from_row(row)

    def list_tasks(
        self, states: Collection[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        where = sql.SQL("WHERE state = ANY(%(states)s) ") if states is not None else sql.SQL("")
        query = sql.SQL(
            "SELECT {cols} FROM tasker_tasks {where}ORDER BY created_at DESC, id DESC "
            "LIMIT %(limit)s OFFSET %(offset)s"
        ).format(cols=sql.SQL(rows.TASK_COLUMNS), where=where)
        params = {"states": list(states or ()), "limit": limit, "offset": offset}
        with transaction(self.pool) as cur:
            cur.execute(query, params)
            found = cur.fetchall()
        return [rows.task_from_row(r) for r in found]

    def get_steps(self, task_id: str) -> list[Step]:
        with transaction(self.pool) as cur:
            cur.execute(
                f"SELECT {rows.STEP_COLUMNS} FROM tasker_steps WHERE task_id = %s ORDER BY idx",
                (task_id,),
            )
            found = cur.fetchall()
            if not found:
                self._require_task(cur, task_id)
        return [rows.step_from_row(r) for r in found]

    def get_transitions(self, task_id: str) -> list[Transition]:
        with transaction(self.pool) as cur:
            cur.execute(
                f"SELECT {rows.TRANSITION_COLUMNS} FROM tasker_transitions WHERE task_id = %s "
                "ORDER BY id",
                (task_id,),
            )
            found = cur.fetchall()
            if not found:
                self._require_task(cur, task_id)
        return [rows.transition_from_row(r) for r in found]

    @staticmethod
    def _require_task(cur: psycopg.Cursor[Any], task_id: str) -> None:
        cur.execute("SELECT 1 FROM tasker_tasks WHERE id = %s", (task_id,))
        if cur.fetchone() is None:
            raise TaskNotFoundError(task_id)

    def expired_leases(self, now: float, limit: int) -> list[Step]:
        with transaction(self.pool) as cur:
            cur.execute(
                f"SELECT {rows.STEP_COLUMNS} FROM tasker_steps WHERE state = 'in_progress' "
                "AND lease_expires_at < %s ORDER BY lease_expires_at, task_id, idx LIMIT %s",
                (now, limit),
            )
            found = cur.fetchall()
        return [rows.step_from_row(r) for r in found]

    def close(self) -> None:
        self.pool.dispose()


class _Plan:
    """Decide, in order, which changes of a batch apply; then write them (see Store.apply)."""

    def __init__(
        self,
        changes: Sequence[Change],
        events: Sequence[str],
        tasks: dict[str, list[Any]],
        steps: dict[tuple[str, str], list[Any]],
        now: float,
    ) -> None:
        for c in changes:
            if c.task_id not in tasks:
                raise TaskNotFoundError(c.task_id)
            if type(c) is StepChange and (c.task_id, c.step) not in steps:
                raise KeyError(f"task {c.task_id!r} has no step {c.step!r}")
        self.now = now
        self.tasks = tasks
        self.steps = steps
        self.applied = [False] * len(changes)
        self.step_fields: dict[tuple[str, str], dict[str, Any]] = {}
        self.task_fields: dict[str, dict[str, Any]] = {}
        self.transitions: list[list[Any]] = []
        self.last: dict[tuple[str, str | None], int] = {}
        self.satisfied: list[tuple[str, str]] = []
        # (state, attempts, max_attempts, retryable, next_retry_at, error retryable)
        step_now = {
            k: [
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                None if r[8] is None else rows.decode(r[8])["retryable"],
            ]
            for k, r in steps.items()
        }
        self.before = {k: list(v) for k, v in step_now.items()}
        task_now = {tid: [r[1], r[2]] for tid, r in tasks.items()}
        for i, c in enumerate(changes):
            metadata = rows.encode(c.metadata, "metadata") or "{}"
            if type(c) is StepChange:
                results = (
                    rows.encode(c.results, "results") if c.to_state in _STORES_RESULTS else None
                )
                key = (c.task_id, c.step)
                cur = step_now[key]
                if cur[0] != c.from_state or (
                    c.expect_attempt is not None and cur[1] != c.expect_attempt
                ):
                    continue
                self._step(c, key, cur, results)
                record: tuple[str, str | None] = key
                step_name: str | None = c.step
            else:
                assert isinstance(c, TaskChange)
                tcur = task_now[c.task_id]
                if tcur[0] != c.from_state:
                    continue
                self._task(c, tcur)
                record = (c.task_id, None)
                step_name = None
            self.applied[i] = True
            previous = self.last.get(record)
            if previous is not None:
                self.transitions[previous][9] = False
            self.last[record] = len(self.transitions)
            self.transitions.append(
                [
                    None,
                    c.task_id,
                    step_name,
                    c.from_state,
                    c.to_state,
                    events[i],
                    c.reason,
                    metadata,
                    now,
                    True,
                ]
            )
        self.after = step_now

    def _step(
        self, c: StepChange, key: tuple[str, str], cur: list[Any], results: str | None
    ) -> None:
        to = c.to_state
        out = self.step_fields.setdefault(key, {})
        out["state"] = to
        out["updated_at"] = self.now
        out["visible_at"] = self.now if to == "enqueued" else None
        if to == "in_progress":
            cur[1] += 1
            out["attempts"] = cur[1]
            out["lease_owner"] = c.lease_owner
            out["lease_expires_at"] = c.lease_expires_at
            out["next_retry_at"] = cur[4] = None
        elif to == "complete":
            out["results"] = results
            out["error"] = None
            cur[5] = None
            out.update(_LEASE_CLEARED)
        elif to == "error":
            out["error"] = rows.encode_error(c.error)
            cur[5] = None if c.error is None else c.error.retryable
            out["next_retry_at"] = cur[4] = c.next_retry_at
            out.update(_LEASE_CLEARED)
        elif to == "resolved_manually":
            out["results"] = results
            out.update(_LEASE_CLEARED)
        elif to == "cancelled":
            out.update(_LEASE_CLEARED)
        if c.max_attempts is not None:
            out["max_attempts"] = cur[2] = c.max_attempts
        if to in _STORES_RESULTS:
            self.satisfied.append(key)
        cur[0] = to

    def _task(self, c: TaskChange, cur: list[Any]) -> None:
        to = c.to_state
        out = self.task_fields.setdefault(c.task_id, {})
        out["state"] = to
        out["updated_at"] = self.now
        if to == "in_progress":
            out["wake_at"] = None
            if cur[1] is None:
                out["started_at"] = cur[1] = self.now
        elif to in _TASK_DONE:
            out["completed_at"] = self.now
        elif to == "pending":
            out["wake_at"] = c.wake_at
            out["completed_at"] = None
        cur[0] = to

    def write(self, cur: psycopg.Cursor[Any]) -> None:
        cur.execute(
            "SELECT nextval('tasker_transitions_id_seq') FROM generate_series(1, %s)",
            (len(self.transitions),),
        )
        ids = sorted(r[0] for r in cur.fetchall())
        for tr_id, tr in zip(ids, self.transitions, strict=True):
            tr[0] = tr_id
        latest = {record: self.transitions[i][0] for record, i in self.last.items()}
        flips = [self.steps[k][9] for k in self.step_fields if self.steps[k][9] is not None]
        flips += [self.tasks[t][3] for t in self.task_fields if self.tasks[t][3] is not None]
        deltas: dict[str, Counter[str]] = {}
        for key, fields in self.step_fields.items():
            fields["last_transition_id"] = latest[key]
            kinds = (
                rows.counter_class(*_cls(self.before[key])),
                rows.counter_class(*_cls(self.after[key])),
            )
            if kinds[0] != kinds[1]:
                delta = deltas.setdefault(key[0], Counter())
                if kinds[0] is not None:
                    delta[kinds[0]] -= 1
                if kinds[1] is not None:
                    delta[kinds[1]] += 1
        shapes: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
        for key, fields in self.step_fields.items():
            shape = tuple(f for f in _STEP_FIELDS if f in fields)
            idx = self.steps[key][2]
            shapes.setdefault(shape, []).append((*(fields[f] for f in shape), key[0], idx))
        for shape, step_params in shapes.items():
            assign = ", ".join(f"{f} = %s::jsonb" if f in _JSONB else f"{f} = %s" for f in shape)
            cur.executemany(
                f"UPDATE tasker_steps SET {assign} WHERE task_id = %s AND idx = %s", step_params
            )
        if flips:
            cur.execute(
                "UPDATE tasker_transitions SET most_recent = false WHERE id = ANY(%s)", (flips,)
            )
        cur.executemany(
            "INSERT INTO tasker_transitions (id, task_id, step, from_state, to_state, event, "
            "reason, metadata, created_at, most_recent) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)",
            self.transitions,
        )
        decrements: Counter[tuple[str, int]] = Counter()
        for key in self.satisfied:
            for child in self.steps[key][10] or ():
                decrements[(key[0], child)] += 1
        if decrements:
            cur.executemany(
                "UPDATE tasker_steps SET remaining_parents = remaining_parents - %s "
                "WHERE task_id = %s AND idx = %s",
                [(n, tid, child) for (tid, child), n in decrements.items()],
            )
        touched = set(self.task_fields) | {k[0] for k in self.step_fields}
        for tid in sorted(touched):
            fields = dict(self.task_fields.get(tid, {}))
            if (tid, None) in latest:
                fields["last_transition_id"] = latest[(tid, None)]
            delta = deltas.get(tid, Counter())
            sets = [f"{f} = %s" for f in fields]
            params: list[Any] = list(fields.values())
            for counter in ("satisfied", "in_flight", "retrying", "failed"):
                if delta[counter]:
                    sets.append(f"{counter} = {counter} + %s")
                    params.append(delta[counter])
            if self.tasks[tid][4]:
                sets.append("dirty = true")
            if sets:
                cur.execute(
                    f"UPDATE tasker_tasks SET {', '.join(sets)} WHERE id = %s", (*params, tid)
                )
        cur.execute("SELECT pg_notify('tasker_work', 'tw')")


def _cls(state: list[Any]) -> tuple[str, bool, float | None, bool | None, int, int]:
    """counter_class arguments from a planner state list."""
    return (state[0], state[3], state[4], state[5], state[1], state[2])


def make_postgres_store(url: str, config: Config | None = None) -> PostgresStore:
    """Factory for ``postgresql://`` store URLs: ``store.pool_size``, ``store.options.migrate``."""
    if config is None:
        return PostgresStore(url)
    options = config.store.options
    migrate = options.get("migrate", True)
    if not isinstance(migrate, bool):
        from tasker_core import ConfigError

        raise ConfigError(
            f"expected true or false, got {migrate!r}", key_path="store.options.migrate"
        )
    return PostgresStore(url, pool_size=config.store.pool_size, migrate=migrate)
