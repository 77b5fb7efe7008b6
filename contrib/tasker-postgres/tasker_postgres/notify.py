"""LISTEN/NOTIFY: wake idle waiters promptly when work may have become visible.

A :class:`Listener` owns one autocommit connection that LISTENs on a channel. :meth:`wait`
returns True as soon as a notification arrives (also one that arrived since the last wait), or
False after the timeout: callers treat the timeout as their polling fallback. A lost connection
(database restart) is reopened on the next wait; until then waits simply sleep their timeout, so
a waiter never fails because the server went away for a while.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import psycopg
from psycopg import sql

__all__ = ["WORK_CHANNEL", "Listener"]

WORK_CHANNEL = "tasker_work"
"""Notified by every transaction that enqueues steps or makes a task need finalizing."""

log = logging.getLogger("tasker.postgres")


class Listener:
    """Waits for notifications on ``channel`` (thread-safe; one waiter at a time)."""

    def __init__(self, conninfo: str, channel: str = WORK_CHANNEL) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> psycopg.Connection[tuple[object, ...]] | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        except psycopg.OperationalError as exc:
            log.warning("cannot LISTEN on %s (will retry): %s", self._channel, exc)
            return None
        self._conn = conn
        return conn

    def connected(self) -> bool:
        """Ensure the LISTEN connection is open; False if the server cannot be reached now."""
        with self._lock:
            return self._connect() is not None

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for a notification; True if one came."""
        return bool(self.receive(timeout))

    def receive(self, timeout: float) -> set[str]:
        """Block up to ``timeout`` seconds; the payloads of the notifications that came (one
        wake-up drains everything already there). Empty after a timeout; ``{""}`` after the
        connection was lost, since anything may have happened meanwhile."""
        with self._lock:
            if self._closed:
                return set()
            conn = self._connect()
            if conn is None:
                time.sleep(max(0.0, timeout))
                return set()
            try:
                got = {n.payload for n in conn.notifies(timeout=max(0.0, timeout), stop_after=1)}
                if got:
                    got.update(n.payload for n in conn.notifies(timeout=0.0))
                return got
            except psycopg.OperationalError as exc:
                log.warning("LISTEN connection lost (will reconnect): %s", exc)
                self._drop()
                return {""}

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._drop()
