"""The Postgres queue: the Queue contract on one table, shared by any number of processes.

Items are keyed by (task_id, step). ``visible_at`` is when an item can next be claimed: its
``available_at`` while waiting, its lease expiry while claimed (an expired claim is redelivered).
Claims take rows with ``FOR UPDATE SKIP LOCKED`` in (visible_at, seq) order, so concurrent
claimers never wait for each other and never get the same item; every claim gets a fresh token
from a sequence, which fences acks, nacks and extensions of a lost claim. Enqueues NOTIFY, and
:meth:`wait` LISTENs, so idle workers wake at once; the caller's poll interval is the fallback.

This queue serves an engine that uses ``queue.url: postgresql://...``. ``tasker worker`` does not
go through it: a worker claims steps straight from the steps table, because the claim must be
the same transaction as the step's ``enqueued -> in_progress`` change (see worker.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine
from tasker_core import Claim, Config, WorkItem

from tasker_postgres.db import conninfo, make_pool, transaction
from tasker_postgres.notify import Listener
from tasker_postgres.schema import upgrade

__all__ = ["QUEUE_CHANNEL", "PostgresQueue", "make_postgres_queue"]

QUEUE_CHANNEL = "tasker_queue"


class PostgresQueue:
    scheme = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 3, migrate: bool = True) -> None:
        self.url = url
        self._conninfo = conninfo(url)
        self.pool: Engine = make_pool(url, pool_size)
        if migrate:
            import psycopg

            with psycopg.connect(self._conninfo) as conn:
                upgrade(conn, self._conninfo.split("@")[-1])
        self._listener = Listener(self._conninfo, QUEUE_CHANNEL)
        self._listener.connected()  # LISTEN before anyone waits: no enqueue is missed

    def enqueue(self, items: Sequence[WorkItem]) -> None:
        if not items:
            return
        with transaction(self.pool) as cur:
            cur.execute(
                "INSERT INTO tasker_queue (task_id, step, available_at, visible_at) "
                "SELECT t, s, a, a FROM unnest(%s::text[], %s::text[], %s::float8[]) "
                "WITH ORDINALITY AS i(t, s, a, n) ORDER BY n "
                "ON CONFLICT (task_id, step) DO NOTHING",
                (
                    [i.task_id for i in items],
                    [i.step for i in items],
                    [float(i.available_at) for i in items],
                ),
            )
            cur.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))

    def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Claim]:
        if limit <= 0:
            return []
        until = now + lease
        with transaction(self.pool) as cur:
            cur.execute(
                "WITH c AS (SELECT task_id, step, visible_at, seq FROM tasker_queue "
                "WHERE visible_at <= %(now)s AND (owner IS NULL OR expires_at < %(now)s) "
                "ORDER BY visible_at, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
                "UPDATE tasker_queue q SET owner = %(owner)s, "
                "token = nextval('tasker_queue_token_seq'), expires_at = %(until)s, "
                "visible_at = %(until)s FROM c WHERE q.task_id = c.task_id AND q.step = c.step "
                "RETURNING q.task_id, q.step, q.available_at, q.token, c.visible_at, c.seq",
                {"now": now, "limit": limit, "owner": owner, "until": until},
            )
            found = cur.fetchall()
        found.sort(key=lambda r: (r[4], r[5]))
        return [Claim(WorkItem(r[0], r[1], r[2]), owner, r[3], until) for r in found]

    def ack(self, claims: Sequence[Claim]) -> list[bool]:
        if not claims:
            return []
        with transaction(self.pool) as cur:
            cur.execute(
                "DELETE FROM tasker_queue q USING unnest(%s::text[], %s::text[], %s::bigint[]) "
                "AS k(t, s, tok) WHERE q.task_id = k.t AND q.step = k.s AND q.token = k.tok "
                "RETURNING q.token",
                _keys(claims),
            )
            done = {r[0] for r in cur.fetchall()}
        return [c.token in done for c in claims]

    def nack(self, claims: Sequence[Claim], delay: float, now: float) -> list[bool]:
        if not claims:
            return []
        at = now + delay
        with transaction(self.pool) as cur:
            cur.execute(
                "UPDATE tasker_queue q SET owner = NULL, token = NULL, expires_at = NULL, "
                "available_at = %s, visible_at = %s, seq = nextval('tasker_queue_seq_seq') "
                "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS k(t, s, tok) "
                "WHERE q.task_id = k.t AND q.step = k.s AND q.token = k.tok RETURNING k.tok",
                (at, at, *_keys(claims)),
            )
            done = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT pg_notify(%s, '')", (QUEUE_CHANNEL,))
        return [c.token in done for c in claims]

    def extend(self, claims: Sequence[Claim], lease: float, now: float) -> list[Claim | None]:
        if not claims:
            return []
        until = now + lease
        with transaction(self.pool) as cur:
            cur.execute(
                "UPDATE tasker_queue q SET expires_at = %s, visible_at = %s "
                "FROM unnest(%s::text[], %s::text[], %s::bigint[]) AS k(t, s, tok) "
                "WHERE q.task_id = k.t AND q.step = k.s AND q.token = k.tok RETURNING k.tok",
                (until, until, *_keys(claims)),
            )
            held = {r[0] for r in cur.fetchall()}
        return [Claim(c.item, c.owner, c.token, until) if c.token in held else None for c in claims]

    def wait(self, timeout: float) -> bool:
        return self._listener.wait(timeout)

    def __len__(self) -> int:
        with transaction(self.pool) as cur:
            cur.execute("SELECT count(*) FROM tasker_queue")
            row = cur.fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._listener.close()
        self.pool.dispose()


def _keys(claims: Sequence[Claim]) -> tuple[list[str], list[str], list[int]]:
    return (
        [c.item.task_id for c in claims],
        [c.item.step for c in claims],
        [c.token for c in claims],
    )


def make_postgres_queue(url: str, config: Config | None = None) -> PostgresQueue:
    """Factory for ``postgresql://`` queue URLs (``queue.options.pool_size``, default 3)."""
    if config is None:
        return PostgresQueue(url)
    size = config.queue.options.get("pool_size", 3)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        from tasker_core import ConfigError

        raise ConfigError(
            f"expected a whole number >= 1, got {size!r}", key_path="queue.options.pool_size"
        )
    return PostgresQueue(url, pool_size=size)
