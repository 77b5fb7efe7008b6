"""What the engine's fast paths must not change: the executor runs blocking handlers side by side
(one job at a time or a tick's worth), a new task driven from the steps it was created with matches
one read back from the store, the memory store's compact history reads back exactly, and a closed
engine is freed at once.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from engine_support import check_task_history, make_engine, workflow
from hypothesis import given, settings
from hypothesis import strategies as st

from tasker_core import StepContext, TaskRequest
from tasker_core.builtin import memory_store
from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.models import Step, StepChange, StepOutcome, Task, TaskChange
from tasker_core.orchestration.executor import Executor, Job


def _job(name: str, fn: Any) -> Job:
    return Job("t", name, 1, fn, None, None)  # type: ignore[arg-type]  # handlers ignore ctx here


@pytest.fixture
def outcomes() -> Iterator[tuple[list[StepOutcome], threading.Condition]]:
    yield [], threading.Condition()


@pytest.mark.parametrize("submit_many", [False, True])
def test_blocking_handlers_all_run_side_by_side(
    outcomes: tuple[list[StepOutcome], threading.Condition], submit_many: bool
) -> None:
    done, cond = outcomes
    workers = 6

    def on_done(outcome: StepOutcome) -> None:
        with cond:
            done.append(outcome)
            cond.notify_all()

    executor = Executor(workers, on_done)
    barrier = threading.Barrier(workers, timeout=10)

    def wait_for_all(ctx: object) -> int:
        return barrier.wait()  # returns only once every job runs at the same time

    jobs = [_job(f"s{i}", wait_for_all) for i in range(workers)]
    try:
        if submit_many:
            executor.submit_many(jobs)
        else:
            for job in jobs:
                executor.submit(job)
        with cond:
            assert cond.wait_for(lambda: len(done) == workers, 15)
    finally:
        executor.shutdown()
    assert all(o.ok for o in done), [o.error for o in done]
    assert sorted(o.results for o in done) == list(range(workers))


def test_more_jobs_than_workers_all_run_and_shutdown_stops_every_worker(
    outcomes: tuple[list[StepOutcome], threading.Condition],
) -> None:
    done, cond = outcomes

    def on_done(outcome: StepOutcome) -> None:
        with cond:
            done.append(outcome)
            cond.notify_all()

    executor = Executor(3, on_done)
    executor.submit_many([_job(f"s{i}", lambda ctx, i=i: i) for i in range(200)])
    with cond:
        assert cond.wait_for(lambda: len(done) == 200, 15)
    before = threading.active_count()
    executor.shutdown()
    for _ in range(200):
        if threading.active_count() <= before - 3:
            break
        threading.Event().wait(0.01)
    assert threading.active_count() <= before - 3
    assert sorted(o.results for o in done) == list(range(200))


def _fan(width: int) -> list[dict[str, Any]]:
    def step(name: str, deps: list[str]) -> dict[str, Any]:
        return {"name": name, "handler": "t.echo", "depends_on": deps}

    middle = [step(f"w{i}", ["src"]) for i in range(width)]
    return [step("src", []), *middle, step("sink", [f"w{i}" for i in range(width)])]


def _echo(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step, "deps": sorted(ctx.dependencies)}


def test_run_from_created_steps_matches_a_run_read_back_from_the_store() -> None:
    engine = make_engine([workflow("fan", _fan(12))], {"t.echo": _echo})
    fresh = engine.run(TaskRequest("test", "fan", context={"n": 1}))
    stored = engine.submit(TaskRequest("test", "fan", context={"n": 2}))
    resumed = engine.run_task(stored.id)
    assert fresh.state == resumed.state == "complete"

    def shape(task_id: str) -> list[tuple[str, str, int, Any]]:
        return [(s.name, s.state, s.attempts, s.results) for s in engine.get_steps(task_id)]

    def history(task_id: str) -> list[tuple[str | None, str, str]]:
        return [(t.step, t.from_state, t.to_state) for t in engine.transitions(task_id)]

    assert shape(fresh.id) == shape(resumed.id)
    assert sorted(history(fresh.id), key=str) == sorted(history(resumed.id), key=str)
    check_task_history(engine, fresh.id)
    engine.close()


def test_a_step_changed_between_creation_and_load_is_re_read_not_overwritten() -> None:
    gate = threading.Event()
    engine = make_engine(
        [workflow("fan", _fan(3))], {"t.echo": _echo}, execution={"max_concurrent_steps": 2}
    )
    original = engine.store.create_task

    def create_then_resolve(task: Task, steps: Any) -> tuple[Task, bool]:
        created = original(task, steps)
        # Another actor resolves w0 after creation, before the coordinator loads the task.
        engine.store.apply(
            [StepChange(task.id, "w0", "pending", "resolved_manually", results={"by": "op"})],
            now=0.0,
        )
        gate.set()
        return created

    engine.store.create_task = create_then_resolve  # type: ignore[method-assign]
    task = engine.run(TaskRequest("test", "fan"))
    assert gate.is_set() and task.state == "complete"
    w0 = next(s for s in engine.get_steps(task.id) if s.name == "w0")
    assert (w0.state, w0.results, w0.attempts) == ("resolved_manually", {"by": "op"}, 0)
    check_task_history(engine, task.id)
    engine.close()


def test_a_closed_engine_is_freed_without_the_cyclic_gc() -> None:
    engine = make_engine([workflow("fan", _fan(4))], {"t.echo": _echo})
    assert engine.run(TaskRequest("test", "fan")).state == "complete"
    engine.close()
    ref = weakref.ref(engine)
    store = weakref.ref(engine.store)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        del engine
        for _ in range(100):  # a worker may still be returning from the last step
            if ref() is None and store() is None:
                break
            threading.Event().wait(0.01)
        assert ref() is None and store() is None
    finally:
        if was_enabled:
            gc.enable()


def test_memory_rows_hold_every_step_field_in_order() -> None:
    """get_steps rebuilds Steps from row values positionally: the row must follow Step's fields."""
    step = Step("t", 3, "a", "h", "error", 5, False, 2, 9.5, "w", 7.0, {"r": 1}, None, 4.0)
    row = memory_store._row(step)
    assert list(row) == [a.name for a in attrs.fields(Step)]
    assert Step(*row.values()) == step


