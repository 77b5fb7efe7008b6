"""Connections: a SQLAlchemy pool of psycopg 3 connections, and plain libpq connection strings.

Every statement is Postgres-native SQL run on the raw psycopg connection checked out of the pool
(psycopg prepares statements it sees repeatedly, so the hot functions are planned once per
connection). The pool pings a connection before handing it out, so after a database restart the
next checkout reconnects instead of failing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

__all__ = [
    "TRANSIENT",
    "DirectConnection",
    "conninfo",
    "is_transient",
    "make_pool",
    "transaction",
]

SCHEMES = ("postgresql", "postgresql+psycopg")

TRANSIENT = (
    psycopg.OperationalError,
    psycopg.errors.SerializationFailure,
    psycopg.errors.DeadlockDetected,
)
"""Errors after which the same work may simply be tried again (on a fresh connection)."""


def is_transient(exc: BaseException) -> bool:
    """A lost connection, a server restart, a deadlock or serialization failure."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        exc = exc.orig or exc
    return isinstance(exc, TRANSIENT)


def _sqlalchemy_url(url: str) -> str:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"{url!r} is not a postgresql:// URL")
    if parsed.drivername not in SCHEMES:
        raise ValueError(
            f"{url!r}: tasker-postgres needs the psycopg 3 driver "
            "(postgresql:// or postgresql+psycopg://)"
        )
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def conninfo(url: str) -> str:
    """A libpq URI for ``url`` (driver suffix dropped), for psycopg.connect."""
    parsed = make_url(_sqlalchemy_url(url)).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


def make_pool(url: str, pool_size: int) -> Engine:
    """A pool of ``pool_size`` connections (and as many overflow), pinged before use."""
    return create_engine(
        _sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=3600,
    )


@contextmanager
def transaction(pool: Engine) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor in one transaction on a pooled connection: committed on success, else rolled
    back; a connection that failed mid-way is discarded rather than returned to the pool."""
    with pool.connect() as conn:
        raw = conn.connection.driver_connection
        assert isinstance(raw, psycopg.Connection)
        try:
            with raw.cursor() as cur:
                yield cur
            raw.commit()
        except BaseException as exc:
            if raw.closed or isinstance(exc, psycopg.OperationalError):
                conn.invalidate()
                pool.dispose()  # the others are likely dead too (server restart): reconnect
            else:
                raw.rollback()
            raise


class DirectConnection:
    """One connection kept open by one thread (a worker's loop): no pool checkout per
    transaction, which matters when a transaction is a single short round trip. It is in
    autocommit mode, so that a one-statement transaction (:meth:`statement`) is one round trip,
    its commit included, instead of three (BEGIN, the statement, COMMIT). A connection that
    fails is dropped and the next use opens a new one."""

    def __init__(self, url: str) -> None:
        self._conninfo = conninfo(url)
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self._conninfo, autocommit=True)
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in one explicit transaction (BEGIN ... COMMIT, or ROLLBACK on error)."""
        conn = self._connect()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        except BaseException as exc:
            if conn.closed or isinstance(exc, psycopg.OperationalError):
                self.close()
            raise

    @contextmanager
    def statement(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor for ONE statement, which is its own transaction (committed by the server
        as it completes)."""
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                yield cur
        except BaseException as exc:
            if conn.closed or isinstance(exc, psycopg.OperationalError):
                self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None
