"""The distributed worker in-process: readiness, retries, failures, manual operations, leases."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import psycopg
import pytest
from pytest_tasker.history import assert_legal_history
from tasker_core import Engine, PermanentError, RetryableError, StepContext, TaskRequest

from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness as Cluster
from tasker_postgres.store import PostgresStore
from tasker_postgres.work import Settlement, WorkTable


def wf(name: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"namespace": "t", "name": name, "version": "1.0.0", "steps": steps, **extra}


def step(
    name: str, handler: str = "ok", deps: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    return {"name": name, "handler": handler, "depends_on": list(deps), **extra}


def legal(engine: Engine, task_id: str) -> None:
    finals: dict[str | None, str] = {None: engine.get_task(task_id).state}
    finals.update({s.name: s.state for s in engine.get_steps(task_id)})
    assert_legal_history(engine.transitions(task_id), finals)


def _fail(task_id: str, exc: Exception) -> None:
    pytest.fail(f"activation of {task_id} failed: {exc}")


def ok(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step, "deps": dict(ctx.dependencies)}


def test_diamond_runs_in_order_with_dependency_results(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(
        wf(
            "diamond",
            [step("a"), step("b", deps=("a",)), step("c", deps=("a",)), step("d", deps=("b", "c"))],
        )
    )
    engine = cluster.engine()
    ids = [engine.submit(TaskRequest("t", "diamond", context={"i": i})).id for i in range(5)]
    cluster.start_worker()
    cluster.start_worker()
    for task in cluster.wait_done(engine, ids):
        assert task.state == "complete"
        steps = {s.name: s for s in engine.get_steps(task.id)}
        assert set(steps["d"].results["deps"]) == {"b", "c"}
        assert steps["b"].results["deps"]["a"]["step"] == "a"
        legal(engine, task.id)


def test_retries_wait_for_backoff_then_succeed(cluster: Cluster) -> None:
    seen: list[float] = []

    def flaky(ctx: StepContext) -> int:
        seen.append(time.time())
        if ctx.attempt < 3:
            raise RetryableError("not yet", retry_after=0.3)
        return ctx.attempt

    cluster.handlers.update(ok=ok, flaky=flaky)
    retry = {"retryable": True, "max_attempts": 3}
    cluster.templates.append(wf("retry", [step("f", "flaky", retry=retry)]))
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "retry")).id
    cluster.start_worker()
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "complete"
    assert engine.get_steps(task_id)[0].results == 3
    assert all(b - a >= 0.29 for a, b in itertools.pairwise(seen))
    moves = [(t.step, t.to_state) for t in engine.transitions(task_id)]
    assert (None, "pending") in moves, "the task waits (pending) while only a backoff remains"
    legal(engine, task_id)


def test_permanent_failure_fails_the_task_but_independent_branches_finish(
    cluster: Cluster,
) -> None:
    def boom(ctx: StepContext) -> None:
        raise PermanentError("no")

    cluster.handlers.update(ok=ok, boom=boom)
    cluster.templates.append(
        wf(
            "fail",
            [
                step("a"),
                step("bad", "boom", deps=("a",)),
                step("after", deps=("bad",)),
                step("side", deps=("a",)),
                step("side2", deps=("side",)),
            ],
        )
    )
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "fail")).id
    cluster.start_worker()
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "error"
    states = {s.name: s.state for s in engine.get_steps(task_id)}
    assert states == {
        "a": "complete",
        "bad": "error",
        "after": "pending",
        "side": "complete",
        "side2": "complete",
    }
    legal(engine, task_id)


def test_stop_on_failure_dispatches_nothing_new(cluster: Cluster) -> None:
    def boom(ctx: StepContext) -> None:
        raise PermanentError("no")

    cluster.handlers.update(ok=ok, boom=boom)
    cluster.templates.append(
        wf("stop", [step("bad", "boom"), step("slow", "ok"), step("next", deps=("slow",))])
    )
    cluster.config["execution"] = {"on_failure": "stop"}
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "stop")).id
    cluster.start_worker(stop_on_failure=True, concurrency=1)
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "error"
    assert {s.name: s.state for s in engine.get_steps(task_id)}["next"] == "pending"
    legal(engine, task_id)


def test_manual_resolve_then_workers_finish_the_task(cluster: Cluster) -> None:
    def boom(ctx: StepContext) -> None:
        raise PermanentError("no")

    cluster.handlers.update(ok=ok, boom=boom)
    cluster.templates.append(wf("fix", [step("bad", "boom"), step("after", deps=("bad",))]))
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "fix")).id
    cluster.start_worker()
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "error"
    engine.resolve(task_id, "bad", results={"fixed": True})
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "complete"
    steps = {s.name: s for s in engine.get_steps(task_id)}
    assert steps["after"].results["deps"] == {"bad": {"fixed": True}}
    legal(engine, task_id)


def test_manual_retry_reruns_failed_steps(cluster: Cluster) -> None:
    calls: list[int] = []

    def once_bad(ctx: StepContext) -> str:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise PermanentError("first call fails")
        return "fine"

    cluster.handlers.update(ok=ok, once_bad=once_bad)
    cluster.templates.append(wf("again", [step("x", "once_bad"), step("y", deps=("x",))]))
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "again")).id
    cluster.start_worker()
    assert cluster.wait_done(engine, [task_id])[0].state == "error"
    engine.retry(task_id)
    assert cluster.wait_done(engine, [task_id])[0].state == "complete"
    legal(engine, task_id)


def test_cancel_stops_dispatch(cluster: Cluster) -> None:
    gate = threading.Event()

    def wait(ctx: StepContext) -> str:
        gate.wait(10)
        return "done"

    cluster.handlers.update(ok=ok, wait=wait)
    cluster.templates.append(wf("cancel", [step("w", "wait"), step("after", deps=("w",))]))
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "cancel")).id
    cluster.start_worker()
    deadline = time.monotonic() + 10
    while engine.get_steps(task_id)[0].state != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    engine.cancel(task_id)
    gate.set()
    time.sleep(0.5)
    assert engine.get_task(task_id).state == "cancelled"
    states = {s.name: s.state for s in engine.get_steps(task_id)}
    assert states == {"w": "complete", "after": "cancelled"}
    legal(engine, task_id)


def test_settle_is_fenced_by_attempt_and_reaper_counts_the_lost_attempt(pg_url: str) -> None:
    store = PostgresStore(pg_url, migrate=False)
    cluster = Cluster(pg_url)
    cluster.handlers["ok"] = ok
    cluster.templates.append(wf("one", [step("s", retry={"retryable": True, "max_attempts": 3})]))
    engine = cluster.engine()
    try:
        task_id = engine.submit(TaskRequest("t", "one")).id
        db = WorkTable(store)
        now = time.time()
        db.activate(
            [task_id],
            now,
            stop_on_failure=False,
            graph_for=lambda t: [([], [])],
            on_error=_fail,
        )
        (claim,) = db.claim("dead-worker", 5, now + 0.2, now)
        assert db.claim("other", 5, now + 5, now) == []
        # The lease runs out: the reaper's settle (fenced by expiry) fails the attempt.
        lost = Settlement(
            task_id, "s", claim.attempt, False, retry_at=now + 1.5, reason="lease lost"
        )
        early = db.settle([lost], now, stop_on_failure=False, owner="reaper", expired_before=now)
        assert early.lost == [(task_id, "s")], "a live lease is not reaped"
        later = now + 1.0
        assert [e.step.name for e in db.expired(later, 10)] == ["s"]
        reaped = db.settle(
            [lost], later, stop_on_failure=False, owner="reaper", expired_before=later
        )
        assert reaped.lost == [] and reaped.tasks == {task_id: "pending"}
        # The dead worker's late outcome loses its compare-and-set.
        late = Settlement(task_id, "s", claim.attempt, True, results=1)
        assert db.settle([late], later, stop_on_failure=False, owner="dead-worker").lost == [
            (task_id, "s")
        ]
        (s,) = store.get_steps(task_id)
        assert (s.state, s.attempts) == ("error", 1)
        cluster.start_worker()
        (task,) = cluster.wait_done(engine, [task_id])
        assert task.state == "complete"
        assert store.get_steps(task_id)[0].attempts == 2
        legal(engine, task_id)
    finally:
        cluster.close()
        store.close()


def test_worker_refuses_a_non_postgres_store() -> None:
    from tasker_core import Config

    from tasker_postgres.worker import Worker, WorkerOptions

    engine = Engine(Config.from_mapping({"store": {"url": "memory://"}, "events": {"sinks": []}}))
    try:
        with pytest.raises(TypeError, match="needs a Postgres store"):
            Worker(engine, WorkerOptions())
    finally:
        engine.close()


def test_a_task_another_worker_is_activating_is_looked_at_again_without_spinning(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While another worker holds a due task (activating it), a worker looks for due tasks a
    few times, not on every tick; it takes the task soon after the holder lets go."""
    looks = itertools.count()
    due_tasks = WorkTable.due_tasks

    def counted(self: WorkTable, now: float, limit: int, stop_on_failure: bool) -> list[str]:
        next(looks)
        return due_tasks(self, now, limit, stop_on_failure)

    monkeypatch.setattr(WorkTable, "due_tasks", counted)
    cluster.handlers["ok"] = ok
    cluster.templates.append(wf("one", [step("s")]))
    engine = cluster.engine()
    task_id = engine.submit(TaskRequest("t", "one")).id
    with psycopg.connect(conninfo(cluster.url)) as holder:  # the other worker's activation
        holder.execute("SELECT 1 FROM tasker_tasks WHERE id = %s FOR NO KEY UPDATE", (task_id,))
        cluster.start_worker()
        time.sleep(0.6)
        held_looks = next(looks)
        assert engine.get_task(task_id).state == "pending"
    released = time.monotonic()
    (task,) = cluster.wait_done(engine, [task_id])
    assert task.state == "complete"
    # One look per ACTIVATION_RECHECK (50 ms) and per poll interval: about 15 in 0.6 s.
    assert 3 <= held_looks <= 40, held_looks
    assert time.monotonic() - released < 2.0
