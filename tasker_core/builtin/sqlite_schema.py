"""The SQLite store's schema: Core Table objects for queries, and the versioned migrations.

Migrations are frozen DDL text, applied in order inside one ``BEGIN IMMEDIATE`` transaction at
open and recorded in ``tasker_schema_version``. Opening an up-to-date database only reads (so a
reader process never waits for a busy writer), and two processes opening a new file at once cannot
both migrate it. The Table objects describe the
latest schema (a test holds them to what the migrations build). A later schema change is a new
entry at the end of :data:`MIGRATIONS`, never an edit of an old one.
"""

from __future__ import annotations

import time

from attrs import frozen
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)

from tasker_core.errors import TaskerError

metadata = MetaData()

# ``last_transition_id`` (tasks, steps) points at the record's most recent transition. Since schema
# version 2 it is the one source of a transition's ``most_recent`` flag (derived when read), so
# recording a transition never rewrites an older row. Transition ids are assigned by the writer,
# which holds the write lock, as one more than the largest id: transitions are never deleted, so
# ids only grow and order each record's transitions.

schema_version = Table(
    "tasker_schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("description", Text, nullable=False),
    Column("applied_at", Float, nullable=False),
)

tasks = Table(
    "tasks",
    metadata,
    Column("id", Text, primary_key=True),
    Column("namespace", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("version", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("context", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("idempotency_key", Text, nullable=True, unique=True),
    Column("started_at", Float),
    Column("completed_at", Float),
    Column("wake_at", Float),
    Column("last_transition_id", Integer),
)

steps = Table(
    "steps",
    metadata,
    Column("task_id", Text, ForeignKey("tasks.id"), nullable=False),
    Column("idx", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("handler", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("retryable", Boolean(create_constraint=False), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_retry_at", Float),
    Column("lease_owner", Text),
    Column("lease_expires_at", Float),
    Column("results", Text),
    Column("error", Text),
    Column("updated_at", Float, nullable=False),
    Column("last_transition_id", Integer),
    PrimaryKeyConstraint("task_id", "idx"),
    UniqueConstraint("task_id", "name"),
)

transitions = Table(
    "transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", Text, ForeignKey("tasks.id"), nullable=False),
    Column("step", Text),
    Column("from_state", Text, nullable=False),
    Column("to_state", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)


@frozen
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "tasks, steps and transitions",
        (
            """CREATE TABLE tasks (
                id TEXT NOT NULL PRIMARY KEY,
                namespace TEXT NOT NULL,
                name TEXT NOT NULL,
                version TEXT NOT NULL,
                state TEXT NOT NULL,
                context TEXT NOT NULL,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL,
                idempotency_key TEXT UNIQUE,
                started_at REAL,
                completed_at REAL,
                wake_at REAL,
                last_transition_id INTEGER
            )""",
            "CREATE INDEX ix_tasks_created ON tasks (created_at, id)",
            "CREATE INDEX ix_tasks_state_created ON tasks (state, created_at, id)",
            """CREATE TABLE steps (
                task_id TEXT NOT NULL REFERENCES tasks (id),
                idx INTEGER NOT NULL,
                name TEXT NOT NULL,
                handler TEXT NOT NULL,
                state TEXT NOT NULL,
                max_attempts INTEGER NOT NULL,
                retryable BOOLEAN NOT NULL,
                attempts INTEGER NOT NULL,
                next_retry_at REAL,
                lease_owner TEXT,
                lease_expires_at REAL,
                results TEXT,
                error TEXT,
                updated_at REAL NOT NULL,
                last_transition_id INTEGER,
                PRIMARY KEY (task_id, idx),
                UNIQUE (task_id, name)
            )""",
            # Only leased steps are indexed: enqueue/complete never touch this index.
            "CREATE INDEX ix_steps_leases ON steps (lease_expires_at) WHERE state = 'in_progress'",
            """CREATE TABLE transitions (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                task_id TEXT NOT NULL REFERENCES tasks (id),
                step TEXT,
                from_state TEXT NOT NULL,
                to_state TEXT NOT NULL,
                event TEXT NOT NULL,
                reason TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at REAL NOT NULL,
                most_recent BOOLEAN NOT NULL
            )""",
            "CREATE INDEX ix_transitions_task ON transitions (task_id, id)",
        ),
    ),
    Migration(
        2,
        "transitions: most_recent derived from last_transition_id; plain integer ids",
        (
            # Flipping the previous transition's flag cost a row update per change, and the
            # AUTOINCREMENT counter a sqlite_sequence write per statement; the records'
            # last_transition_id already names the current transition.
            """CREATE TABLE transitions_v2 (
                id INTEGER PRIMARY KEY,
                task_id TEXT NOT NULL REFERENCES tasks (id),
                step TEXT,
                from_state TEXT NOT NULL,
                to_state TEXT NOT NULL,
                event TEXT NOT NULL,
                reason TEXT NOT NULL,
                metadata TEXT NOT NULL,
                created_at REAL NOT NULL
            )""",
            """INSERT INTO transitions_v2
                (id, task_id, step, from_state, to_state, event, reason, metadata, created_at)
            SELECT id, task_id, step, from_state, to_state, event, reason, metadata, created_at
            FROM transitions ORDER BY id""",
            "DROP TABLE transitions",
            "ALTER TABLE transitions_v2 RENAME TO transitions",
            "CREATE INDEX ix_transitions_task ON transitions (task_id, id)",
        ),
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE_DDL = """CREATE TABLE IF NOT EXISTS tasker_schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at REAL NOT NULL
)"""


def current_version(conn: Connection) -> int:
    """The schema version recorded in the database (0 for a new one). Reads only."""
    has_table = conn.exec_driver_sql(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
        (schema_version.name,),
    ).first()
    if has_table is None:
        return 0
    found = conn.execute(select(func.max(schema_version.c.version))).scalar()
    return int(found or 0)


def check_supported(version: int, where: str) -> None:
    """Refuse a database newer than this code, naming ``where`` and both versions."""
    if version > LATEST_VERSION:
        raise TaskerError(
            f"{where}: database schema version {version} is newer than this tasker-core "
            f"supports ({LATEST_VERSION}); upgrade tasker-core"
        )


def migrate(conn: Connection, where: str) -> list[int]:
    """Apply every migration the database lacks, in order; return the versions applied.

    Runs in the caller's write transaction, so two processes opening a new database cannot both
    migrate it. A database newer than this code is refused (:func:`check_supported`) rather than
    written to with an outdated idea of its schema.
    """
    conn.exec_driver_sql(_VERSION_TABLE_DDL)
    have = current_version(conn)
    check_supported(have, where)
    applied: list[int] = []
    for migration in MIGRATIONS:
        if migration.version <= have:
            continue
        for statement in migration.statements:
            conn.exec_driver_sql(statement)
        conn.execute(
            schema_version.insert().values(
                version=migration.version,
                description=migration.description,
                applied_at=time.time(),
            )
        )
        applied.append(migration.version)
    return applied
