"""The SQLite store: the embedded, durable default (SQLAlchemy 2 Core over the sqlite3 driver).

One writer: writes take an in-process lock and run in ``BEGIN IMMEDIATE`` transactions on one
connection, so a writer in another process waits (busy timeout) instead of failing half-way. WAL
lets readers in any process run next to that writer without ever seeing "database is locked";
reads use plain (deferred) transactions so they see one consistent snapshot. Durability: WAL with
``synchronous = NORMAL`` (a committed batch survives the process being killed; a power loss can
lose the last commits, never corrupt the file).

``apply`` runs once per orchestration tick, so it is built for batches and goes to the driver
directly: one transaction; steps read once (the writer remembers their state until another
connection commits); one guarded executemany per shape of step UPDATE; new transitions in
multi-row INSERTs; no older transition row rewritten (``most_recent`` is derived on read).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from attrs import define
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    select,
    union_all,
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
from tasker_core.fsm import TERMINAL_TASK_STATES
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
KNOWN_TASKS = 256
"""Tasks whose steps the writer remembers between batches (more: it forgets them all)."""
STATEMENT_CACHE = 256
"""Prepared statements kept per connection: every padded lookup and INSERT size stays cached."""

_T = TypeVar("_T")

# Reads: columns labelled with the domain field names, so rows structure straight into models.
_STEP_COLUMNS = [
    c.label("index") if c.name == "idx" else c
    for c in steps_t.columns
    if c.name != "last_transition_id"
]
_TASK_COLUMNS = [c for c in tasks_t.columns if c.name != "last_transition_id"]
# A transition is its record's most recent one when the record's last_transition_id names it.
_CURRENT_IDS = union_all(
    select(steps_t.c.last_transition_id).where(steps_t.c.task_id == bindparam("task_id")),
    select(tasks_t.c.last_transition_id).where(tasks_t.c.id == bindparam("task_id")),
)
_TRANSITION_COLUMNS = [
    *(c.label("sort_key") if c.name == "id" else c for c in transitions_t.columns),
    transitions_t.c.id.in_(_CURRENT_IDS).label("most_recent"),
]
_STEP_KEYS = tuple(c.name for c in _STEP_COLUMNS)
if tuple(f.name for f in attrs.fields(Step)) != _STEP_KEYS:
    raise AssertionError(f"steps columns {_STEP_KEYS} are not Step's fields in order")
_TASK_KEYS = tuple(c.name for c in _TASK_COLUMNS)
_TRANSITION_KEYS = tuple(c.name for c in _TRANSITION_COLUMNS)


@define(slots=True)
class _StepRow(StepNow):
    """A step as the write path reads it: the planner's view plus the row id to update by."""

    rowid: int


_NOTHING_KNOWN: dict[str, _StepRow] = {}


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
    """A Step from a row of _STEP_COLUMNS, built directly: loading a task reads every step, and
    the generic converter cost more than the query. The columns are the fields, in order."""
    (
        task_id,
        index,
        name,
        handler,
        state,
        max_attempts,
        retryable,
        attempts,
        next_retry_at,
        lease_owner,
        lease_expires_at,
        results,
        error,
        updated_at,
    ) = row
    return Step(
        task_id,
        index,
        name,
        handler,
        state,
        max_attempts,
        bool(retryable),
        attempts,
        next_retry_at,
        lease_owner,
        lease_expires_at,
        None if results is None else loads_json(results),
        None if error is None else converter.structure(loads_json(error), StepError),
        updated_at,
    )


def _task_from_row(row: Any) -> Task:
    data = dict(zip(_TASK_KEYS, row, strict=True))
    data["context"] = loads_json(data["context"])
    return converter.structure(data, Task)