def _store_with_steps(names: list[str]) -> MemoryStore:
    store = MemoryStore()
    task = Task("t", "n", "w", "1", "pending", {}, 0.0, 0.0)
    steps = [Step("t", i, name, "h", "pending", 3, True) for i, name in enumerate(names)]
    store.create_task(task, steps)
    return store


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", None]), st.integers(0, 3)), min_size=1, max_size=12
    )
)
def test_memory_history_marks_exactly_the_last_transition_of_each_record(
    moves: list[tuple[str | None, int]],
) -> None:
    """Random walks of step/task changes: most_recent (derived from one index per record) is True
    on the last transition of each record only, and metadata comes back as given."""
    store = _store_with_steps(["a", "b"])
    step_path = ["pending", "enqueued", "in_progress", "complete"]
    task_path = ["pending", "in_progress", "complete"]
    where: dict[str | None, int] = {"a": 0, "b": 0, None: 0}
    for n, (record, size) in enumerate(moves):
        batch: list[StepChange | TaskChange] = []
        path = task_path if record is None else step_path
        for k in range(size):
            i = where[record]
            if i + 1 >= len(path):
                break
            meta = {"n": n, "k": k}
            if record is None:
                batch.append(TaskChange("t", path[i], path[i + 1], metadata=meta))
            else:
                batch.append(StepChange("t", record, path[i], path[i + 1], metadata=meta))
            where[record] = i + 1
        if batch:
            assert all(store.apply(batch, now=float(n), atomic=True))
    log = store.get_transitions("t")
    last = {t.step: i for i, t in enumerate(log)}
    assert [t.most_recent for t in log] == [last[t.step] == i for i, t in enumerate(log)]
    assert [t.sort_key for t in log] == sorted({t.sort_key for t in log})
    assert all(set(t.metadata) == {"n", "k"} for t in log)
