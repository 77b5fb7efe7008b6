"""Versioned, idempotent migrations of the Postgres schema.

Each migration is frozen DDL applied in one transaction and recorded in
``tasker_schema_version``. The whole upgrade holds a transaction-level advisory lock, so any
number of workers starting at once against a new database migrate it exactly once; an up-to-date
database is only read. A database newer than this code is refused rather than written to with an
outdated idea of its schema.
"""

from __future__ import annotations

import time
from typing import Any

from attrs import frozen
from psycopg import Connection
from tasker_core import TaskerError

from tasker_postgres.schema_sql import FUNCTIONS, SET_BASED, TABLES
from tasker_postgres.schema_v3 import REPORTING
from tasker_postgres.schema_v4 import FAST_SETTLE
from tasker_postgres.schema_v5 import ONE_PASS_GRAPH
from tasker_postgres.schema_v6 import DIRECT_CLAIM

__all__ = ["LATEST_VERSION", "MIGRATIONS", "Migration", "current_version", "upgrade"]

MIGRATION_LOCK = 0x7461736B6572
"""Advisory lock key ("tasker") held while migrating."""


@frozen
class Migration:
    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1, "tasks, steps, transitions, queue; settle/claim/finalize functions", TABLES + FUNCTIONS
    ),
    Migration(
        2, "set-based settle; exact-key lookups and generic plans in the functions", SET_BASED
    ),
    Migration(
        3, "functions that report their decisions (enqueues, retries, task moves)", REPORTING
    ),
    Migration(4, "settle of successful outcomes in four statements", FAST_SETTLE),
    Migration(5, "a task's step graph loaded with one write per step", ONE_PASS_GRAPH),
    Migration(6, "settle claims the children it makes ready without queueing them", DIRECT_CLAIM),
)

LATEST_VERSION = MIGRATIONS[-1].version

_VERSION_TABLE = """CREATE TABLE IF NOT EXISTS tasker_schema_version (
    version integer PRIMARY KEY,
    description text NOT NULL,
    applied_at double precision NOT NULL
)"""


def current_version(conn: Connection[Any]) -> int:
    """The recorded schema version (0 for an empty database). Reads only."""
    found = conn.execute("SELECT to_regclass('tasker_schema_version') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return 0
    row = conn.execute("SELECT max(version) FROM tasker_schema_version").fetchone()
    return int(row[0] or 0) if row else 0


def check_supported(version: int, where: str) -> None:
    if version > LATEST_VERSION:
        raise TaskerError(
            f"{where}: database schema version {version} is newer than this tasker-postgres "
            f"supports ({LATEST_VERSION}); upgrade tasker-postgres"
        )


def upgrade(conn: Connection[Any], where: str, target: int | None = None) -> list[int]:
    """Apply the migrations the database lacks (in one transaction); return their versions.

    ``target`` stops at that version instead of the latest (how the upgrade tests build a
    database as an older release left it); a database already past it is left alone.
    """
    goal = LATEST_VERSION if target is None else target
    with conn.transaction():
        if current_version(conn) >= goal:
            return []
    applied: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_VERSION_TABLE)
        have = current_version(conn)
        check_supported(have, where)
        for migration in MIGRATIONS:
            if migration.version <= have or migration.version > goal:
                continue
            conn.execute(migration.sql.encode())
            conn.execute(
                "INSERT INTO tasker_schema_version (version, description, applied_at) "
                "VALUES (%s, %s, %s)",
                (migration.version, migration.description, time.time()),
            )
            applied.append(migration.version)
    return applied
