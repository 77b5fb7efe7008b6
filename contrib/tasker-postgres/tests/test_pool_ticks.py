"""Ticks on pool threads: a worker's pool thread that finished a step settles it and starts the
next steps itself; the loop thread must still see what only it is woken for.

The workers here poll every 30 s, so a wake-up that went missing shows as a task that does not
finish within its (generous) timeout rather than as a slow test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
import pytest
from pytest_tasker.history import assert_legal_history
from tasker_core import Engine, StepContext, TaskRequest

from tasker_postgres.harness import FAST
from tasker_postgres.harness import Harness as Cluster
from tasker_postgres.work import Settlement, SettleResult
from tasker_postgres.worker import Worker, WorkerOptions

SLOW_POLL: dict[str, Any] = {"poll_interval": 30.0, "heartbeat_interval": 30.0, "lease": 60.0}
POOL = "tasker-step"  # the executor's pool threads


def wf(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {"namespace": "t", "name": name, "version": "1.0.0", "steps": steps}


def chain(name: str, length: int, handler: str = "ok") -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"name": "s0", "handler": handler}]
    steps += [
        {"name": f"s{i}", "handler": handler, "depends_on": [f"s{i - 1}"]} for i in range(1, length)
    ]
    return wf(name, steps)


def ok(ctx: StepContext) -> str:
    return ctx.step


SettleFn = Callable[..., SettleResult]


class SettleSpy:
    """Wraps a worker's ``db.settle``: notes the thread and steps of each call; can fail some."""

    def __init__(self, worker: Worker) -> None:
        self.inner: SettleFn = worker.db.settle
        self.calls: list[tuple[str, list[str]]] = []
        self.fail: Callable[[str], BaseException | None] = lambda thread: None
        worker.db.settle = self  # type: ignore[method-assign]

    def __call__(self, outcomes: Sequence[Settlement], *args: Any, **kwargs: Any) -> SettleResult:
        thread = threading.current_thread().name
        self.calls.append((thread, [o.step for o in outcomes]))
        error = self.fail(thread)
        if error is not None:
            raise error
        return self.inner(outcomes, *args, **kwargs)


def completes(engine: Engine, task_id: str) -> Counter[str]:
    """How many ``complete`` transitions each step of the task has."""
    moves = engine.transitions(task_id)
    return Counter(t.step for t in moves if t.to_state == "complete" and t.step)


def legal(engine: Engine, task_id: str) -> None:
    finals: dict[str | None, str] = {None: engine.get_task(task_id).state}
    finals.update({s.name: s.state for s in engine.get_steps(task_id)})
    assert_legal_history(engine.transitions(task_id), finals)


def test_a_chain_is_settled_on_pool_threads(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 30))
    engine = cluster.engine()
    worker = cluster.start_worker(**SLOW_POLL)
    spy = SettleSpy(worker)
    task_id = engine.submit(TaskRequest("t", "chain")).id
    (task,) = cluster.wait_done(engine, [task_id], timeout=20)
    assert task.state == "complete"
    settled = [thread for thread, steps in spy.calls if steps]
    assert len(settled) >= 25, spy.calls  # a few settles may batch two outcomes
    on_pool = sum(thread == POOL for thread in settled)
    assert on_pool >= len(settled) - 2, spy.calls  # at most a loop tick racing a pool thread
    assert completes(engine, task_id) == {f"s{i}": 1 for i in range(30)}
    legal(engine, task_id)


