"""What only the SQLite store promises: durability, schema versioning, WAL, bulk statements, and
readers in another process that never see "database is locked"."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, inspect

from tasker_core.builtin import sqlite_store
from tasker_core.builtin.sqlite_schema import LATEST_VERSION, MIGRATIONS, metadata
from tasker_core.builtin.sqlite_store import SQLiteStore, make_sqlite_store
from tasker_core.config import Config
from tasker_core.errors import TaskerError
from tasker_core.models import Step, StepChange, Task, TaskChange

ROOT = Path(__file__).resolve().parents[2]


def new_task(task_id: str, steps: int = 3, created_at: float = 1.0) -> tuple[Task, list[Step]]:
    task = Task(task_id, "ns", "wf", "1.0.0", "pending", {"id": task_id}, created_at, created_at)
    return task, [Step(task_id, i, f"s{i}", "ns.h", "pending", 3, True) for i in range(steps)]


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'dir' / 'tasker.db'}"


@pytest.fixture
def store(db_url: str) -> Iterator[SQLiteStore]:
    s = SQLiteStore(db_url)
    yield s
    s.close()


def count_statements(store: SQLiteStore) -> list[str]:
    """Collects every SQL statement the store's engines send from now on (one per executemany)."""
    seen: list[str] = []

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    for engine in {store._engine, store._write_engine}:
        event.listen(engine, "before_cursor_execute", before)
    return seen


def trace_writer(store: SQLiteStore) -> list[str]:
    """Every statement execution on the writer's connection from now on (one per row of an
    executemany): what ``apply`` really asks SQLite to do."""
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)
    return seen


def test_url_creates_parent_directories(db_url: str, store: SQLiteStore) -> None:
    assert store.path is not None and store.path.exists()
    assert not store.in_memory


def test_data_survives_reopening(db_url: str) -> None:
    first = SQLiteStore(db_url)
    first.create_task(*new_task("t1"))
    first.apply(
        [StepChange("t1", "s0", "pending", "enqueued"), TaskChange("t1", "pending", "in_progress")],
        now=2.0,
    )
    before = (first.get_task("t1"), first.get_steps("t1"), first.get_transitions("t1"))
    first.close()

    second = SQLiteStore(db_url)
    try:
        assert second.applied_migrations == []
        assert (second.get_task("t1"), second.get_steps("t1"), second.get_transitions("t1")) == (
            before
        )
        second.apply([StepChange("t1", "s0", "enqueued", "cancelled")], now=3.0)
        log = second.get_transitions("t1")
        assert log[-1].sort_key > max(t.sort_key for t in before[2])
        assert [t.most_recent for t in log if t.step == "s0"] == [False, True]
    finally:
        second.close()


def test_migrations_apply_once_and_record_the_version(db_url: str) -> None:
    first = SQLiteStore(db_url)
    assert first.applied_migrations == [m.version for m in MIGRATIONS]
    assert first.schema_version() == LATEST_VERSION
    first.close()
    again = SQLiteStore(db_url)
    assert again.applied_migrations == []
    assert again.schema_version() == LATEST_VERSION
    again.close()


def test_migrated_schema_matches_the_table_objects(store: SQLiteStore) -> None:
    inspector = inspect(store._engine)
    for table in metadata.sorted_tables:
        columns = [c["name"] for c in inspector.get_columns(table.name)]
        assert columns == [c.name for c in table.columns], table.name
        pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns], table.name
    indexes = {
        i["name"] for t in ("tasks", "steps", "transitions") for i in inspector.get_indexes(t)
    }
    assert {"ix_tasks_created", "ix_tasks_state_created", "ix_steps_leases"} <= indexes
    assert "ix_transitions_task" in indexes


def test_a_newer_schema_is_refused(db_url: str) -> None:
    SQLiteStore(db_url).close()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO tasker_schema_version VALUES (?, 'from the future', 0)",
            (LATEST_VERSION + 1,),
        )
    engine.dispose()
    with pytest.raises(TaskerError, match=f"schema version {LATEST_VERSION + 1} is newer"):
        SQLiteStore(db_url)


@pytest.mark.parametrize("which", ["_engine", "_write_engine"])
def test_pragmas_on_every_connection(store: SQLiteStore, which: str) -> None:
    with getattr(store, which).connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
        }
    assert pragmas == {
        "journal_mode": "wal",
        "synchronous": 1,  # NORMAL: in WAL mode a commit survives a crash of the process
        "busy_timeout": 5000,
        "foreign_keys": 1,
    }


def test_the_hot_path_writes_on_the_write_engines_connection(store: SQLiteStore) -> None:
    with store._write_engine.connect() as conn:
        assert conn.connection.driver_connection is store._db


def test_factory_takes_busy_timeout_and_pool_size_from_config(db_url: str) -> None:
    config = Config.from_mapping(
        {"store": {"url": db_url, "busy_timeout": "250ms", "pool_size": 2}}
    )
    store = make_sqlite_store(db_url, config)
    try:
        with store._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 250
        assert store._engine.pool.size() == 2  # type: ignore[attr-defined]
    finally:
        store.close()


def test_hook_registers_the_sqlite_scheme() -> None:
    registered: dict[str, Any] = {}
    sqlite_store.tasker_register_stores(register=lambda scheme, f: registered.update({scheme: f}))
    assert registered == {"sqlite": make_sqlite_store}


