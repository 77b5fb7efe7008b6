"""The SQLite store: the embedded, durable default (SQLAlchemy 2 Core over the sqlite3 driver).

One writer: writes take an in-process lock and run in ``BEGIN IMMEDIATE`` transactions, so a
writer in another process waits (busy timeout) instead of failing half-way. WAL lets readers in
any process run next to that writer without ever seeing "database is locked"; reads use plain
(deferred) transactions so they see one consistent snapshot. ``apply`` is built for batches: one
transaction, one SELECT per ~500 records for the current states, and one executemany per kind of
UPDATE/INSERT, so an orchestration tick with hundreds of changes costs a handful of statements.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

from tasker_core.builtin import sqlite_statements as stm
from tasker_core.builtin.batch import (
    Change,
    Plan,
    StepKey,
    StepNow,
    TaskNow,
    check_events,
    plan_batch,
    referenced,
)
from tasker_core.builtin.sqlite_schema import (
    LATEST_VERSION,
    check_supported,
    current_version,
    migrate,
)
from tasker_core.builtin.sqlite_schema import steps as steps_t
from tasker_core.builtin.sqlite_schema import tasks as tasks_t
from tasker_core.builtin.sqlite_schema import transitions as transitions_t
from tasker_core.builtin.sqlite_statements import Params
from tasker_core.errors import TaskerError, TaskNotFoundError
from tasker_core.models import Step, StepError, Task, Transition
from tasker_core.plugin import hookimpl
from tasker_core.serialization import converter, dumps_json, loads_json

if TYPE_CHECKING:
    from tasker_core.config import Config
    from tasker_core.plugin.hookspecs import RegisterStore

__all__ = ["SQLiteStore", "make_sqlite_store", "tasker_register_stores"]

DEFAULT_BUSY_TIMEOUT = 5.0
DEFAULT_POOL_SIZE = 5
CHUNK = 400
"""Names per IN query in heartbeat: far below SQLite's bound-parameter limit."""

_T = TypeVar("_T")

# Reads: columns labelled with the domain field names, so rows structure straight into models.
_STEP_COLUMNS = [
    c.label("index") if c.name == "idx" else c
    for c in steps_t.columns
    if c.name != "last_transition_id"
]
_TASK_COLUMNS = [c for c in tasks_t.columns if c.name != "last_transition_id"]
_TRANSITION_COLUMNS = [c.label("sort_key") if c.name == "id" else c for c in transitions_t.columns]
_STEP_KEYS = tuple(c.name for c in _STEP_COLUMNS)
_TASK_KEYS = tuple(c.name for c in _TASK_COLUMNS)
_TRANSITION_KEYS = tuple(c.name for c in _TRANSITION_COLUMNS)


