"""Schema version 6: the settle that claims ready children directly reports what version 4's
reports, leaves each claimed child exactly as enqueue-then-claim did (one write, both
transitions), queues the children it has no slot for, and a version-5 database upgrades with
work in flight while a version-5 worker keeps settling (version 6 only adds a function)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from pytest_tasker.history import assert_legal_history
from tasker_core import TaskRequest
from test_schema_v4 import TEMPLATE as JOIN_V4
from test_schema_v4 import _scenario
from upgrade_support import JOIN_GRAPH, join_template

from tasker_postgres import store as store_module
from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import MIGRATIONS, current_version, upgrade
from tasker_postgres.store import PostgresStore
from tasker_postgres.work import ClaimedStep, Decision, Settlement, WorkTable

# a -> b, c, d -> e
FAN: dict[str, Any] = {
    "namespace": "v6",
    "name": "fan",
    "version": "1.0.0",
    "steps": [
        {"name": "a", "handler": "ok"},
        {"name": "b", "handler": "ok", "depends_on": ["a"]},
        {"name": "c", "handler": "ok", "depends_on": ["a"]},
        {"name": "d", "handler": "ok", "depends_on": ["a"]},
        {"name": "e", "handler": "ok", "depends_on": ["b", "c", "d"]},
    ],
}
FAN_GRAPH = [[[], [1, 2, 3]], [[0], [4]], [[0], [4]], [[0], [4]], [[1, 2, 3], []]]


def test_version_5_is_frozen() -> None:
    """Databases at version 5 never see an edit of it: a later change is a new version."""
    digest = hashlib.sha256(MIGRATIONS[4].sql.encode()).hexdigest()
    assert digest == "9c1743dad38b4a76adc85a551c978047c2b1265f899a21fc788b3d76b6f1e9bb"


def test_version_6_reports_what_version_4_reports(pg_url: str) -> None:
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(JOIN_V4)
    try:
        v4, v6 = _scenario(harness, 4), _scenario(harness, 6)
    finally:
        harness.close()
    assert v6 == v4
    assert v6[2][3] == [("c", 1, {"a": "a", "b": "b"})]


def _ok(claim: ClaimedStep) -> Settlement:
    return Settlement(claim.task_id, claim.name, claim.attempt, True, results=claim.name)


def _activate(url: str, task_id: str, graph: list[Any]) -> None:
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SELECT tasker_load_graph_v5(%s, %s::jsonb)", (task_id, json.dumps(graph)))
        conn.execute(
            "SELECT * FROM tasker_finalize_v3(%s, %s, false, true)", (task_id, time.time())
        )
        conn.commit()


def _steps(url: str, task_id: str) -> dict[str, tuple[Any, ...]]:
    with psycopg.connect(conninfo(url)) as conn:
        found = conn.execute(
            "SELECT name, state, attempts, lease_owner, lease_expires_at, visible_at IS NULL "
            "FROM tasker_steps WHERE task_id = %s",
            (task_id,),
        ).fetchall()
    return {r[0]: r[1:] for r in found}


def _recent(url: str, task_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Each step's transitions (from, to, event, most_recent) in id order."""
    with psycopg.connect(conninfo(url)) as conn:
        found = conn.execute(
            "SELECT step, from_state, to_state, event, most_recent FROM tasker_transitions "
            "WHERE task_id = %s AND step IS NOT NULL ORDER BY id",
            (task_id,),
        ).fetchall()
    out: dict[str, list[tuple[Any, ...]]] = {}
    for step, *rest in found:
        out.setdefault(step, []).append(tuple(rest))
    return out


