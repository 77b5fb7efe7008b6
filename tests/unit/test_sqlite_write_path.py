"""The SQLite store's fast write path: the remembered steps, the derived most_recent flag, and the
schema version 2 migration that made them possible."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.builtin.sqlite_schema import LATEST_VERSION, MIGRATIONS
from tasker_core.builtin.sqlite_store import SQLiteStore
from tasker_core.errors import TaskerError
from tasker_core.fsm import STEP
from tasker_core.models import Step, StepChange, Task, TaskChange

STEPS = 4


def new_task(task_id: str, steps: int = STEPS) -> tuple[Task, list[Step]]:
    task = Task(task_id, "ns", "wf", "1.0.0", "pending", {}, 1.0, 1.0)
    return task, [Step(task_id, i, f"s{i}", "ns.h", "pending", 3, True) for i in range(steps)]


def step_change(task_id: str, step: str, from_state: str, to_state: str) -> StepChange:
    if to_state == "in_progress":
        return StepChange(
            task_id, step, from_state, to_state, lease_owner="w", lease_expires_at=50.0
        )
    return StepChange(task_id, step, from_state, to_state)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tasker.db'}"


@pytest.fixture
def pair(url: str) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores on one file, as two processes would have."""
    first = SQLiteStore(url)
    second = SQLiteStore(url)
    yield first, second
    first.close()
    second.close()


def test_a_commit_by_another_connection_makes_the_writer_read_again(
    pair: tuple[SQLiteStore, SQLiteStore],
) -> None:
    mine, other = pair
    mine.create_task(*new_task("t"))
    assert mine.apply([step_change("t", "s0", "pending", "enqueued")], now=1.0) == [True]
    # ``mine`` remembers s0 as enqueued with 0 attempts; ``other`` moves it on.
    assert other.apply([step_change("t", "s0", "enqueued", "in_progress")], now=2.0) == [True]
    assert mine.apply([step_change("t", "s0", "enqueued", "in_progress")], now=3.0) == [False]
    done = StepChange("t", "s0", "in_progress", "complete", results=1, expect_attempt=1)
    assert mine.apply([done], now=4.0) == [True]
    log = [(t.from_state, t.to_state, t.most_recent) for t in mine.get_transitions("t")]
    assert log == [
        ("pending", "enqueued", False),
        ("enqueued", "in_progress", False),
        ("in_progress", "complete", True),
    ]


def test_a_write_around_the_store_is_caught_and_nothing_is_written(url: str) -> None:
    store = SQLiteStore(url)
    try:
        store.create_task(*new_task("t"))
        store.apply([step_change("t", "s0", "pending", "enqueued")], now=1.0)
        # The writer's own connection, bypassing the store: invisible to data_version.
        store._db.execute("UPDATE steps SET state = 'cancelled' WHERE name = 's0'")
        before = store.get_transitions("t")
        with pytest.raises(TaskerError, match="guard matched 1 of 2 records"):
            store.apply(
                [
                    step_change("t", "s0", "enqueued", "in_progress"),
                    TaskChange("t", "pending", "in_progress"),
                ],
                now=2.0,
            )
        assert store.get_transitions("t") == before
        assert store.get_task("t").state == "pending"
        # The failure made the writer forget what it remembered: the next batch reads again.
        assert store.apply([step_change("t", "s0", "enqueued", "in_progress")], now=3.0) == [False]
        assert store.apply([step_change("t", "s1", "pending", "enqueued")], now=3.0) == [True]
    finally:
        store.close()


def test_a_rejected_payload_leaves_the_database_and_the_writer_as_they_were(url: str) -> None:
    store = SQLiteStore(url)
    try:
        store.create_task(*new_task("t"))
        not_json: Any = {1, 2}
        bad = StepChange("t", "s1", "pending", "enqueued", metadata={"x": not_json})
        with pytest.raises(TypeError):
            store.apply([step_change("t", "s0", "pending", "enqueued"), bad], now=1.0)
        assert [s.state for s in store.get_steps("t")] == ["pending"] * STEPS
        assert store.get_transitions("t") == []
        assert store.apply([step_change("t", "s0", "pending", "enqueued")], now=2.0) == [True]
    finally:
        store.close()


def test_finished_tasks_are_forgotten(url: str) -> None:
    store = SQLiteStore(url)
    try:
        store.create_task(*new_task("t", steps=1))
        store.apply([step_change("t", "s0", "pending", "cancelled")], now=1.0)
        assert "t" in store._known
        store.apply([TaskChange("t", "pending", "cancelled")], now=2.0)
        assert "t" not in store._known
    finally:
        store.close()


# -- a differential test: two writers on one file against the memory oracle ---------------------

