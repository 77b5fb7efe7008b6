"""Schema version 4: the settle's path for successful outcomes reports exactly what version 3's
settle reports, and a version-3 database upgrades with work in flight while a version-3 worker
keeps settling (version 4 only adds a function)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from tasker_core import StepError, TaskRequest
from upgrade_support import JOIN_GRAPH, join_template

from tasker_postgres import store as store_module
from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import MIGRATIONS, current_version, upgrade
from tasker_postgres.work import Decision, Settlement, SettleResult, WorkTable

# a, b -> c -> d
TEMPLATE = join_template("v4")


def test_version_3_is_frozen() -> None:
    """Databases at version 3 never see an edit of it: a later change is a new version."""
    digest = hashlib.sha256(MIGRATIONS[2].sql.encode()).hexdigest()
    assert digest == "e9e4f69fc7311b71f7a4ede705f52b7f00d920be32183a0ad173efa316557a07"


def _start(url: str, task_id: str) -> None:
    """What activation does: load the graph, enqueue a and b."""
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SELECT tasker_load_graph(%s, %s::jsonb)", (task_id, json.dumps(JOIN_GRAPH)))
        conn.execute(
            "SELECT * FROM tasker_finalize_v3(%s, %s, false, true)", (task_id, time.time())
        )
        conn.commit()


def _ok(task_id: str, step: str, attempt: int) -> Settlement:
    return Settlement(task_id, step, attempt, True, results=step, reason="handler returned")


def _comparable(result: SettleResult, task_id: str) -> tuple[Any, ...]:
    """A settle's report with the task id and times taken out (they differ per database)."""
    decisions = [
        (d.kind, d.step, d.detail, d.attempt, d.steps, d.at is None) for d in result.decisions
    ]
    claims = [(c.name, c.attempt, c.dependencies) for c in result.claims]
    assert all(t == task_id for t, _ in result.lost) and list(result.tasks) in ([], [task_id])
    return (
        sorted(s for _, s in result.lost),
        list(result.tasks.values()),
        decisions,
        claims,
    )


def _scenario(harness: Harness, version: int) -> list[tuple[Any, ...]]:
    """The same settles of one task, with the settle of ``version``; what each reported."""
    engine = harness.engine()
    task_id = engine.submit(TaskRequest("v4", "join")).id
    _start(harness.url, task_id)
    db = WorkTable(engine.store)  # type: ignore[arg-type]
    db.settle_version = version
    out: list[tuple[Any, ...]] = []

    def settle(outcomes: list[Settlement], claim: int) -> SettleResult:
        now = time.time()
        result = db.settle(
            outcomes, now, stop_on_failure=False, owner="w", claim=claim, until=now + 30
        )
        out.append(_comparable(result, task_id))
        return result

    try:
        claims = {c.name: c for c in db.claim("w", 5, time.time() + 30, time.time())}
        # a completes (c still waits for b), with a stale outcome of b: lost.
        settle([_ok(task_id, "a", 1), _ok(task_id, "b", 7)], 0)
        # b fails and will be retried (the general path), then succeeds on its second attempt.
        error = StepError("Boom", "no", retryable=True)
        failed = Settlement(task_id, "b", claims["b"].attempt, False, error=error, retry_at=0.0)
        settle([failed], 0)
        with psycopg.connect(conninfo(harness.url)) as conn:
            conn.execute(
                "SELECT * FROM tasker_finalize_v3(%s, %s, false, false)", (task_id, time.time())
            )
            conn.commit()
        (b,) = db.claim("w", 5, time.time() + 30, time.time())
        # b completes: c enqueued and claimed in the same settle, with both results.
        (c,) = settle([_ok(task_id, "b", b.attempt)], 4).claims
        (d,) = settle([_ok(task_id, "c", c.attempt)], 4).claims
        settle([_ok(task_id, "d", d.attempt)], 4)  # the task completes
        assert engine.get_task(task_id).state == "complete"
    finally:
        db.close()
    return out


def test_version_4_reports_what_version_3_reports(pg_url: str) -> None:
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(TEMPLATE)
    try:
        v3, v4 = _scenario(harness, 3), _scenario(harness, 4)
    finally:
        harness.close()
    assert v4 == v3
    assert v4[0] == (["b"], ["in_progress"], [], [])
    assert v4[2][2] == [("enqueued", "c", "ready", 1, None, True)]
    assert v4[2][3] == [("c", 1, {"a": "a", "b": "b"})]
    assert v4[4][1] == ["complete"]


def test_upgrade_from_version_3_with_work_in_flight(
    pg_url: str, pg_url_at: Callable[[str, int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url_at(pg_url, 3)
    monkeypatch.setattr(store_module, "LATEST_VERSION", 3)  # to submit into the old database
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(TEMPLATE)
    try:
        engine = harness.engine()
        task_id = engine.submit(TaskRequest("v4", "join")).id
        _start(pg_url, task_id)
        old = WorkTable(engine.store)  # type: ignore[arg-type]  # a version-3 worker
        old.settle_version = 3
        claims = {c.name: c for c in old.claim("old", 5, time.time() + 30, time.time())}
        assert sorted(claims) == ["a", "b"]
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert current_version(conn) == 3
            assert upgrade(conn, "test", target=4) == [4]
            assert upgrade(conn, "test", target=4) == []
            assert current_version(conn) == 4
        # The version-3 worker, still running, settles a with version 3's function.
        now = time.time()
        result = old.settle([_ok(task_id, "a", claims["a"].attempt)], now, stop_on_failure=False,
                            owner="old")  # fmt: skip
        assert result.tasks == {task_id: "in_progress"} and result.decisions == []
        # A version-4 worker settles b: c reported enqueued and claimed.
        new = WorkTable(engine.store)  # type: ignore[arg-type]
        new.settle_version = 4
        now = time.time()
        result = new.settle(
            [_ok(task_id, "b", claims["b"].attempt)],
            now,
            stop_on_failure=False,
            owner="new",
            claim=1,
            until=now + 30,
        )
        assert result.decisions == [Decision("enqueued", task_id, "c", "ready", 1, None, None)]
        (c,) = result.claims
        assert (c.name, c.dependencies) == ("c", {"a": "a", "b": "b"})
        (d,) = new.settle([_ok(task_id, "c", c.attempt)], time.time(), stop_on_failure=False,
                          owner="new", claim=1, until=time.time() + 30).claims  # fmt: skip
        # The old worker finishes the task with version 3's settle.
        result = old.settle([_ok(task_id, "d", d.attempt)], time.time(), stop_on_failure=False,
                            owner="old")  # fmt: skip
        assert result.tasks == {task_id: "complete"}
        assert [s.results for s in engine.get_steps(task_id)] == ["a", "b", "c", "d"]
        old.close()
        new.close()
    finally:
        harness.close()