def _chunks(items: Sequence[_T], size: int = CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _encode(value: Any, where: str) -> str | None:
    """A JSON payload as stored: text, or NULL for None (TypeError naming ``where`` if not JSON)."""
    if value is None:
        return None
    if type(value) is dict and not value:
        return "{}"
    return dumps_json(value, where)


def _encode_error(error: StepError | None) -> str | None:
    return None if error is None else dumps_json(converter.unstructure(error), "error")


def _step_from_row(row: Any) -> Step:
    data = dict(zip(_STEP_KEYS, row, strict=True))
    if data["results"] is not None:
        data["results"] = loads_json(data["results"])
    if data["error"] is not None:
        data["error"] = loads_json(data["error"])
    return converter.structure(data, Step)


def _task_from_row(row: Any) -> Task:
    data = dict(zip(_TASK_KEYS, row, strict=True))
    data["context"] = loads_json(data["context"])
    return converter.structure(data, Task)


def _transition_from_row(row: Any) -> Transition:
    data = dict(zip(_TRANSITION_KEYS, row, strict=True))
    data["metadata"] = loads_json(data["metadata"])
    return converter.structure(data, Transition)


def _cursor(conn: Connection) -> Any:
    """The DBAPI cursor of ``conn``'s connection, inside the same transaction.

    The per-tick write path runs a handful of prepared statements (compiled once from Core
    constructs in sqlite_statements); going through the driver's cursor directly saves SQLAlchemy's
    per-execution bookkeeping, which was most of a tick's cost.
    """
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


class SQLiteStore:
    """A Store in one SQLite database file (or a private in-memory database).

    ``url``: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` (parent directories
    are created), or ``sqlite://`` / ``sqlite:///:memory:`` for one in-memory database shared by
    every thread of this store (it then serializes reads too, as they share one connection).
    """

    scheme = "sqlite"

    def __init__(
        self,
        url: str = "sqlite://",
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite" or parsed.get_driver_name() != "pysqlite":
            raise ValueError(f"{url!r} is not a sqlite:// URL (driver pysqlite)")
        database = parsed.database or ""
        self.url = url
        self.in_memory = database in ("", ":memory:")
        self.path: Path | None = None
        self._write_lock = threading.RLock()
        self._read_lock: AbstractContextManager[Any] = (
            self._write_lock if self.in_memory else nullcontext()
        )
        if self.in_memory:
            self._engine: Engine = create_engine(
                "sqlite://",
                poolclass=StaticPool,
                connect_args={"check_same_thread": False},
            )
        else:
            self.path = Path(database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(
                parsed,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"check_same_thread": False, "timeout": busy_timeout},
            )
        self._busy_ms = max(0, round(busy_timeout * 1000))
        event.listen(self._engine, "connect", self._on_connect)
        event.listen(self._engine, "begin", self._on_begin)
        self.applied_migrations = self._open_schema()

    def _open_schema(self) -> list[int]:
        """Migrate if needed; an up-to-date database is only read (no write lock at open)."""
        where = str(self.path or self.url)
        with self._read() as conn:
            have = current_version(conn)
        check_supported(have, where)
        if have == LATEST_VERSION:
            return []
        with self._write() as conn:
            return migrate(conn, where)

    # -- connections ----------------------------------------------------------------------------

    def _on_connect(self, dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        """Take BEGIN away from the driver (we emit it) and set the per-connection PRAGMAs."""
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {self._busy_ms:d}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @staticmethod
    def _on_begin(conn: Connection) -> None:
        """Writers take the write lock up front (IMMEDIATE); readers start a snapshot (DEFERRED)."""
        if conn.get_execution_options().get("tasker_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN DEFERRED")

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_lock, self._engine.connect() as conn:
            conn.execution_options(tasker_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._read_lock, self._engine.connect() as conn, conn.begin():
            yield conn

    # -- writes ---------------------------------------------------------------------------------

    def create_task(self, task: Task, steps: Sequence[Step]) -> tuple[Task, bool]:
        context = dumps_json(task.context, "context")
        names: set[str] = set()
        rows: list[Params] = []
        for s in steps:
            if s.task_id != task.id:
                raise ValueError(f"step {s.name!r} belongs to task {s.task_id!r}, not {task.id!r}")
            if s.name in names:
                raise ValueError(f"task {task.id!r}: duplicate step name {s.name!r}")
            names.add(s.name)
            rows.append(
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
                    _encode(s.results, f"step {s.name!r} results"),
                    _encode_error(s.error),
                    s.updated_at,
                )
            )
        task_row = {
            "id": task.id,
            "namespace": task.namespace,
            "name": task.name,
            "version": task.version,
            "state": task.state,
            "context": context,
            "created_at": task.created_at,
            "updated_at": task.updated_at,
            "idempotency_key": task.idempotency_key,
            "started_at": task.started_at,
            "completed_at": task.completed_at,
            "wake_at": task.wake_at,
        }
        with self._write() as conn:
            if task.idempotency_key is not None:
                found = conn.execute(
                    select(*_TASK_COLUMNS).where(tasks_t.c.idempotency_key == task.idempotency_key)
                ).first()
                if found is not None:
                    return _task_from_row(found), False
            try:
                conn.exec_driver_sql(stm.INSERT_TASK.sql, stm.INSERT_TASK.row(task_row))
            except IntegrityError as exc:
                raise ValueError(f"task {task.id!r} already exists") from exc
            if rows:
                conn.exec_driver_sql(stm.INSERT_STEP.sql, rows)
        return task, True

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        if not changes:
            return []
        events = check_events(changes)
        task_ids, step_keys = referenced(changes)
        with self._write() as conn:
            cur = _cursor(conn)
            task_rows = self._task_rows(cur, list(task_ids))
            step_rows = self._step_rows(cur, list(step_keys))
            plan = plan_batch(
                changes,
                events,
                {tid: TaskNow(r[1], r[2]) for tid, r in task_rows.items()},
                {key: StepNow(r[3], r[4]) for key, r in step_rows.items()},
                now,
                _encode,
            )
            if atomic and not all(plan.applied):
                return [False] * len(changes)  # nothing written: the transaction stays empty
            if plan.transitions:
                self._write_plan(cur, plan, now, task_rows, step_rows)
        return plan.applied

    @staticmethod
    def _task_rows(cur: Any, ids: list[str]) -> dict[str, Params]:
        """(id, state, started_at, last_transition_id) by id."""
        out: dict[str, Params] = {}
        for chunk in _chunks(ids, stm.MAX_LOOKUP):
            size = stm.lookup_size(len(chunk))
            cur.execute(stm.task_lookup(size).sql, tuple(stm.pad(chunk, size)))
            for row in cur.fetchall():
                out[row[0]] = tuple(row)
        return out

    @staticmethod
    def _step_rows(cur: Any, keys: list[StepKey]) -> dict[StepKey, Params]:
        """(rowid, task_id, name, state, attempts, last_transition_id) by (task_id, name)."""
        out: dict[StepKey, Params] = {}
        for chunk in _chunks(keys, stm.MAX_LOOKUP):
            size = stm.lookup_size(len(chunk))
            flat = tuple(part for key in stm.pad(chunk, size) for part in key)
            cur.execute(stm.step_lookup(size).sql, flat)
            for row in cur.fetchall():
                out[(row[1], row[2])] = tuple(row)
        return out

    def _write_plan(
        self,
        cur: Any,
        plan: Plan,
        now: float,
        task_rows: dict[str, Params],
        step_rows: dict[StepKey, Params],
    ) -> None:
        """Write a plan: guarded UPDATEs per shape, previous transitions flipped, new ones added."""
        cur.execute(stm.LAST_TRANSITION_ID.sql, ("transitions",))
        found = cur.fetchone()
        seq = found[0] if found is not None else None
        next_id = int(seq or 0) + 1
        latest: dict[tuple[str, str | None], int] = {}
        new_rows: list[Params] = []
        for offset, pt in enumerate(plan.transitions):
            tr_id = next_id + offset
            if pt.most_recent:
                latest[(pt.task_id, pt.step)] = tr_id
            new_rows.append(
                (
                    tr_id,
                    pt.task_id,
                    pt.step,
                    pt.from_state,
                    pt.to_state,
                    pt.event,
                    pt.reason,
                    pt.metadata,
                    now,
                    pt.most_recent,
                )
            )

        flips: list[Params] = []
        expected = 0
        updated = 0
        shapes: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for key, fields in plan.step_updates.items():
            row = step_rows[key]
            if row[5] is not None:
                flips.append((row[5],))
            params = {f"v_{name}": value for name, value in fields.items()}
            if "error" in fields:
                params["v_error"] = _encode_error(fields["error"])
            params["v_last_transition_id"] = latest[key]
            params["k_rowid"] = row[0]
            params["k_state"] = row[3]
            params["k_attempts"] = row[4]
            shapes.setdefault((*fields, "last_transition_id"), []).append(params)
        for shape, rows in shapes.items():
            update = stm.step_update(shape)
            cur.executemany(update.sql, update.rows(rows))
            updated += cur.rowcount
            expected += len(rows)

        shapes = {}
        for tid, fields in plan.task_updates.items():
            trow = task_rows[tid]
            if trow[3] is not None:
                flips.append((trow[3],))
            params = {f"v_{name}": value for name, value in fields.items()}
            params["v_last_transition_id"] = latest[(tid, None)]
            params["k_id"] = tid
            params["k_state"] = trow[1]
            shapes.setdefault((*fields, "last_transition_id"), []).append(params)
        for shape, rows in shapes.items():
            update = stm.task_update(shape)
            cur.executemany(update.sql, update.rows(rows))
            updated += cur.rowcount
            expected += len(rows)

        if updated != expected:
            # Impossible under BEGIN IMMEDIATE unless something writes around the store.
            raise TaskerError(
                f"{self.url}: compare-and-set guard matched {updated} of {expected} records "
                "read in the same transaction; another writer bypassed the write lock"
            )
        if flips:
            cur.executemany(stm.FLIP.sql, flips)
        cur.executemany(stm.INSERT_TRANSITION.sql, new_rows)

    def heartbeat(
        self, task_id: str, steps: Sequence[str], owner: str, expires_at: float
    ) -> list[bool]:
        held: set[str] = set()
        with self._write() as conn:
            self._require_task(conn, task_id)
            names = list(dict.fromkeys(steps))
            owned = select(steps_t.c.name).where(
                steps_t.c.task_id == task_id,
                steps_t.c.name.in_(bindparam("names", expanding=True)),
                steps_t.c.state == "in_progress",
                steps_t.c.lease_owner == owner,
            )
            extend = (
                steps_t.update()
                .where(
                    steps_t.c.task_id == task_id,
                    steps_t.c.name.in_(bindparam("names", expanding=True)),
                )
                .values(lease_expires_at=expires_at)
            )
            for chunk in _chunks(names):
                found = list(conn.execute(owned, {"names": list(chunk)}).scalars())
                if found:
                    conn.execute(extend, {"names": found})
                    held.update(found)
        return [name in held for name in steps]

    # -- reads ----------------------------------------------------------------------------------

    @staticmethod
    def _require_task(conn: Connection, task_id: str) -> None:
        if conn.execute(select(tasks_t.c.id).where(tasks_t.c.id == task_id)).first() is None:
            raise TaskNotFoundError(task_id)

    def get_task(self, task_id: str) -> Task:
        with self._read() as conn:
            row = conn.execute(select(*_TASK_COLUMNS).where(tasks_t.c.id == task_id)).first()
        if row is None:
            raise TaskNotFoundError(task_id)
        return _task_from_row(row)

    def list_tasks(
        self, states: Collection[str] | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        query = select(*_TASK_COLUMNS)
        if states is not None:
            query = query.where(tasks_t.c.state.in_(list(states)))
        query = (
            query.order_by(tasks_t.c.created_at.desc(), tasks_t.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_task_from_row(r) for r in rows]

    def get_steps(self, task_id: str) -> list[Step]:
        query = select(*_STEP_COLUMNS).where(steps_t.c.task_id == task_id).order_by(steps_t.c.idx)
        with self._read() as conn:
            rows = conn.execute(query).all()
            if not rows:
                self._require_task(conn, task_id)
        return [_step_from_row(r) for r in rows]

    def get_transitions(self, task_id: str) -> list[Transition]:
        query = (
            select(*_TRANSITION_COLUMNS)
            .where(transitions_t.c.task_id == task_id)
            .order_by(transitions_t.c.id)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
            if not rows:
                self._require_task(conn, task_id)
        return [_transition_from_row(r) for r in rows]

    def expired_leases(self, now: float, limit: int) -> list[Step]:
        query = (
            select(*_STEP_COLUMNS)
            .where(steps_t.c.state == "in_progress", steps_t.c.lease_expires_at < now)
            .order_by(steps_t.c.lease_expires_at, steps_t.c.task_id, steps_t.c.idx)
            .limit(limit)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_step_from_row(r) for r in rows]

    def schema_version(self) -> int:
        """The schema version of the open database."""
        with self._read() as conn:
            return current_version(conn)

    def close(self) -> None:
        self._engine.dispose()


def make_sqlite_store(url: str, config: Config | None = None) -> SQLiteStore:
    """Factory for ``sqlite://`` URLs: busy timeout and pool size come from ``config.store``."""
    if config is None:
        return SQLiteStore(url)
    return SQLiteStore(
        url, busy_timeout=config.store.busy_timeout, pool_size=config.store.pool_size
    )


@hookimpl
def tasker_register_stores(register: RegisterStore) -> None:
    register("sqlite", make_sqlite_store)