def _transition_from_row(row: Any) -> Transition:
    data = dict(zip(_TRANSITION_KEYS, row, strict=True))
    data["metadata"] = loads_json(data["metadata"])
    return converter.structure(data, Transition)


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
        args = {
            "check_same_thread": False,
            "timeout": busy_timeout,
            "cached_statements": STATEMENT_CACHE,
        }
        if self.in_memory:
            self._engine: Engine = create_engine(
                "sqlite://", poolclass=StaticPool, connect_args=args
            )
            self._write_engine = self._engine
        else:
            self.path = Path(database)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._engine = create_engine(
                parsed, pool_size=pool_size, max_overflow=pool_size, connect_args=args
            )
            # Every write goes through one connection (under the write lock): one writer is all
            # SQLite allows anyway, and the hot path keeps that connection's prepared statements.
            self._write_engine = create_engine(parsed, poolclass=StaticPool, connect_args=args)
        self._busy_ms = max(0, round(busy_timeout * 1000))
        for engine in {self._engine, self._write_engine}:
            event.listen(engine, "connect", self._on_connect)
            event.listen(engine, "begin", self._on_begin)
        self.applied_migrations = self._open_schema()
        self._db = self._writer_connection()
        # The steps' (rowid, state, attempts) as this writer last read or wrote them, by task and
        # name: a batch reads only steps it has not seen. Valid while the database's
        # data_version stays put (no other connection committed since).
        self._known: dict[str, dict[str, _StepRow]] = {}
        self._data_version: int | None = None

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

    def _writer_connection(self) -> sqlite3.Connection:
        """The write engine's one driver connection, for ``apply`` to use directly.

        ``apply`` runs once per orchestration tick; the pool checkout, transaction events and
        result wrapping of a SQLAlchemy Connection cost more than its few prepared statements.
        The StaticPool keeps this connection open until :meth:`close`.
        """
        fairy = self._write_engine.raw_connection()
        try:
            db = fairy.driver_connection
        finally:
            fairy.close()
        assert isinstance(db, sqlite3.Connection)
        return db

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
        with self._write_lock, self._write_engine.connect() as conn:
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
        with self._write_lock:
            db = self._db
            cur = db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                self._check_known(cur)
                task_rows = self._task_rows(cur, list(task_ids))
                step_rows = self._step_rows(cur, step_keys, task_rows)
                plan = plan_batch(changes, events, task_rows, step_rows, now, _encode)
                write = bool(plan.transitions) and (not atomic or all(plan.applied))
                if write:
                    self._write_plan(cur, plan, now, step_rows)
                cur.execute("COMMIT")
                if write:
                    self._remember(plan, step_rows)
            except BaseException:
                self._known.clear()  # whatever failed, the next batch reads what is stored
                if db.in_transaction:
                    db.rollback()
                raise
        if atomic and not all(plan.applied):
            return [False] * len(changes)  # nothing was written
        return plan.applied

    def _check_known(self, cur: Any) -> None:
        """Forget the remembered steps if another connection committed since this one did."""
        cur.execute("PRAGMA data_version")
        version = cur.fetchone()[0]
        if version != self._data_version:
            self._known.clear()
            self._data_version = version

    def _remember(self, plan: Plan, step_rows: dict[StepKey, _StepRow]) -> None:
        """After COMMIT: the written steps' new state and attempts; finished tasks forgotten."""
        for key, fields in plan.step_updates.items():
            row = step_rows[key]
            row.state = fields["state"]
            row.attempts = fields.get("attempts", row.attempts)
        for task_id, fields in plan.task_updates.items():
            if fields["state"] in TERMINAL_TASK_STATES:
                self._known.pop(task_id, None)

    @staticmethod
    def _task_rows(cur: Any, ids: list[str]) -> dict[str, TaskNow]:
        out: dict[str, TaskNow] = {}
        for chunk in _chunks(ids, stm.MAX_LOOKUP):
            size = stm.lookup_size(len(chunk))
            cur.execute(stm.task_lookup(size).sql, stm.pad(chunk, size))
            for task_id, state, started_at in cur:
                out[task_id] = TaskNow(state, started_at)
        return out

    def _step_rows(
        self, cur: Any, keys: Collection[StepKey], tasks: Collection[str]
    ) -> dict[StepKey, _StepRow]:
        """The steps ``keys`` names: remembered ones as they are, the rest read per task.

        Only steps of existing ``tasks`` are looked for; the planner reports the others.
        """
        out: dict[StepKey, _StepRow] = {}
        missing: dict[str, list[str]] = {}
        known = self._known
        for key in keys:
            task_id, name = key
            row = known.get(task_id, _NOTHING_KNOWN).get(name)
            if row is not None:
                out[key] = row
            elif task_id in tasks:
                missing.setdefault(task_id, []).append(name)
        if len(known) + len(missing) > KNOWN_TASKS:
            known.clear()
        for task_id, names in missing.items():
            remembered = known.setdefault(task_id, {})
            for chunk in _chunks(names, stm.MAX_LOOKUP):
                size = stm.lookup_size(len(chunk))
                cur.execute(stm.step_lookup(size).sql, (task_id, *stm.pad(chunk, size)))
                for rowid, name, state, attempts in cur:
                    out[(task_id, name)] = remembered[name] = _StepRow(state, attempts, rowid)
        return out

    def _write_plan(
        self, cur: Any, plan: Plan, now: float, step_rows: dict[StepKey, _StepRow]
    ) -> None:
        """Guarded UPDATEs per shape, then the new transitions in multi-row INSERTs.

        The previous transitions are not touched: a record's last_transition_id is what makes a
        transition its most recent one.
        """
        cur.execute(stm.LAST_TRANSITION_ID.sql)
        next_id = int(cur.fetchone()[0] or 0) + 1
        latest: dict[tuple[str, str | None], int] = {}
        flat: list[Any] = []
        for offset, pt in enumerate(plan.transitions):
            if pt.most_recent:
                latest[(pt.task_id, pt.step)] = next_id + offset
            flat += (
                next_id + offset,
                pt.task_id,
                pt.step,
                pt.from_state,
                pt.to_state,
                pt.event,
                pt.reason,
                pt.metadata,
                now,
            )

        expected = 0
        updated = 0
        shapes: dict[tuple[str, ...], list[Params]] = {}
        for key, fields in plan.step_updates.items():
            row = step_rows[key]
            if "error" in fields:
                fields["error"] = _encode_error(fields["error"])
            shape = tuple(fields)
            rows = shapes.get(shape)
            if rows is None:
                rows = shapes[shape] = []
            values = itemgetter(*stm.step_update(shape).columns)(fields)
            rows.append((*values, latest[key], row.rowid, row.state, row.attempts))
        for shape, rows in shapes.items():
            cur.executemany(stm.step_update(shape).sql, rows)
            updated += cur.rowcount
            expected += len(rows)

        for tid, fields in plan.task_updates.items():
            params = {f"v_{name}": value for name, value in fields.items()}
            params["v_last_transition_id"] = latest[(tid, None)]
            params["k_id"] = tid
            params["k_state"] = plan.task_before[tid].state
            update = stm.task_update((*fields, "last_transition_id"))
            cur.execute(update.sql, update.row(params))
            updated += cur.rowcount
            expected += 1

        if updated != expected:
            # Impossible under BEGIN IMMEDIATE unless something writes around the store.
            raise TaskerError(
                f"{self.url}: compare-and-set guard matched {updated} of {expected} records "
                "read in the same transaction; another writer bypassed the write lock"
            )
        width = len(stm.TRANSITION_COLUMNS)
        step = stm.MAX_INSERT_ROWS * width
        for start in range(0, len(flat), step):
            part = flat[start : start + step]
            cur.execute(stm.insert_transitions(len(part) // width), part)

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
            rows = conn.execute(query, {"task_id": task_id}).all()
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
        self._write_engine.dispose()
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
