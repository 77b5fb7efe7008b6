"""Ticks on pool threads: what the driver must still see, and what must not move without it.

While a thread drives, the pool thread that reports an outcome records it and dispatches the next
steps itself; the driver sleeps until something only it handles comes due. These tests give the
driver a long poll interval, so a wake-up that went missing shows as a run that does not finish
within its (generous) timeout rather than as a slow test.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from engine_support import check_task_history, make_engine, workflow

from tasker_core import RetryableError, SystemClock, TaskRequest
from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.orchestration.coordinator import STRAGGLER_CHECK
from tasker_core.protocols import Change

SLOW_POLL = {"poll_interval": "30s", "heartbeat_interval": "30s", "lease": "60s"}


def noop(ctx: Any) -> None:
    return None


def _fan(width: int) -> dict[str, Any]:
    steps = [{"name": "src", "handler": "noop"}]
    steps += [{"name": f"w{i}", "handler": "noop", "depends_on": ["src"]} for i in range(width)]
    steps.append({"name": "sink", "handler": "noop", "depends_on": [f"w{i}" for i in range(width)]})
    return workflow("fan", steps)


class ThreadRecordingStore(MemoryStore):
    """Notes which thread wrote each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.writers: list[str] = []

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        self.writers.append(threading.current_thread().name)
        return super().apply(changes, now, atomic=atomic)


class FailingStore(MemoryStore):
    """Raises on the n-th batch, like a store whose disk went away mid-run."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.batches = 0
        self.fail_at = fail_at

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        self.batches += 1
        if self.batches == self.fail_at:
            raise OSError("disk gone")
        return super().apply(changes, now, atomic=atomic)


def test_pool_threads_record_outcomes_while_the_caller_drives() -> None:
    store = ThreadRecordingStore()
    engine = make_engine(
        [_fan(200)], {"noop": noop}, clock=SystemClock(), store=store, execution=SLOW_POLL
    )
    task = engine.run(TaskRequest("test", "fan"), timeout=60)
    assert task.state == "complete"
    from_pool = sum(1 for name in store.writers if name.startswith("tasker-step"))
    assert from_pool > len(store.writers) / 2, store.writers
    check_task_history(engine, task.id)
    engine.close()


def test_a_retry_scheduled_on_a_pool_thread_wakes_the_driver() -> None:
    calls: list[int] = []

    def flaky(ctx: Any) -> str:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RetryableError("not yet", retry_after=0.01)
        return "ok"

    template = workflow(
        "flaky",
        [
            {"name": "a", "handler": "noop"},
            {"name": "b", "handler": "flaky", "depends_on": ["a"], "retry": {"max_attempts": 5}},
        ],
    )
    engine = make_engine(
        [template], {"noop": noop, "flaky": flaky}, clock=SystemClock(), execution=SLOW_POLL
    )
    task = engine.run(TaskRequest("test", "flaky"), timeout=20)  # a lost wake-up sleeps 30 s
    assert task.state == "complete"
    assert calls == [1, 2, 3]
    check_task_history(engine, task.id)
    engine.close()


def test_an_async_outcome_wakes_the_driver() -> None:
    async def later(ctx: Any) -> int:
        return ctx.attempt

    template = workflow(
        "mixed",
        [
            {"name": "a", "handler": "noop"},
            {"name": "b", "handler": "later", "depends_on": ["a"]},
            {"name": "c", "handler": "noop", "depends_on": ["b"]},
        ],
    )
    engine = make_engine(
        [template], {"noop": noop, "later": later}, clock=SystemClock(), execution=SLOW_POLL
    )
    task = engine.run(TaskRequest("test", "mixed"), timeout=20)
    assert task.state == "complete"
    assert {s.name: s.results for s in engine.get_steps(task.id)}["b"] == 1
    engine.close()


def test_a_step_started_on_a_pool_thread_still_times_out() -> None:
    release = threading.Event()

    def stuck(ctx: Any) -> None:
        release.wait(30)

    template = workflow(
        "stuck",
        [
            {"name": "a", "handler": "noop"},
            {
                "name": "b",
                "handler": "stuck",
                "depends_on": ["a"],
                "timeout": "200ms",
                "retry": {"max_attempts": 1},
            },
        ],
    )
    engine = make_engine(
        [template], {"noop": noop, "stuck": stuck}, clock=SystemClock(), execution=SLOW_POLL
    )
    try:
        task = engine.run(TaskRequest("test", "stuck"), timeout=20)
        assert task.state == "error"
        step = {s.name: s for s in engine.get_steps(task.id)}["b"]
        assert step.error is not None and step.error.error_class == "StepTimeoutError"
    finally:
        release.set()
        engine.close()


def test_a_store_error_on_a_pool_thread_reaches_the_caller() -> None:
    store = FailingStore(fail_at=3)  # the first batches come from the driver; later, the pool
    engine = make_engine(
        [_fan(50)], {"noop": noop}, clock=SystemClock(), store=store, execution=SLOW_POLL
    )
    with pytest.raises(OSError, match="disk gone"):
        engine.run(TaskRequest("test", "fan"), timeout=20)
    engine.close()


def test_outcomes_wait_in_the_inbox_while_nobody_drives() -> None:
    release = threading.Event()
    entered = threading.Event()

    def gate(ctx: Any) -> None:
        entered.set()
        release.wait(30)

    template = workflow(
        "gated",
        [
            {"name": "a", "handler": "gate"},
            {"name": "b", "handler": "noop", "depends_on": ["a"]},
        ],
    )
    engine = make_engine(
        [template], {"noop": noop, "gate": gate}, clock=SystemClock(), execution=SLOW_POLL
    )
    task = engine.run(TaskRequest("test", "gated"), timeout=0.3)
    assert task.state == "in_progress"
    assert entered.wait(10)
    release.set()
    # The pool thread reports "a" but must not tick: nobody drives, so nothing moves.
    for _ in range(50):
        if engine.coordinator._inbox:
            break
        threading.Event().wait(0.02)
    assert [s.state for s in engine.get_steps(task.id)] == ["in_progress", "pending"]
    finished = engine.run_task(task.id, timeout=20)
    assert finished.state == "complete"
    check_task_history(engine, task.id)
    engine.close()


def test_outcomes_no_pool_thread_ticked_are_picked_up_by_the_driver() -> None:
    """The safety net for an outcome whose thread went on to a waiting job: the driver looks at
    the inbox every STRAGGLER_CHECK while steps are in flight, whatever the poll interval."""
    engine = make_engine([_fan(20)], {"noop": noop}, clock=SystemClock(), execution=SLOW_POLL)
    engine.coordinator.tick_from_pool = lambda: None  # type: ignore[method-assign]
    assert STRAGGLER_CHECK < 1
    task = engine.run(TaskRequest("test", "fan"), timeout=20)  # 30 s poll: a miss would time out
    assert task.state == "complete"
    check_task_history(engine, task.id)
    engine.close()