def test_outcomes_no_pool_thread_ticked_are_settled_by_the_loop(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The safety net for an outcome whose pool thread went on to a waiting job: while steps run,
    the loop takes reported outcomes every STRAGGLER_CHECK, whatever the poll interval."""
    monkeypatch.setattr(Worker, "_tick_from_pool", lambda self: None)  # no pool thread ticks
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 10))
    engine = cluster.engine()
    worker = cluster.start_worker(**SLOW_POLL)
    spy = SettleSpy(worker)
    task_id = engine.submit(TaskRequest("t", "chain")).id
    (task,) = cluster.wait_done(engine, [task_id], timeout=20)  # 30 s poll: a miss times out
    assert task.state == "complete"
    assert spy.calls and all(thread != POOL for thread, _ in spy.calls), spy.calls
    assert completes(engine, task_id) == {f"s{i}": 1 for i in range(10)}


def test_pool_ticks_off_settles_on_the_loop_thread(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 10))
    engine = cluster.engine()
    worker = cluster.start_worker(pool_ticks=False, **SLOW_POLL)
    spy = SettleSpy(worker)
    task_id = engine.submit(TaskRequest("t", "chain")).id
    (task,) = cluster.wait_done(engine, [task_id], timeout=20)
    assert task.state == "complete"
    assert spy.calls and all(thread != POOL for thread, _ in spy.calls), spy.calls


def test_notify_wakes_an_idle_worker_after_pool_ticks(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 5))
    engine = cluster.engine()
    cluster.start_worker(**SLOW_POLL)
    time.sleep(0.5)  # the worker has looked once and sleeps for its poll interval
    for _ in range(3):  # each task ends on a pool thread; the next NOTIFY must reach the loop
        started = time.monotonic()
        task_id = engine.submit(TaskRequest("t", "chain")).id
        (task,) = cluster.wait_done(engine, [task_id], timeout=10)
        assert task.state == "complete"
        assert time.monotonic() - started < 5.0
        time.sleep(0.2)


def test_async_outcomes_wake_the_loop_thread(cluster: Cluster) -> None:
    async def later(ctx: StepContext) -> str:
        await asyncio.sleep(0.01)
        return ctx.step

    cluster.handlers["later"] = later
    cluster.templates.append(chain("achain", 8, "later"))
    engine = cluster.engine()
    worker = cluster.start_worker(**SLOW_POLL)
    spy = SettleSpy(worker)
    task_id = engine.submit(TaskRequest("t", "achain")).id
    (task,) = cluster.wait_done(engine, [task_id], timeout=10)
    assert task.state == "complete"
    assert all(thread != POOL for thread, steps in spy.calls if steps), spy.calls


def test_a_transient_error_on_a_pool_settle_loses_nothing(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 12))
    engine = cluster.engine()
    worker = cluster.start_worker(**SLOW_POLL)
    spy = SettleSpy(worker)
    failed: list[int] = []

    def fail(thread: str) -> BaseException | None:
        if thread == POOL and len(spy.calls) in (4, 5, 9):  # some pool settles fail
            failed.append(len(spy.calls) - 1)
            return psycopg.OperationalError("server closed the connection unexpectedly")
        return None

    spy.fail = fail
    task_id = engine.submit(TaskRequest("t", "chain")).id
    (task,) = cluster.wait_done(engine, [task_id], timeout=20)
    assert task.state == "complete"
    assert failed, spy.calls
    for index in failed:  # the failed outcome was offered again (by the loop thread first)
        steps = spy.calls[index][1]
        retried = spy.calls[index + 1]
        assert set(steps) <= set(retried[1]), spy.calls
        assert retried[0] != POOL, spy.calls
    assert completes(engine, task_id) == {f"s{i}": 1 for i in range(12)}
    legal(engine, task_id)


def test_an_error_in_a_pool_tick_is_raised_by_the_loop(cluster: Cluster) -> None:
    cluster.handlers["ok"] = ok
    cluster.templates.append(chain("chain", 5))
    engine = cluster.engine()
    options: dict[str, Any] = {**FAST, **SLOW_POLL}
    worker = Worker(cluster.engine(), WorkerOptions(**options))
    spy = SettleSpy(worker)
    spy.fail = lambda thread: ValueError("settle broke") if thread == POOL else None
    raised: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    engine.submit(TaskRequest("t", "chain"))
    thread.join(10)
    assert not thread.is_alive(), "the loop thread must wake up and raise the pool's error"
    assert [str(e) for e in raised] == ["settle broke"]


def test_shutdown_with_pool_ticks_in_flight_holds_nothing(cluster: Cluster) -> None:
    def short(ctx: StepContext) -> str:
        time.sleep(0.005)
        return ctx.step

    cluster.handlers.update(ok=ok, short=short)
    width = 200
    steps: list[dict[str, Any]] = [{"name": "src", "handler": "ok"}]
    steps += [{"name": f"w{i}", "handler": "short", "depends_on": ["src"]} for i in range(width)]
    cluster.templates.append(wf("fan", steps))
    engine = cluster.engine()
    worker = cluster.start_worker(grace=5.0, **SLOW_POLL)
    spy = SettleSpy(worker)
    task_id = engine.submit(TaskRequest("t", "fan")).id
    deadline = time.monotonic() + 10
    while sum(thread == POOL for thread, _ in spy.calls) < 5:  # pool threads are ticking
        assert time.monotonic() < deadline, spy.calls
        time.sleep(0.005)
    worker.stop()
    (_, thread) = cluster.workers[-1]
    thread.join(10)
    assert not thread.is_alive()
    held = [s.name for s in engine.get_steps(task_id) if s.state == "in_progress"]
    assert held == [], "a stopped worker holds no step"
    assert not worker._running and not worker._pending and not worker._outcomes
    cluster.start_worker(**SLOW_POLL)
    (task,) = cluster.wait_done(engine, [task_id], timeout=30)
    assert task.state == "complete"
    assert completes(engine, task_id) == {"src": 1, **{f"w{i}": 1 for i in range(width)}}
    legal(engine, task_id)


@pytest.mark.parametrize("pool_ticks", [True, False])
def test_fan_out_runs_every_step_once(cluster: Cluster, pool_ticks: bool) -> None:
    cluster.handlers["ok"] = ok
    width = 300
    steps: list[dict[str, Any]] = [{"name": "src", "handler": "ok"}]
    steps += [{"name": f"w{i}", "handler": "ok", "depends_on": ["src"]} for i in range(width)]
    steps.append({"name": "sink", "handler": "ok", "depends_on": [f"w{i}" for i in range(width)]})
    cluster.templates.append(wf("fan", steps))
    engine = cluster.engine()
    for _ in range(2):
        cluster.start_worker(pool_ticks=pool_ticks, **SLOW_POLL)
    ids = [engine.submit(TaskRequest("t", "fan")).id for _ in range(2)]
    for task in cluster.wait_done(engine, ids, timeout=60):
        assert task.state == "complete"
        assert set(completes(engine, task.id).values()) == {1}
        assert len(completes(engine, task.id)) == width + 2
