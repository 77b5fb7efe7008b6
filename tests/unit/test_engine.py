"""The engine end to end on the memory store, with a manual clock."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import attrs
import pytest
from engine_support import Recorder, check_task_history, make_engine, workflow
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasker_core import (
    ContextValidationError,
    HandlerNotFoundError,
    InvalidTransitionError,
    ManualClock,
    PermanentError,
    RetryableError,
    StaleStateError,
    StepChange,
    StepContext,
    SystemClock,
    TaskRequest,
)
from tasker_core.fsm import StepState, TaskState


def echo(ctx: StepContext) -> dict[str, Any]:
    return {"step": ctx.step, "deps": sorted(ctx.dependencies)}


def steps_of(
    shape: dict[str, list[str]], handler: str = "t.echo", **extra: Any
) -> list[dict[str, Any]]:
    return [{"name": n, "handler": handler, "depends_on": d, **extra} for n, d in shape.items()]


SHAPES = {
    "chain": {f"s{i}": ([f"s{i - 1}"] if i else []) for i in range(6)},
    "diamond": {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]},
    "tree": {"r": [], "l1": ["r"], "l2": ["r"], "l11": ["l1"], "l12": ["l1"], "l21": ["l2"]},
    "fan": {
        "src": [],
        **{f"w{i}": ["src"] for i in range(10)},
        "sink": [f"w{i}" for i in range(10)],
    },
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_classic_shapes_complete_in_dependency_order(shape: str) -> None:
    order: list[str] = []
    lock = threading.Lock()

    def record(ctx: StepContext) -> dict[str, Any]:
        with lock:
            order.append(ctx.step)
        return echo(ctx)

    graph = SHAPES[shape]
    engine = make_engine([workflow(shape, steps_of(graph))], {"t.echo": record})
    task = engine.run(TaskRequest("test", shape))
    assert task.state == TaskState.COMPLETE
    steps = {s.name: s for s in engine.get_steps(task.id)}
    assert all(s.state == StepState.COMPLETE and s.attempts == 1 for s in steps.values())
    for name, deps in graph.items():
        assert all(order.index(d) < order.index(name) for d in deps)
        assert steps[name].results == {"step": name, "deps": sorted(deps)}
    check_task_history(engine, task.id)
    engine.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.lists(st.integers(0, 30), max_size=3), min_size=1, max_size=25),
    st.sets(st.integers(0, 24), max_size=4),
)
def test_random_dags_finish_with_maximal_progress(
    parents: list[list[int]], failing: set[int]
) -> None:
    names = [f"n{i}" for i in range(len(parents))]
    shape = {
        names[i]: sorted({names[p % i] for p in ps}) if i else [] for i, ps in enumerate(parents)
    }
    bad = {names[i] for i in failing if i < len(names)}

    def run(ctx: StepContext) -> str:
        if ctx.step in bad:
            raise PermanentError("broken on purpose")
        return ctx.step

    engine = make_engine([workflow("rand", steps_of(shape))], {"t.echo": run})
    task = engine.run(TaskRequest("test", "rand"))
    steps = {s.name: s for s in engine.get_steps(task.id)}

    def blocked(name: str) -> bool:
        return any(d in bad or blocked(d) for d in shape[name])

    for name in names:
        if blocked(name):
            assert steps[name].state == StepState.PENDING
        elif name in bad:
            assert steps[name].state == StepState.ERROR
        else:
            assert steps[name].state == StepState.COMPLETE
    assert task.state == (TaskState.ERROR if bad else TaskState.COMPLETE)
    check_task_history(engine, task.id)
    engine.close()


def test_retries_follow_backoff_on_the_controlled_clock() -> None:
    clock = ManualClock()
    seen: list[tuple[int, float]] = []

    def flaky(ctx: StepContext) -> str:
        seen.append((ctx.attempt, clock.now()))
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return "ok"

    retry = {"retry": {"max_attempts": 5, "backoff": {"base": "2s", "max": "60s"}}}
    engine = make_engine(
        [workflow("flaky", steps_of({"only": []}, handler="t.flaky", **retry))],
        {"t.flaky": flaky},
        clock=clock,
    )
    start = clock.now()
    task = engine.run(TaskRequest("test", "flaky"))
    assert task.state == TaskState.COMPLETE
    assert [a for a, _ in seen] == [1, 2, 3]
    # jitter is 0 in these tests: 2s after the first failure, 4s after the second
    assert seen[1][1] - seen[0][1] == pytest.approx(2.0)
    assert seen[2][1] - seen[1][1] == pytest.approx(4.0)
    assert seen[0][1] == start
    step = engine.get_steps(task.id)[0]
    assert step.attempts == 3 and step.results == "ok"
    history = [(t.from_state, t.to_state) for t in engine.transitions(task.id) if t.step]
    assert history.count(("in_progress", "error")) == 2
    assert history.count(("error", "enqueued")) == 2
    task_states = [t.to_state for t in engine.transitions(task.id) if t.step is None]
    assert task_states.count("pending") == 2  # waited for each backoff
    check_task_history(engine, task.id)


def test_retry_after_from_the_handler_wins_over_backoff() -> None:
    clock = ManualClock()
    times: list[float] = []

    def limited(ctx: StepContext) -> str:
        times.append(clock.now())
        if ctx.attempt == 1:
            raise RetryableError("rate limited", retry_after=42.0)
        return "done"

    engine = make_engine(
        [workflow("rl", steps_of({"call": []}, handler="t.rl"))], {"t.rl": limited}, clock=clock
    )
    task = engine.run(TaskRequest("test", "rl"))
    assert task.state == TaskState.COMPLETE
    assert times[1] - times[0] == pytest.approx(42.0)
    failed = [t for t in engine.transitions(task.id) if t.to_state == "error"]
    assert failed[0].metadata["retry_at"] == pytest.approx(times[0] + 42.0)


@pytest.mark.parametrize("retry", [{"retryable": False}, {"max_attempts": 1}])
def test_first_attempt_always_runs_but_never_retries(retry: dict[str, Any]) -> None:
    calls: list[int] = []

    def fail(ctx: StepContext) -> None:
        calls.append(ctx.attempt)
        raise RuntimeError("nope")

    engine = make_engine(
        [workflow("once", steps_of({"x": []}, handler="t.fail", retry=retry))], {"t.fail": fail}
    )
    task = engine.run(TaskRequest("test", "once"))
    assert calls == [1]
    assert task.state == TaskState.ERROR
    step = engine.get_steps(task.id)[0]
    assert step.state == StepState.ERROR and step.next_retry_at is None
    check_task_history(engine, task.id)


def test_attempts_exhausted_is_a_permanent_failure() -> None:
    def fail(ctx: StepContext) -> None:
        raise RuntimeError(f"fail {ctx.attempt}")

    engine = make_engine(
        [workflow("exh", steps_of({"x": []}, handler="t.fail", retry={"max_attempts": 3}))],
        {"t.fail": fail},
    )
    task = engine.run(TaskRequest("test", "exh"))
    step = engine.get_steps(task.id)[0]
    assert (task.state, step.attempts, step.error.message if step.error else None) == (
        TaskState.ERROR,
        3,
        "fail 3",
    )


def test_on_failure_stop_dispatches_nothing_new() -> None:
    ran: list[str] = []

    def run(ctx: StepContext) -> str:
        ran.append(ctx.step)
        if ctx.step == "bad":
            raise PermanentError("x")
        return "ok"

    shape = {"bad": [], "after": ["other"], "other": ["bad2"], "bad2": []}
    engine = make_engine(
        [workflow("stop", steps_of(shape))],
        {"t.echo": run},
        execution={"on_failure": "stop", "max_concurrent_steps": 1},
    )
    task = engine.run(TaskRequest("test", "stop"))
    assert task.state == TaskState.ERROR
    assert "after" not in ran and "other" not in ran


def test_sync_timeout_fails_the_attempt_and_retries() -> None:
    release = threading.Event()

    def slow(ctx: StepContext) -> str:
        if ctx.attempt == 1:
            release.wait(5)
        return f"attempt {ctx.attempt}"

    engine = make_engine(
        [
            workflow(
                "slow",
                steps_of(
                    {"x": []},
                    handler="t.slow",
                    timeout="200ms",
                    retry={"max_attempts": 2, "backoff": {"base": "10ms"}},
                ),
            )
        ],
        {"t.slow": slow},
        clock=SystemClock(),
    )
    task = engine.run(TaskRequest("test", "slow"), timeout=10)
    release.set()
    step = engine.get_steps(task.id)[0]
    assert task.state == TaskState.COMPLETE
    assert step.results == "attempt 2"
    errors = [t for t in engine.transitions(task.id) if t.to_state == "error"]
    assert "exceeded its timeout" in errors[0].reason


def test_async_handlers_run_concurrently_and_time_out() -> None:
    async def pause(ctx: StepContext) -> str:
        await asyncio.sleep(0.05)
        return ctx.step

    async def hang(ctx: StepContext) -> str:
        await asyncio.sleep(10)
        return "never"

    shape = {"a": [], "b": [], "c": ["a", "b"]}
    engine = make_engine(
        [
            workflow("async", steps_of(shape, handler="t.pause")),
            workflow(
                "hang",
                steps_of({"h": []}, handler="t.hang", timeout="100ms", retry={"retryable": False}),
            ),
        ],
        {"t.pause": pause, "t.hang": hang},
    )
    task = engine.run(TaskRequest("test", "async"))
    assert task.state == TaskState.COMPLETE
    assert [s.results for s in engine.get_steps(task.id)] == ["a", "b", "c"]
    hung = engine.run(TaskRequest("test", "hang"), timeout=10)
    step = engine.get_steps(hung.id)[0]
    assert (
        hung.state == TaskState.ERROR
        and step.error
        and step.error.error_class == "StepTimeoutError"
    )


def test_non_json_result_is_a_clear_step_error() -> None:
    engine = make_engine(
        [workflow("nj", steps_of({"x": []}, handler="t.bad"))], {"t.bad": lambda ctx: {"s": {1, 2}}}
    )
    task = engine.run(TaskRequest("test", "nj"))
    step = engine.get_steps(task.id)[0]
    assert task.state == TaskState.ERROR
    assert step.error is not None and "non-JSON result" in step.error.message
    assert "set" in step.error.message and step.attempts == 1


def test_idempotent_submission_returns_the_existing_task() -> None:
    engine = make_engine(
        [workflow("idem", steps_of({"x": []}))], {"t.echo": echo}, identity={"strategy": "hash"}
    )
    first = engine.submit(TaskRequest("test", "idem", context={"n": 1}))
    again = engine.submit(TaskRequest("test", "idem", context={"n": 1}))
    other = engine.submit(TaskRequest("test", "idem", context={"n": 2}))
    keyed = engine.submit(TaskRequest("test", "idem", context={"n": 2}, idempotency_key="k"))
    keyed2 = engine.submit(TaskRequest("test", "idem", context={"n": 3}, idempotency_key="k"))
    assert first.id == again.id and other.id != first.id and keyed.id == keyed2.id != other.id
    assert len(engine.list_tasks()) == 3


def test_context_schema_and_unknown_handler_fail_at_submission() -> None:
    engine = make_engine(
        [
            workflow(
                "schema",
                steps_of({"x": []}),
                context_schema={"type": "object", "required": ["order_id"]},
            ),
            workflow("nohandler", steps_of({"x": []}, handler="nowhere.to_be:found")),
        ],
        {"t.echo": echo},
    )
    with pytest.raises(ContextValidationError, match="order_id"):
        engine.submit(TaskRequest("test", "schema", context={}))
    with pytest.raises(HandlerNotFoundError, match="nowhere"):
        engine.submit(TaskRequest("test", "nohandler"))
    assert engine.list_tasks() == []


def test_illegal_transitions_are_refused_and_change_nothing() -> None:
    engine = make_engine([workflow("il", steps_of({"x": [], "y": []}))], {"t.echo": echo})
    task = engine.submit(TaskRequest("test", "il"))
    before = (engine.get_steps(task.id), engine.transitions(task.id))
    with pytest.raises(InvalidTransitionError):
        engine.store.apply(
            [
                StepChange(task.id, "x", "pending", "enqueued"),
                StepChange(task.id, "y", "pending", "complete"),
            ],
            0.0,
        )
    assert (engine.get_steps(task.id), engine.transitions(task.id)) == before


def test_cancel_retry_and_resolve() -> None:
    def run(ctx: StepContext) -> Any:
        if ctx.step == "charge" and ctx.context.get("fail", True):
            raise PermanentError("card declined")
        return ctx.dependencies

    shape = {"validate": [], "charge": ["validate"], "ship": ["charge"]}
    engine = make_engine([workflow("order", steps_of(shape))], {"t.echo": run})
    rec = Recorder()
    engine.subscribe("*", rec)

    failed = engine.run(TaskRequest("test", "order"))
    assert failed.state == TaskState.ERROR
    # resolving the failed step lets its dependent run, with the supplied results
    engine.resolve(failed.id, "charge", results={"charged": "by hand"})
    done = engine.run_task(failed.id)
    steps = {s.name: s for s in engine.get_steps(done.id)}
    assert done.state == TaskState.COMPLETE
    assert steps["charge"].state == StepState.RESOLVED_MANUALLY
    assert steps["ship"].results == {"charge": {"charged": "by hand"}}
    check_task_history(engine, done.id)

    second = engine.run(TaskRequest("test", "order", context={"n": 2}))
    retried = engine.retry(second.id)
    assert retried.state == TaskState.PENDING
    step = {s.name: s for s in engine.get_steps(second.id)}["charge"]
    assert step.state == StepState.ENQUEUED and step.max_attempts == step.attempts + 3
    again = engine.run_task(second.id)
    assert again.state == TaskState.ERROR  # still declined (permanently), but it really ran again
    assert {s.name: s for s in engine.get_steps(second.id)}["charge"].attempts == 2
    engine.resolve(second.id)
    assert engine.get_task(second.id).state == TaskState.RESOLVED_MANUALLY
    check_task_history(engine, second.id)

    third = engine.submit(TaskRequest("test", "order", context={"n": 3}))
    cancelled = engine.cancel(third.id)
    assert cancelled.state == TaskState.CANCELLED
    assert {s.state for s in engine.get_steps(third.id)} == {StepState.CANCELLED}
    with pytest.raises(InvalidTransitionError):
        engine.cancel(third.id)
    check_task_history(engine, third.id)

    engine.flush_events()
    names = rec.names()
    for expected in (
        "task.created",
        "task.failed",
        "step.resolved",
        "task.retried",
        "task.resolved",
        "task.cancelled",
        "step.cancelled",
        "task.completed",
    ):
        assert expected in names


def test_manual_change_racing_a_stale_read_is_refused() -> None:
    engine = make_engine([workflow("race", steps_of({"x": []}))], {"t.echo": echo})
    task = engine.submit(TaskRequest("test", "race"))
    engine.cancel(task.id)
    with pytest.raises((StaleStateError, InvalidTransitionError)):
        engine.retry(task.id)


def test_events_follow_the_catalogue_and_per_step_order() -> None:
    import tomllib

    from tasker_core import SPEC_EVENTS_TOML

    catalogue = tomllib.loads(SPEC_EVENTS_TOML)
    engine = make_engine([workflow("ev", steps_of(SHAPES["diamond"]))], {"t.echo": echo})
    rec = Recorder()
    engine.subscribe("*", rec)
    task = engine.run(TaskRequest("test", "ev"))
    engine.flush_events()
    common = set(catalogue["common"]["fields"])
    for event in rec.events:
        spec = catalogue["events"][event.name]
        assert set(event.to_dict()) == common | set(spec["fields"]), event.name
        assert event.task_id == task.id
    for step in SHAPES["diamond"]:
        assert rec.names(step) == ["step.enqueued", "step.started", "step.completed"]
    assert rec.names()[0] == "task.created" and rec.names()[-1] == "task.completed"


def test_task_event_is_make_for_a_task_with_its_data_dict_kept() -> None:
    from tasker_core import EventBus, Task

    bus = EventBus([], buffer_size=10, batch_size=10, flush_interval=1.0)
    task = Task("t1", "ns", "wf", "2.0.0", "in_progress", {}, 1.0, 1.0)
    data = {"step": "a", "attempt": 2}
    event = bus.task_event(task, "step.started", 5.0, data)
    made = bus.make(
        "step.started",
        task_id="t1",
        namespace="ns",
        workflow="wf",
        version="2.0.0",
        time=5.0,
        step="a",
        attempt=2,
    )
    assert attrs.evolve(event, id=made.id) == made
    assert event.id != made.id  # each event its own id
    assert event.data is data  # the caller's new dict, not a copy
    assert bus.task_event(task, "task.started", 6.0).data == {}


def test_a_failing_or_blocking_sink_never_breaks_or_blocks_a_run() -> None:
    gate = threading.Event()

    class Broken:
        name = "broken"

        def publish(self, events: Any) -> None:
            raise RuntimeError("sink down")

        def close(self) -> None:
            pass

    class Stuck:
        name = "stuck"

        def publish(self, events: Any) -> None:
            gate.wait(30)

        def close(self) -> None:
            pass

    from tasker_core.events import EventBus

    engine = make_engine([workflow("fan", steps_of(SHAPES["fan"]))], {"t.echo": echo})
    engine.bus = engine.coordinator.bus = EventBus(
        [Broken(), Stuck()], buffer_size=10, batch_size=4, flush_interval=0.01
    )
    t0 = time.monotonic()
    task = engine.run(TaskRequest("test", "fan"), timeout=20)
    assert task.state == TaskState.COMPLETE
    assert time.monotonic() - t0 < 15
    # run() does not wait for sinks: give the broken sink's thread time to meet a batch.
    deadline = time.monotonic() + 10
    while engine.event_stats()["broken"].failures == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = engine.event_stats()
    assert stats["broken"].failures >= 1
    assert stats["stuck"].dropped > 0
    assert engine.bus.buffered() <= 20
    gate.set()
    engine.close()


def test_an_inline_sink_is_called_on_the_emitting_thread_and_a_raise_is_counted() -> None:
    from tasker_core.events import EventBus

    class Inline:
        inline = True

        def __init__(self, name: str, fail: bool) -> None:
            self.name, self.fail = name, fail
            self.threads: set[str] = set()
            self.names: list[str] = []
            self.closed = False

        def publish(self, events: Any) -> None:
            self.threads.add(threading.current_thread().name)
            if self.fail:
                raise RuntimeError("sink down")
            self.names += [event.name for event in events]

        def close(self) -> None:
            self.closed = True

    good, broken = Inline("good", fail=False), Inline("broken", fail=True)
    recorded: list[str] = []
    engine = make_engine([workflow("fan", steps_of(SHAPES["fan"]))], {"t.echo": echo})
    engine.bus = engine.coordinator.bus = EventBus(
        [good, broken], buffer_size=1000, batch_size=4, flush_interval=0.01
    )
    engine.bus.subscribe("*", lambda event: recorded.append(event.name))
    task = engine.run(TaskRequest("test", "fan"), timeout=20)
    assert task.state == TaskState.COMPLETE
    assert engine.bus.flush(timeout=10)
    # Nothing waits in a buffer for an inline sink, and no delivery thread of its own calls it.
    assert not any(
        t.name.startswith(("tasker-sink-good", "tasker-sink-broken")) for t in threading.enumerate()
    )
    assert good.threads and not any(name.startswith("tasker-sink-") for name in good.threads)
    assert good.names == recorded  # every event, in order
    stats = engine.event_stats()
    assert stats["good"].delivered == len(recorded) and stats["good"].failures == 0
    assert stats["broken"].failures >= 1 and stats["broken"].delivered == 0
    engine.close()
    assert good.closed and broken.closed


def test_lease_of_a_dead_worker_is_reclaimed_and_the_attempt_counted() -> None:
    from tasker_core.builtin.memory_store import MemoryStore

    store = MemoryStore()
    calls: list[int] = []

    def run(ctx: StepContext) -> int:
        calls.append(ctx.attempt)
        return ctx.attempt

    templates = [workflow("lease", steps_of({"a": [], "b": ["a"]}, retry={"max_attempts": 3}))]
    first = make_engine(templates, {"t.echo": run}, store=store)
    task = first.submit(TaskRequest("test", "lease"))
    # simulate a worker that claimed `a` and died: pid 999999 on this host does not exist
    import socket

    dead = f"{socket.gethostname()}:999999:deadbeef"
    store.apply(
        [
            StepChange(task.id, "a", "pending", "enqueued"),
            StepChange(
                task.id,
                "a",
                "enqueued",
                "in_progress",
                lease_owner=dead,
                lease_expires_at=first.clock.now() + 3600,
            ),
        ],
        first.clock.now(),
    )
    second = make_engine(templates, {"t.echo": run}, store=store)
    [done] = second.resume()
    assert done.state == TaskState.COMPLETE
    a = {s.name: s for s in second.get_steps(task.id)}["a"]
    assert a.attempts == 2 and a.results == 2 and calls == [2, 1]
    lost = [t for t in second.transitions(task.id) if t.step == "a" and t.to_state == "error"]
    assert lost and lost[0].reason == "lease lost"
    check_task_history(second, task.id)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    fails=st.lists(st.integers(0, 4), min_size=1, max_size=6),
    max_attempts=st.integers(1, 4),
    base=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_retry_budget_and_schedule_hold_for_any_failure_pattern(
    fails: list[int], max_attempts: int, base: float
) -> None:
    """Step i fails its first fails[i] attempts: it completes iff fails[i] < max_attempts, after
    exactly min(fails[i] + 1, max_attempts) attempts, each retry base*2**(n-1) after failure n."""
    clock = ManualClock()
    starts: dict[str, list[float]] = {}
    lock = threading.Lock()
    names = [f"s{i}" for i in range(len(fails))]
    budget = dict(zip(names, fails, strict=True))

    def run(ctx: StepContext) -> int:
        with lock:
            starts.setdefault(ctx.step, []).append(clock.now())
        if ctx.attempt <= budget[ctx.step]:
            raise RuntimeError(f"planned failure {ctx.attempt}")
        return ctx.attempt

    retry = {"max_attempts": max_attempts, "backoff": {"base": base, "max": "1h"}}
    engine = make_engine(
        [workflow("budget", steps_of({n: [] for n in names}, handler="t.run", retry=retry))],
        {"t.run": run},
        clock=clock,
    )
    task = engine.run(TaskRequest("test", "budget"))
    steps = {s.name: s for s in engine.get_steps(task.id)}
    for name, n_fail in budget.items():
        step = steps[name]
        assert step.attempts == min(n_fail + 1, max_attempts)
        assert step.state == (StepState.COMPLETE if n_fail < max_attempts else StepState.ERROR)
        gaps = [b - a for a, b in zip(starts[name], starts[name][1:], strict=False)]
        # a retry never comes early; with other steps sleeping on the same clock it may come late
        for n, gap in enumerate(gaps, start=1):
            assert gap >= base * 2 ** (n - 1) - 1e-9
    expected = TaskState.COMPLETE if all(f < max_attempts for f in fails) else TaskState.ERROR
    assert task.state == expected
    check_task_history(engine, task.id)
    engine.close()


def test_an_expired_lease_is_reclaimed_even_when_its_owner_is_unknown() -> None:
    from tasker_core.builtin.memory_store import MemoryStore

    store = MemoryStore()
    clock = ManualClock()
    templates = [workflow("exp", steps_of({"a": []}))]
    first = make_engine(templates, {"t.echo": echo}, store=store, clock=clock)
    task = first.submit(TaskRequest("test", "exp"))
    other_host = "some-other-host:1234:abcd"
    store.apply(
        [
            StepChange(task.id, "a", "pending", "enqueued"),
            StepChange(
                task.id,
                "a",
                "enqueued",
                "in_progress",
                lease_owner=other_host,
                lease_expires_at=clock.now() + 30,
            ),
        ],
        clock.now(),
    )
    clock.advance(31)
    second = make_engine(templates, {"t.echo": echo}, store=store, clock=clock)
    [done] = second.resume()
    assert done.state == TaskState.COMPLETE
    assert second.get_steps(task.id)[0].attempts == 2


def test_a_nan_result_is_a_step_error_not_a_broken_tick() -> None:
    engine = make_engine(
        [workflow("nan", steps_of({"x": [], "y": []}, handler="t.nan"))],
        {"t.nan": lambda ctx: float("nan") if ctx.step == "x" else 1.5},
    )
    task = engine.run(TaskRequest("test", "nan"))
    steps = {s.name: s for s in engine.get_steps(task.id)}
    assert steps["x"].state == StepState.ERROR and steps["y"].results == 1.5
    assert steps["x"].error is not None and "NaN" in steps["x"].error.message


@pytest.mark.parametrize(
    "retry_after, backoff", [(0.0, "1s"), (None, "0s")], ids=["retry_after=0", "base=0s"]
)
def test_an_immediate_retry_runs_again(retry_after: float | None, backoff: str) -> None:
    """A retry due at once is enqueued in the tick that records the failure (regression: the
    queue still held the failed attempt's claim and swallowed the new item, hanging the run)."""

    def flaky(ctx: StepContext) -> int:
        if ctx.attempt < 3:
            raise RetryableError("not yet", retry_after=retry_after)
        return ctx.attempt

    retry = {"max_attempts": 5, "backoff": {"base": backoff, "max": "1s"}}
    engine = make_engine(
        [workflow("now", steps_of({"a": []}, handler="t.flaky", retry=retry))], {"t.flaky": flaky}
    )
    task = engine.run(TaskRequest("test", "now"), timeout=30)
    assert task.state == TaskState.COMPLETE
    assert engine.get_steps(task.id)[0].attempts == 3


def test_background_loop_runs_tasks_submitted_from_other_threads() -> None:
    engine = make_engine(
        [workflow("bg", steps_of(SHAPES["diamond"]))], {"t.echo": echo}, clock=SystemClock()
    )
    engine.start()
    try:
        tasks = [
            engine.submit_background(TaskRequest("test", "bg", context={"n": i})) for i in range(5)
        ]
        for task in tasks:
            assert engine.coordinator.wait_finished(task.id, timeout=30)
        assert {engine.get_task(t.id).state for t in tasks} == {TaskState.COMPLETE}
        done = engine.run(TaskRequest("test", "bg", context={"n": 99}), timeout=30)
        assert done.state == TaskState.COMPLETE  # run() waits on the background loop
    finally:
        engine.stop()
    for task in tasks:
        check_task_history(engine, task.id)
    engine.close()
