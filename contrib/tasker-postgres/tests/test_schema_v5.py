"""Schema version 5: ``tasker_load_graph_v5`` leaves every step as ``tasker_load_graph`` did,
and a version-4 database upgrades with work in flight while a version-4 worker keeps activating
and settling (version 5 only adds a function)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasker_core import TaskRequest
from upgrade_support import JOIN_GRAPH, join_template

from tasker_postgres import store as store_module
from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import MIGRATIONS, current_version, upgrade
from tasker_postgres.work import ClaimedStep, Settlement, WorkTable

SIZE = 8
FLAT: dict[str, Any] = {
    "namespace": "v5",
    "name": "flat",
    "version": "1.0.0",
    "steps": [{"name": f"s{i}", "handler": "ok"} for i in range(SIZE)],
}
# a, b -> c -> d
JOIN = join_template("v5")
STATES = ("pending", "enqueued", "in_progress", "complete", "error", "resolved_manually")


def test_version_4_is_frozen() -> None:
    """Databases at version 4 never see an edit of it: a later change is a new version."""
    digest = hashlib.sha256(MIGRATIONS[3].sql.encode()).hexdigest()
    assert digest == "ec9dc35a37d39a7ec436085995a427ddc2911510a34c562082a9c3619ea0751d"


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[list[list[int]]], list[str]]:
    """A random DAG over SIZE steps (parents among earlier steps) and a state for each step."""
    parents = [
        sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else [] for i in range(SIZE)
    ]
    children: list[list[int]] = [[] for _ in range(SIZE)]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    states = draw(st.lists(st.sampled_from(STATES), min_size=SIZE, max_size=SIZE))
    return [[parents[i], children[i]] for i in range(SIZE)], states


def _loaded(conn: psycopg.Connection[Any], task_id: str, fn: str, graph: str) -> list[Any]:
    """The steps and task flag after ``fn`` loaded ``graph`` (in a transaction rolled back)."""
    with conn.transaction(force_rollback=True):
        conn.execute(f"SELECT {fn}(%s, %s::jsonb)", (task_id, graph))
        steps = conn.execute(
            "SELECT idx, state, parents, children, remaining_parents FROM tasker_steps "
            "WHERE task_id = %s ORDER BY idx",
            (task_id,),
        ).fetchall()
        flag = conn.execute(
            "SELECT graph_loaded FROM tasker_tasks WHERE id = %s", (task_id,)
        ).fetchone()
    return [steps, flag]


def test_version_5_loads_what_version_4_loaded(pg_url: str) -> None:
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: None
    harness.templates.append(FLAT)
    try:
        task_id = harness.engine().submit(TaskRequest("v5", "flat")).id
        with psycopg.connect(conninfo(pg_url), autocommit=True) as conn:

            @settings(
                max_examples=40,
                deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture],
            )
            @given(graphs())
            def check(case: tuple[list[list[list[int]]], list[str]]) -> None:
                graph, states = case
                conn.execute(
                    "UPDATE tasker_steps s SET state = k.state FROM unnest(%s::text[]) "
                    "WITH ORDINALITY AS k(state, i) WHERE s.task_id = %s AND s.idx = k.i - 1",
                    (states, task_id),
                )
                encoded = json.dumps(graph)
                old = _loaded(conn, task_id, "tasker_load_graph", encoded)
                new = _loaded(conn, task_id, "tasker_load_graph_v5", encoded)
                assert new == old
                steps, flag = new
                assert flag == (True,)
                done = ("complete", "resolved_manually")
                for row, (ps, cs) in zip(steps, graph, strict=True):
                    idx, _, parents, children, remaining = row
                    assert (parents, children) == (ps, cs), idx
                    assert remaining == sum(1 for p in ps if states[p] not in done), idx

            check()
    finally:
        harness.close()


def _ok(claim: ClaimedStep) -> Settlement:
    return Settlement(claim.task_id, claim.name, claim.attempt, True, results=claim.name)


def _activate_v4(url: str, task_id: str) -> None:
    """What a version-4 worker's activation does: the old graph load, then finalize."""
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute("SELECT tasker_load_graph(%s, %s::jsonb)", (task_id, json.dumps(JOIN_GRAPH)))
        conn.execute(
            "SELECT * FROM tasker_finalize_v3(%s, %s, false, true)", (task_id, time.time())
        )
        conn.commit()


def _drain(db: WorkTable, owner: str, claims: list[ClaimedStep]) -> None:
    """Settle every claim (claiming what each settle unblocks) until nothing is left."""
    while claims:
        now = time.time()
        result = db.settle([_ok(c) for c in claims], now, stop_on_failure=False, owner=owner,
                           claim=10, until=now + 30)  # fmt: skip
        assert result.lost == []
        claims = result.claims


def test_upgrade_from_version_4_with_work_in_flight(
    pg_url: str, pg_url_at: Callable[[str, int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url_at(pg_url, 4)
    monkeypatch.setattr(store_module, "LATEST_VERSION", 4)  # to submit into the old database
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(JOIN)
    try:
        engine = harness.engine()
        first, second, third = (engine.submit(TaskRequest("v5", "join")).id for _ in range(3))
        _activate_v4(pg_url, first)
        old = WorkTable(engine.store)  # type: ignore[arg-type]  # a version-4 worker
        old.settle_version = 4
        in_flight = old.claim("old", 1, time.time() + 30, time.time())
        assert [(c.task_id, c.name) for c in in_flight] == [(first, "a")]
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert current_version(conn) == 4
            assert upgrade(conn, "test", target=5) == [5]
            assert upgrade(conn, "test", target=5) == []
            assert current_version(conn) == 5
        # A version-5 worker activates the second task with the new graph load ...
        new = WorkTable(engine.store)  # type: ignore[arg-type]
        new.settle_version = 4  # a version-5 worker's settle
        done = new.activate(
            [second],
            time.time(),
            stop_on_failure=False,
            graph_for=lambda t: json.dumps(JOIN_GRAPH),
            on_error=lambda t, e: pytest.fail(f"{t}: {e}"),
        )
        assert done.states == {second: "in_progress"}
        ready = sorted((d.step, d.detail) for d in done.decisions if d.kind == "enqueued")
        assert ready == [("a", "ready"), ("b", "ready")]
        # ... while the version-4 worker, still running, activates the third with the old one.
        _activate_v4(pg_url, third)
        # Both workers settle what they hold and claim the rest, the old one first.
        _drain(old, "old", in_flight + old.claim("old", 10, time.time() + 30, time.time()))
        _drain(new, "new", new.claim("new", 10, time.time() + 30, time.time()))
        for task_id in (first, second, third):
            assert engine.get_task(task_id).state == "complete"
            assert [s.results for s in engine.get_steps(task_id)] == ["a", "b", "c", "d"]
        old.close()
        new.close()
    finally:
        harness.close()