@pytest.mark.parametrize("url", ["postgresql://localhost/x", "sqlite+aiosqlite:///x.db"])
def test_other_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="not a sqlite:// URL"):
        SQLiteStore(url)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_database_is_shared_by_threads(url: str) -> None:
    store = SQLiteStore(url)
    try:
        assert store.in_memory
        worker = threading.Thread(target=store.create_task, args=new_task("t1"))
        worker.start()
        worker.join()
        assert store.get_task("t1").id == "t1"
        assert store.apply([StepChange("t1", "s1", "pending", "enqueued")], now=1.0) == [True]
    finally:
        store.close()


def test_create_task_inserts_steps_in_bulk(store: SQLiteStore) -> None:
    seen = count_statements(store)
    store.create_task(*new_task("big", steps=5_000))
    inserts = [s for s in seen if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 2  # the task row, then every step in one executemany
    assert len(store.get_steps("big")) == 5_000


def test_apply_runs_a_fixed_number_of_statements_per_batch(store: SQLiteStore) -> None:
    store.create_task(*new_task("wide", steps=300))
    first = trace_writer(store)
    store.apply([StepChange("wide", f"s{i}", "pending", "enqueued") for i in range(300)], now=1.0)
    # The first batch reads the 300 steps (one lookup padded to 512 names); the next remembers.
    assert sum(" IN (" in s and "FROM steps" in s for s in first) == 1, first
    seen = trace_writer(store)
    batch = [
        StepChange("wide", f"s{i}", "enqueued", "in_progress", lease_owner="w", lease_expires_at=9)
        for i in range(300)
    ]
    assert all(store.apply(batch, now=2.0))
    updates = [s for s in seen if s.startswith("UPDATE steps")]
    others = [s for s in seen if not s.startswith("UPDATE steps")]
    assert len(updates) == 300  # one executemany, one guarded row each; no older row rewritten
    # BEGIN, data_version, task lookup, max id, 5 INSERTs of up to 64 transitions, COMMIT.
    assert len(others) == 10, others
    assert others[0] == "BEGIN IMMEDIATE" and others[-1] == "COMMIT"
    assert sum(s.startswith("INSERT INTO transitions") for s in others) == 5
    log = store.get_transitions("wide")
    assert [t.sort_key for t in log] == list(range(1, 601))
    assert [t.most_recent for t in log] == [False] * 300 + [True] * 300


def test_reads_do_not_take_the_write_lock(store: SQLiteStore) -> None:
    store.create_task(*new_task("t1"))
    seen = count_statements(store)
    store.get_task("t1")
    store.list_tasks()
    assert "BEGIN IMMEDIATE" not in seen
    assert "BEGIN DEFERRED" in seen


READER = textwrap.dedent(
    """
    import sys, time
    from tasker_core.builtin.sqlite_store import SQLiteStore
    store = SQLiteStore(sys.argv[1], busy_timeout=float(sys.argv[3]))
    deadline = time.monotonic() + float(sys.argv[2])
    reads = 0
    seen_steps = 0
    while time.monotonic() < deadline:
        for task in store.list_tasks(limit=20):
            store.get_task(task.id)
            seen_steps += len(store.get_steps(task.id))
            reads += 2
        reads += 1
    store.close()
    print(reads, seen_steps)
    """
)


def test_a_reader_process_never_sees_database_is_locked(db_url: str) -> None:
    writer = SQLiteStore(db_url)
    writer.create_task(*new_task("warm", steps=1))
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, db_url, "3.0", "0.05"],  # a short busy timeout on purpose
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 2.5
        n = 0
        while time.monotonic() < deadline and reader.poll() is None:
            task_id = f"t{n}"
            writer.create_task(*new_task(task_id, steps=50, created_at=float(n)))
            names = [f"s{i}" for i in range(50)]
            writer.apply([StepChange(task_id, s, "pending", "enqueued") for s in names], now=1.0)
            writer.apply([StepChange(task_id, s, "enqueued", "cancelled") for s in names], now=2.0)
            n += 1
        out, err = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
        writer.close()
    assert "locked" not in err, err
    assert reader.returncode == 0, err
    reads, seen_steps = map(int, out.split())
    assert n > 5 and reads > 10 and seen_steps > 0


WRITER = textwrap.dedent(
    """
    import sys
    from tasker_core.builtin.sqlite_store import SQLiteStore
    from tasker_core.models import Step, StepChange, Task
    store = SQLiteStore(sys.argv[1])
    for n in range(int(sys.argv[2])):
        tid = f"other{n}"
        store.create_task(
            Task(tid, "ns", "wf", "1", "pending", {}, 1.0, 1.0),
            [Step(tid, i, f"s{i}", "h", "pending", 3, True) for i in range(20)],
        )
        store.apply([StepChange(tid, f"s{i}", "pending", "enqueued") for i in range(20)], now=1.0)
    store.close()
    """
)


def test_two_writer_processes_take_turns(db_url: str) -> None:
    SQLiteStore(db_url).close()
    other = subprocess.Popen(
        [sys.executable, "-c", WRITER, db_url, "40"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    store = SQLiteStore(db_url)
    try:
        for n in range(40):
            store.create_task(*new_task(f"mine{n}", steps=20))
            applied = store.apply(
                [StepChange(f"mine{n}", f"s{i}", "pending", "enqueued") for i in range(20)],
                now=1.0,
            )
            assert all(applied)
        _, err = other.communicate(timeout=60)
        assert other.returncode == 0, err
        tasks = store.list_tasks(limit=1000)
        assert len(tasks) == 80
        assert all(s.state == "enqueued" for t in tasks for s in store.get_steps(t.id))
    finally:
        if other.poll() is None:
            other.kill()
        store.close()
