"""Schema version 2: upgrading a version-1 database that has work in flight, and the promise
that settling a step reads a bounded number of rows whatever the size of its task."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from tasker_core import TaskRequest

from tasker_postgres import store as store_module
from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import MIGRATIONS, current_version, upgrade
from tasker_postgres.work import ClaimedStep, Settlement, WorkTable


def test_version_1_is_frozen() -> None:
    """An applied migration is never edited (databases at version 1 would never see the
    change): a later change is a new version."""
    digest = hashlib.sha256(MIGRATIONS[0].sql.encode()).hexdigest()
    assert digest == "b75780d01e816387c2dee64caf0249e32d54a39e4b25fee72dce9ce691267b62"


def chain(name: str, n: int) -> dict[str, Any]:
    steps = [
        {"name": f"s{i}", "handler": "ok", "depends_on": [f"s{i - 1}"] if i else []}
        for i in range(n)
    ]
    return {"namespace": "v2", "name": name, "version": "1.0.0", "steps": steps}


def chain_graph(n: int) -> list[tuple[list[int], list[int]]]:
    return [([i - 1] if i else [], [i + 1] if i + 1 < n else []) for i in range(n)]


def test_upgrade_from_version_1_with_work_in_flight(
    pg_url: str, pg_url_at: Callable[[str, int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url_at(pg_url, 1)
    # Let this code open the version-1 database to submit; the work is put in flight there
    # with version 1's own functions (this code calls the latest ones).
    monkeypatch.setattr(store_module, "LATEST_VERSION", 1)
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(chain("c", 6))
    try:
        engine = harness.engine()
        task_id = engine.submit(TaskRequest("v2", "c")).id
        db = WorkTable(engine.store)  # type: ignore[arg-type]
        now = time.time()
        with psycopg.connect(conninfo(pg_url)) as conn:
            conn.execute(
                "SELECT tasker_load_graph(%s, %s::jsonb)", (task_id, json.dumps(chain_graph(6)))
            )
            conn.execute("SELECT tasker_finalize(%s, %s, false)", (task_id, now))
            conn.commit()
        (claim,) = db.claim("old-worker", 5, now + 30, now)
        assert claim.name == "s0"
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert current_version(conn) == 1
            assert upgrade(conn, "test") == [m.version for m in MIGRATIONS[1:]]
            assert upgrade(conn, "test") == []
        monkeypatch.undo()
        # The attempt claimed under version 1 settles under the latest; workers finish the task.
        result = db.settle(
            [Settlement(task_id, "s0", claim.attempt, True, results="s0")],
            time.time(),
            stop_on_failure=False,
            owner="old-worker",
        )
        assert result.lost == [] and result.tasks == {task_id: "in_progress"}
        harness.start_worker()
        (task,) = harness.wait_done(engine, [task_id])
        assert task.state == "complete"
        assert [s.results for s in engine.get_steps(task_id)] == [f"s{i}" for i in range(6)]
        db.close()
    finally:
        harness.close()


def _rows_read(cur: psycopg.Cursor[Any]) -> dict[str, int]:
    cur.execute(
        "SELECT relname, coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) "
        "FROM pg_stat_xact_user_tables WHERE relname IN ('tasker_steps', 'tasker_transitions')"
    )
    return {str(r[0]): int(r[1]) for r in cur.fetchall()}


@pytest.mark.parametrize("settle", ["tasker_settle", "tasker_settle_v3"])
def test_settling_a_chain_step_reads_a_bounded_number_of_rows(pg_url: str, settle: str) -> None:
    """Version 1 read every step of the task per settle once its plans were cached while the
    tables were small (a fresh database is exactly that): O(N) per step, O(N^2) per chain.
    Version 2's settle and version 3's (which reports its decisions) read a bounded number."""
    n = 3000
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: None
    harness.templates.append(chain("long", n))
    try:
        engine = harness.engine()
        task_id = engine.submit(TaskRequest("v2", "long")).id
        db = WorkTable(engine.store)  # type: ignore[arg-type]
        now = time.time()
        db.activate(
            [task_id],
            now,
            stop_on_failure=False,
            graph_for=lambda t: chain_graph(n),
            on_error=lambda *a: None,
        )
        (claim,) = db.claim("w", 1, now + 30, now)
        with psycopg.connect(conninfo(pg_url)) as conn:
            for _ in range(8):  # past the plan cache's first (custom) plans
                with conn.transaction(), conn.cursor() as cur:
                    before = _rows_read(cur)
                    cur.execute(
                        f"SELECT kind, name, attempts FROM {settle}(ARRAY[%s], ARRAY[%s], "
                        "ARRAY[%s], ARRAY[true], ARRAY['null'::jsonb], ARRAY[NULL::jsonb], "
                        "ARRAY[NULL::float8], ARRAY['{}'::jsonb], ARRAY['ok'], ARRAY[0], NULL, "
                        "%s, false, 'w', 1, %s)",
                        (task_id, claim.name, claim.attempt, now, now + 30),
                    )
                    got = cur.fetchall()
                    after = _rows_read(cur)
                read = {k: after.get(k, 0) - before.get(k, 0) for k in after}
                assert read["tasker_steps"] < 30, read
                assert read["tasker_transitions"] < 30, read
                claims = [r for r in got if r[0] == "claim"]
                assert len(claims) == 1
                claim = ClaimedStep(task_id, claims[0][1], 0, "ok", claims[0][2], 1, False, {})
        db.close()
    finally:
        harness.close()
