"""The distributed worker's database operations: claim, settle, activate, extend, reap.

Each is one transaction and (apart from activation, which may load a task's graph first) one
round trip: the server-side functions in schema_sql.py do the work. The database is the only
source of truth; nothing here keeps state between calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import psycopg
from attrs import define, field, frozen
from tasker_core import JSON, Step, StepError, Task

from tasker_postgres import rows
from tasker_postgres.arrays import bool_array, float_array, int_array, text_array
from tasker_postgres.db import DirectConnection, transaction
from tasker_postgres.store import PostgresStore

__all__ = [
    "Activation",
    "ClaimedStep",
    "Decision",
    "Expired",
    "SettleResult",
    "Settlement",
    "WorkTable",
]

Key = tuple[str, str]
GraphFor = Callable[[Task], str | Sequence[tuple[Sequence[int], Sequence[int]]]]
"""(parents, children) of every step of a task's workflow, by step index; or that list already
encoded as JSON (a worker encodes a workflow's graph once)."""


@frozen
class ClaimedStep:
    """A step this worker now runs: ``enqueued -> in_progress`` done, attempt counted."""

    task_id: str
    name: str
    index: int
    handler: str
    attempt: int
    max_attempts: int
    retryable: bool
    dependencies: dict[str, JSON]


@frozen
class Settlement:
    """The outcome of one attempt, to record (``bump`` grants attempts back: a release)."""

    task_id: str
    step: str
    attempt: int
    ok: bool
    results: JSON = None
    error: StepError | None = None
    retry_at: float | None = None
    reason: str = ""
    metadata: dict[str, JSON] = field(factory=dict)
    bump: int = 0
    duration: float = 0.0
    """Seconds the attempt took (0 for one that was reaped or released)."""


class Decision(NamedTuple):
    """A change the database made and reported (schema version 3), to publish as an event.

    ``kind``: ``enqueued`` (``step`` dispatched as ``attempt``; ``detail`` ready or retry),
    ``retry`` / ``permanent`` (a failure of ``step``'s ``attempt`` recorded; ``at`` is the
    retry time), or ``move`` (the task ``detail``: started, completed with ``at`` its start
    time, failed with ``steps`` the steps failed for good, waiting with ``at`` the earliest
    retry).
    """

    kind: str
    task_id: str
    step: str | None
    detail: str | None
    attempt: int | None
    at: float | None
    steps: list[str] | None


@define
class SettleResult:
    lost: list[Key] = field(factory=list)
    """Outcomes whose compare-and-set failed (the lease was lost; the attempt was re-run)."""
    tasks: dict[str, str] = field(factory=dict)
    """State of each settled task afterwards."""
    claims: list[ClaimedStep] = field(factory=list)
    decisions: list[Decision] = field(factory=list)
    """What the settle decided besides the outcomes themselves, in the order it decided."""


@define
class Activation:
    states: dict[str, str] = field(factory=dict)
    """State of each activated task afterwards."""
    decisions: list[Decision] = field(factory=list)
    tasks: dict[str, Task] = field(factory=dict)
    """The activated tasks as they were read (for the events' workflow fields)."""


@frozen
class Expired:
    """An in-progress step whose lease ran out, with its task's workflow."""

    step: Step
    namespace: str
    workflow: str
    version: str


_SETTLE = {
    version: "SELECT kind, task_id, name, detail, idx, handler, attempts, max_attempts, "
    f"retryable, dependencies::text, at, steps FROM tasker_settle_v{version}(%s::text[], "
    "%s::text[], %s::int[], %s::bool[], %s::text[]::jsonb[], %s::text[]::jsonb[], %s::float8[], "
    "%s::text[]::jsonb[], %s::text[], %s::int[], %s::float8, %s::float8, %s::bool, %s::text, "
    "%s::int, %s::float8)"
    for version in (3, 4, 6)
}
"""The settle of each schema version that has one returning decisions (same rows)."""
_CLAIM = (
    "SELECT task_id, name, idx, handler, attempts, max_attempts, retryable, "
    "dependencies::text FROM tasker_claim(%s, %s, %s, %s)"
)
_DUE = """
(SELECT id FROM tasker_tasks WHERE state = 'pending' AND coalesce(wake_at, 0) <= %(now)s
 ORDER BY coalesce(wake_at, 0) LIMIT %(limit)s)
UNION
(SELECT id FROM tasker_tasks WHERE dirty LIMIT %(limit)s)
UNION
(SELECT DISTINCT s.task_id FROM tasker_steps s JOIN tasker_tasks t ON t.id = s.task_id
 WHERE s.state = 'error' AND s.next_retry_at IS NOT NULL AND s.next_retry_at <= %(now)s
   AND tasker_can_retry(s) AND t.state = 'in_progress' AND NOT (%(stop)s AND t.failed > 0)
 LIMIT %(limit)s)
"""
_NEXT_WAKE = """
SELECT least(
  (SELECT min(coalesce(wake_at, 0)) FROM tasker_tasks WHERE state = 'pending'),
  (SELECT min(next_retry_at) FROM tasker_steps
   WHERE state = 'error' AND next_retry_at IS NOT NULL AND next_retry_at > %(now)s))
"""


def _claimed(row: Sequence[Any]) -> ClaimedStep:
    """A claim row; its dependencies come as JSON text, ``{}`` (no parents) not parsed at all:
    psycopg's JSONB loader would cost a ``json.loads`` of bytes per claimed step."""
    text = row[7]
    deps = {} if text is None or text == "{}" else json.loads(text)
    return ClaimedStep(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        {name: rows.decode(value) for name, value in deps.items()},
    )


class WorkTable:
    """The worker's view of the database.

    By default every call checks out a pooled connection (thread-safe). With ``direct=True`` it
    keeps one connection of its own instead, for the single thread of a worker's loop.
    """

    settle_version = 6
    """Which ``tasker_settle_v*`` :meth:`settle` calls (3 and 4 only to compare them)."""

    def __init__(self, store: PostgresStore, *, direct: bool = False) -> None:
        self.store = store
        self.pool = store.pool
        self._direct = DirectConnection(store.url) if direct else None

    def _tx(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        if self._direct is not None:
            return self._direct.transaction()
        return transaction(self.pool)

    def _one(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        """For exactly one statement: on the direct connection, a single round trip."""
        if self._direct is not None:
            return self._direct.statement()
        return transaction(self.pool)

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def claim(self, owner: str, limit: int, until: float, now: float) -> list[ClaimedStep]:
        """Claim up to ``limit`` enqueued steps, oldest visible first (never waits for locks)."""
        if limit <= 0:
            return []
        with self._one() as cur:
            cur.execute(_CLAIM, (owner, limit, until, now))
            return [_claimed(r) for r in cur.fetchall()]

    def settle(
        self,
        outcomes: Sequence[Settlement],
        now: float,
        *,
        stop_on_failure: bool,
        owner: str,
        claim: int = 0,
        until: float = 0.0,
        expired_before: float | None = None,
    ) -> SettleResult:
        """Record outcomes, dispatch what they unblocked, finalize their tasks, claim more."""
        params = (  # array literals: much cheaper to send than lists (see arrays.py)
            text_array([o.task_id for o in outcomes]),
            text_array([o.step for o in outcomes]),
            int_array([o.attempt for o in outcomes]),
            bool_array([o.ok for o in outcomes]),
            text_array(
                [
                    rows.encode(o.results, f"step {o.step!r} results") if o.ok else None
                    for o in outcomes
                ]
            ),
            text_array([rows.encode_error(o.error) for o in outcomes]),
            float_array([o.retry_at for o in outcomes]),
            text_array([rows.encode_metadata(o.metadata) for o in outcomes]),
            text_array([o.reason for o in outcomes]),
            int_array([o.bump for o in outcomes]),
            expired_before,
            now,
            stop_on_failure,
            owner,
            claim,
            until,
        )
        result = SettleResult()
        with self._one() as cur:
            cur.execute(_SETTLE[self.settle_version], params)
            for row in cur.fetchall():
                kind = row[0]
                if kind == "claim":
                    result.claims.append(_claimed((row[1], row[2], *row[4:10])))
                elif kind == "task":
                    result.tasks[row[1]] = row[3]
                elif kind == "lost":
                    result.lost.append((row[1], row[2]))
                else:
                    result.decisions.append(
                        Decision(kind, row[1], row[2], row[3], row[6], row[10], row[11])
                    )
        return result

    def due_tasks(self, now: float, limit: int, stop_on_failure: bool) -> list[str]:
        """Tasks to activate: new or woken (pending, due), manually changed, or with due
        retries."""
        with self._one() as cur:
            cur.execute(_DUE, {"now": now, "limit": limit, "stop": stop_on_failure})
            return sorted(r[0] for r in cur.fetchall())

    def activate(
        self,
        task_ids: Sequence[str],
        now: float,
        *,
        stop_on_failure: bool,
        graph_for: GraphFor,
        on_error: Callable[[str, Exception], None],
    ) -> Activation:
        """Lock the given tasks (skipping ones another worker holds), load graphs not loaded yet,
        dispatch ready steps and due retries, and finalize: each task's state afterwards and
        what was decided."""
        out = Activation()
        if not task_ids:
            return out
        with self._tx() as cur:
            cur.execute(
                f"SELECT {rows.TASK_COLUMNS}, graph_loaded FROM tasker_tasks "
                "WHERE id = ANY(%s) AND state IN ('pending', 'in_progress') ORDER BY id "
                "FOR NO KEY UPDATE SKIP LOCKED",
                (list(task_ids),),
            )
            locked = cur.fetchall()
            ready: list[str] = []
            for row in locked:
                task = rows.task_from_row(row)
                if not row[-1]:
                    try:
                        graph = graph_for(task)
                        if not isinstance(graph, str):
                            pairs = [[list(p), list(c)] for p, c in graph]
                            graph = json.dumps(pairs, separators=(",", ":"))
                    except Exception as exc:
                        on_error(task.id, exc)
                        continue
                    cur.execute("SELECT tasker_load_graph_v5(%s, %s::jsonb)", (task.id, graph))
                ready.append(task.id)
                out.tasks[task.id] = task
            for task_id in ready:
                cur.execute(
                    "SELECT kind, name, detail, attempt, at, steps "
                    "FROM tasker_finalize_v3(%s, %s, %s, true)",
                    (task_id, now, stop_on_failure),
                )
                for kind, name, detail, attempt, at, steps in cur.fetchall():
                    if kind == "task":
                        out.states[task_id] = detail
                    else:
                        out.decisions.append(
                            Decision(kind, task_id, name, detail, attempt, at, steps)
                        )
        return out

    def extend(self, owner: str, keys: Sequence[Key], until: float) -> set[Key]:
        """Renew the leases ``owner`` still holds on these steps; the ones renewed."""
        if not keys:
            return set()
        with self._one() as cur:
            cur.execute(
                "UPDATE tasker_steps s SET lease_expires_at = %s "
                "FROM unnest(%s::text[], %s::text[]) AS k(t, n) "
                "WHERE s.task_id = k.t AND s.name = k.n AND s.state = 'in_progress' "
                "AND s.lease_owner = %s RETURNING s.task_id, s.name",
                (until, [k[0] for k in keys], [k[1] for k in keys], owner),
            )
            return {(r[0], r[1]) for r in cur.fetchall()}

    def expired(self, now: float, limit: int) -> list[Expired]:
        """Up to ``limit`` in-progress steps whose lease expired before ``now``."""
        cols = ", ".join(f"s.{c.strip()}" for c in rows.STEP_COLUMNS.split(","))
        with self._one() as cur:
            cur.execute(
                f"SELECT {cols}, t.namespace, t.name, t.version FROM tasker_steps s "
                "JOIN tasker_tasks t ON t.id = s.task_id WHERE s.state = 'in_progress' "
                "AND s.lease_expires_at < %s ORDER BY s.lease_expires_at LIMIT %s",
                (now, limit),
            )
            found = cur.fetchall()
        return [Expired(rows.step_from_row(r[:14]), r[14], r[15], r[16]) for r in found]

    def next_wake(self, now: float) -> float | None:
        """The earliest time a waiting task or a scheduled retry becomes due (None: none)."""
        with self._one() as cur:
            cur.execute(_NEXT_WAKE, {"now": now})
            row = cur.fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def tasks(self, task_ids: Sequence[str]) -> dict[str, Task]:
        with self._one() as cur:
            cur.execute(
                f"SELECT {rows.TASK_COLUMNS} FROM tasker_tasks WHERE id = ANY(%s)",
                (list(task_ids),),
            )
            return {r[0]: rows.task_from_row(r) for r in cur.fetchall()}