def test_ready_children_are_claimed_directly_up_to_the_slots_and_queued_beyond(
    pg_url: str,
) -> None:
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(FAN)
    try:
        engine = harness.engine()
        task_id = engine.submit(TaskRequest("v6", "fan")).id
        _activate(pg_url, task_id, FAN_GRAPH)
        db = WorkTable(engine.store)  # type: ignore[arg-type]
        (a,) = db.claim("w", 5, time.time() + 30, time.time())
        now = time.time()
        result = db.settle([_ok(a)], now, stop_on_failure=False, owner="w", claim=2, until=now + 30)
        # All three children reported ready; the first two (by index) claimed by this worker.
        assert result.decisions == [
            Decision("enqueued", task_id, n, "ready", 1, None, None) for n in ("b", "c", "d")
        ]
        assert [(c.name, c.attempt, c.index, c.dependencies) for c in result.claims] == [
            ("b", 1, 1, {"a": "a"}),
            ("c", 1, 2, {"a": "a"}),
        ]
        assert result.tasks == {task_id: "in_progress"}
        steps = _steps(pg_url, task_id)
        for name in ("b", "c"):
            assert steps[name] == ("in_progress", 1, "w", now + 30, True)
        assert steps["d"] == ("enqueued", 0, None, None, False)
        history = _recent(pg_url, task_id)
        for name in ("b", "c"):
            assert history[name][-2:] == [
                ("pending", "enqueued", "enqueue", False),
                ("enqueued", "in_progress", "start", True),
            ]
        assert history["d"][-1] == ("pending", "enqueued", "enqueue", True)
        # The queued child is claimable as usual; e is claimed by the settle of its last parent.
        (d,) = db.claim("other", 5, time.time() + 30, time.time())
        assert d.name == "d"
        now = time.time()
        first = db.settle(
            [_ok(c) for c in result.claims],
            now,
            stop_on_failure=False,
            owner="w",
            claim=4,
            until=now + 30,
        )
        assert first.claims == [] and first.decisions == []
        (e,) = db.settle([_ok(d)], now, stop_on_failure=False, owner="other", claim=4,
                         until=now + 30).claims  # fmt: skip
        assert (e.name, e.dependencies) == ("e", {"b": "b", "c": "c", "d": "d"})
        done = db.settle([_ok(e)], time.time(), stop_on_failure=False, owner="other", claim=4)
        assert done.tasks == {task_id: "complete"}
        db.close()
        store = PostgresStore(pg_url, migrate=False)
        try:
            finals: dict[str | None, str] = {None: "complete"}
            finals.update({s.name: s.state for s in store.get_steps(task_id)})
            assert_legal_history(store.get_transitions(task_id), finals)
        finally:
            store.close()
        recent = _recent(pg_url, task_id)
        assert all(sum(1 for t in ts if t[3]) == 1 for ts in recent.values()), recent
    finally:
        harness.close()


def _drain(db: WorkTable, owner: str, claims: list[ClaimedStep]) -> None:
    """Settle every claim (claiming what each settle unblocks) until nothing is left."""
    while claims:
        now = time.time()
        result = db.settle([_ok(c) for c in claims], now, stop_on_failure=False, owner=owner,
                           claim=10, until=now + 30)  # fmt: skip
        assert result.lost == []
        claims = result.claims


def test_upgrade_from_version_5_with_work_in_flight(
    pg_url: str, pg_url_at: Callable[[str, int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url_at(pg_url, 5)
    monkeypatch.setattr(store_module, "LATEST_VERSION", 5)  # to submit into the old database
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(join_template("v6"))
    try:
        engine = harness.engine()
        first, second = (engine.submit(TaskRequest("v6", "join")).id for _ in range(2))
        _activate(pg_url, first, JOIN_GRAPH)
        _activate(pg_url, second, JOIN_GRAPH)
        old = WorkTable(engine.store)  # type: ignore[arg-type]  # a version-5 worker
        old.settle_version = 4
        in_flight = old.claim("old", 2, time.time() + 30, time.time())
        assert [(c.task_id, c.name) for c in in_flight] == [(first, "a"), (first, "b")]
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert current_version(conn) == 5
            assert upgrade(conn, "test", target=6) == [6]
            assert upgrade(conn, "test", target=6) == []
            assert current_version(conn) == 6
        new = WorkTable(engine.store)  # type: ignore[arg-type]
        assert new.settle_version == 6
        # The new worker settles a step the old one claimed before the upgrade, and the rest.
        _drain(new, "new", [in_flight[1]])
        _drain(old, "old", [in_flight[0]])
        _drain(new, "new", new.claim("new", 10, time.time() + 30, time.time()))
        for task_id in (first, second):
            assert engine.get_task(task_id).state == "complete"
            assert [s.results for s in engine.get_steps(task_id)] == ["a", "b", "c", "d"]
            finals: dict[str | None, str] = {None: "complete"}
            finals.update({s.name: "complete" for s in engine.get_steps(task_id)})
            assert_legal_history(engine.store.get_transitions(task_id), finals)
        old.close()
        new.close()
    finally:
        harness.close()
