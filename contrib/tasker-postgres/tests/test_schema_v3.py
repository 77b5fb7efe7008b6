"""Schema version 3: upgrading a version-2 database with work in flight, while a version-2
worker keeps settling (version 3 only adds functions), and what the new settle reports."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable

import psycopg
import pytest
from tasker_core import Event, TaskRequest
from upgrade_support import JOIN_GRAPH, join_template

from tasker_postgres import store as store_module
from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import MIGRATIONS, current_version, upgrade
from tasker_postgres.work import Decision, Settlement, WorkTable
from tasker_postgres.worker import Worker, WorkerOptions

# a, b -> c -> d
TEMPLATE = join_template("v3")

# Version 2's settle, exactly as a version-2 worker calls it.
V2_SETTLE = (
    "SELECT kind, task_id, name, detail FROM tasker_settle(ARRAY[%s], ARRAY[%s], ARRAY[%s], "
    "ARRAY[true], ARRAY[%s::jsonb], ARRAY[NULL::jsonb], ARRAY[NULL::float8], ARRAY['{}'::jsonb], "
    "ARRAY['handler returned'], ARRAY[0], NULL, %s, false, 'old-worker', 0, 0)"
)


def test_version_2_is_frozen() -> None:
    """Databases at version 2 never see an edit of it: a later change is a new version."""
    digest = hashlib.sha256(MIGRATIONS[1].sql.encode()).hexdigest()
    assert digest == "8d37489032fe634313761b45943ca7b1b3fccc0e113cae5b2f02e27e59a85d61"


def test_upgrade_from_version_2_with_work_in_flight(
    pg_url: str, pg_url_at: Callable[[str, int], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_url_at(pg_url, 2)
    monkeypatch.setattr(store_module, "LATEST_VERSION", 2)  # to submit into the old database
    harness = Harness(pg_url)
    harness.handlers["ok"] = lambda ctx: ctx.step
    harness.templates.append(TEMPLATE)
    try:
        engine = harness.engine()
        task_id = engine.submit(TaskRequest("v3", "join")).id
        db = WorkTable(engine.store)  # type: ignore[arg-type]
        now = time.time()
        with psycopg.connect(conninfo(pg_url)) as conn:  # a version-2 worker activates it
            graph = json.dumps(JOIN_GRAPH)
            conn.execute("SELECT tasker_load_graph(%s, %s::jsonb)", (task_id, graph))
            assert conn.execute(
                "SELECT tasker_finalize(%s, %s, false)", (task_id, now)
            ).fetchone() == ("in_progress",)
            conn.commit()
        claims = {c.name: c for c in db.claim("old-worker", 5, now + 30, now)}
        assert sorted(claims) == ["a", "b"]
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert current_version(conn) == 2
            assert upgrade(conn, "test", target=3) == [3]
            assert upgrade(conn, "test", target=3) == []
            assert current_version(conn) == 3
            # The version-2 worker, still running, settles its attempt of a with version 2's
            # function: version 3 left it in place.
            rows = conn.execute(
                V2_SETTLE, (task_id, "a", claims["a"].attempt, '"a"', time.time())
            ).fetchall()
            conn.commit()
        assert rows == [("task", task_id, None, "in_progress")]
        monkeypatch.undo()
        # This code settles b with version 3's settle, which reports c enqueued and claims it.
        db.settle_version = 3
        at = time.time()
        result = db.settle(
            [Settlement(task_id, "b", claims["b"].attempt, True, results="b")],
            at,
            stop_on_failure=False,
            owner="new-worker",
            claim=1,
            until=at + 30,
        )
        assert result.lost == [] and result.tasks == {task_id: "in_progress"}
        assert result.decisions == [Decision("enqueued", task_id, "c", "ready", 1, None, None)]
        (claim,) = result.claims
        assert (claim.name, claim.dependencies) == ("c", {"a": "a", "b": "b"})
        db.settle(
            [Settlement(task_id, "c", claim.attempt, True, results="c")],
            time.time(),
            stop_on_failure=False,
            owner="new-worker",
        )
        # The database goes on to the latest version; a current worker finishes the task and
        # publishes its events.
        with psycopg.connect(conninfo(pg_url)) as conn:
            assert upgrade(conn, "test") == [m.version for m in MIGRATIONS[3:]]
        worker_engine = harness.engine()
        seen: list[Event] = []
        worker_engine.subscribe("*", seen.append)
        options = WorkerOptions(concurrency=4, lease=2.0, heartbeat_interval=0.3, poll_interval=0.2)
        worker = Worker(worker_engine, options)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        harness.workers.append((worker, thread))
        (task,) = harness.wait_done(engine, [task_id])
        assert task.state == "complete"
        assert [s.results for s in engine.get_steps(task_id)] == ["a", "b", "c", "d"]
        assert worker_engine.flush_events(5)
        assert [(e.name, e.data.get("step")) for e in seen] == [
            ("step.started", "d"),
            ("step.completed", "d"),
            ("task.completed", None),
        ]
        db.close()
    finally:
        harness.close()