Batch = tuple[str, list[tuple[int, tuple[str, str]]]]
"""Which store applies it, and (step index, (from, to)) per change."""

_MOVES = [(a.value, b.value) for a in STEP.states for b in STEP.targets(a)]

batches = st.lists(
    st.tuples(
        st.sampled_from(["first", "second"]),
        st.lists(
            st.tuples(st.integers(0, STEPS - 1), st.sampled_from(_MOVES)), min_size=1, max_size=6
        ),
    ),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=batches)
def test_two_writers_agree_with_the_memory_store(tmp_path: Path, batches: list[Batch]) -> None:
    path = tmp_path / f"diff-{id(batches)}.db"
    path.unlink(missing_ok=True)
    stores = {"first": SQLiteStore(f"sqlite:///{path}"), "second": SQLiteStore(f"sqlite:///{path}")}
    oracle = MemoryStore(record_calls=False)
    try:
        stores["first"].create_task(*new_task("t"))
        oracle.create_task(*new_task("t"))
        for now, (who, moves) in enumerate(batches, start=1):
            changes = [step_change("t", f"s{i}", a, b) for i, (a, b) in moves]
            assert stores[who].apply(changes, float(now)) == oracle.apply(changes, float(now))
        for store in stores.values():
            assert store.get_steps("t") == oracle.get_steps("t")
            got = [
                (t.step, t.from_state, t.to_state, t.most_recent)
                for t in store.get_transitions("t")
            ]
            want = [
                (t.step, t.from_state, t.to_state, t.most_recent)
                for t in oracle.get_transitions("t")
            ]
            assert got == want
    finally:
        for store in stores.values():
            store.close()


# -- schema version 2 ------------------------------------------------------------------------------


def build_version_1(path: Path) -> None:
    """A database as version 1 of the schema left it: flags stored, AUTOINCREMENT ids."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN")
    db.execute(
        "CREATE TABLE tasker_schema_version (version INTEGER NOT NULL PRIMARY KEY, "
        "description TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    for statement in MIGRATIONS[0].statements:
        db.execute(statement)
    db.execute("INSERT INTO tasker_schema_version VALUES (1, 'v1', 0)")
    db.execute(
        "INSERT INTO tasks (id, namespace, name, version, state, context, created_at, updated_at, "
        "last_transition_id) VALUES ('t', 'ns', 'wf', '1.0.0', 'in_progress', '{}', 1, 3, 3)"
    )
    for idx, (state, last) in enumerate([("in_progress", 4), ("enqueued", 2)]):
        db.execute(
            "INSERT INTO steps (task_id, idx, name, handler, state, max_attempts, retryable, "
            "attempts, updated_at, last_transition_id) "
            "VALUES ('t', ?, ?, 'ns.h', ?, 3, 1, ?, 4, ?)",
            (idx, f"s{idx}", state, 1 if state == "in_progress" else 0, last),
        )
    rows = [
        (1, "s0", "pending", "enqueued", 0),
        (2, "s1", "pending", "enqueued", 1),
        (3, None, "pending", "in_progress", 1),
        (4, "s0", "enqueued", "in_progress", 1),
    ]
    db.executemany(
        "INSERT INTO transitions (id, task_id, step, from_state, to_state, event, reason, "
        "metadata, created_at, most_recent) VALUES (?, 't', ?, ?, ?, 'ev', '', '{}', 2, ?)",
        rows,
    )
    db.execute("COMMIT")
    db.close()


def test_version_1_databases_are_upgraded_keeping_every_transition(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    build_version_1(path)
    store = SQLiteStore(f"sqlite:///{path}")
    try:
        assert store.applied_migrations == [2]
        assert store.schema_version() == LATEST_VERSION == 2
        log = store.get_transitions("t")
        assert [(t.sort_key, t.step, t.to_state, t.most_recent) for t in log] == [
            (1, "s0", "enqueued", False),
            (2, "s1", "enqueued", True),
            (3, None, "in_progress", True),
            (4, "s0", "in_progress", True),
        ]
        assert store.apply([step_change("t", "s1", "enqueued", "in_progress")], now=5.0) == [True]
        log = store.get_transitions("t")
        assert [t.sort_key for t in log] == [1, 2, 3, 4, 5]
        assert [t.most_recent for t in log if t.step == "s1"] == [False, True]
        with store._read() as conn:
            columns = [r[1] for r in conn.exec_driver_sql("PRAGMA table_info(transitions)")]
            indexes = [r[1] for r in conn.exec_driver_sql("PRAGMA index_list(transitions)")]
            sequences = conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_sequence WHERE name LIKE 'transitions%'"
            ).scalar()
        assert "most_recent" not in columns
        assert indexes == ["ix_transitions_task"]
        assert sequences == 0
    finally:
        store.close()
