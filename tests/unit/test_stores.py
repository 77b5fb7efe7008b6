"""The Store contract, held against both builtin stores (memory and a SQLite file).

Every test runs once per store; the rule-based machine at the end drives each store and a small
independent model (written from the contract and spec/states.toml, not from the stores' code)
through random legal and illegal batches and compares them after every step.
"""

from __future__ import annotations

import copy
import os
import threading
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from tasker_core.builtin import memory_store
from tasker_core.builtin.memory_store import MemoryStore, make_memory_store
from tasker_core.builtin.sqlite_store import SQLiteStore, make_sqlite_store
from tasker_core.config import Config
from tasker_core.errors import ConfigError, InvalidTransitionError, TaskNotFoundError
from tasker_core.models import Step, StepChange, StepError, Task, TaskChange
from tasker_core.protocols import Store

ROOT = Path(__file__).resolve().parents[2]
SPEC = tomllib.loads((ROOT / "spec" / "states.toml").read_text())
STEP_STATES: list[str] = SPEC["step"]["states"]
TASK_STATES: list[str] = SPEC["task"]["states"]
STEP_TABLE = {(f, t["to"]): t["event"] for t in SPEC["step"]["transitions"] for f in t["from"]}
TASK_TABLE = {(f, t["to"]): t["event"] for t in SPEC["task"]["transitions"] for f in t["from"]}

StoreFactory = Callable[[], Store]


def _sqlite_factory(tmp_path: Path) -> StoreFactory:
    counter = iter(range(1_000_000))
    return lambda: SQLiteStore(f"sqlite:///{tmp_path / f'store{next(counter)}.db'}")


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Builds fresh stores of one kind; closes them after the test."""
    made: list[Store] = []
    base: StoreFactory = (
        (lambda: MemoryStore()) if request.param == "memory" else _sqlite_factory(tmp_path)
    )

    def factory() -> Store:
        store = base()
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> Store:
    return make_store()


def new_task(
    task_id: str = "t1",
    steps: int = 3,
    key: str | None = None,
    created_at: float = 100.0,
    state: str = "pending",
) -> tuple[Task, list[Step]]:
    task = Task(task_id, "ns", "wf", "1.0.0", state, {"order": 7}, created_at, created_at, key)
    step_list = [
        Step(task_id, i, f"s{i}", "ns.handler", "pending", 3, True, updated_at=created_at)
        for i in range(steps)
    ]
    return task, step_list


def step_of(store: Store, task_id: str, name: str) -> Step:
    return next(s for s in store.get_steps(task_id) if s.name == name)


def snapshot(store: Store, task_id: str) -> tuple[Any, ...]:
    return (store.get_task(task_id), store.get_steps(task_id), store.get_transitions(task_id))


def start(task_id: str, step: str, owner: str = "w1", expires: float = 200.0) -> list[StepChange]:
    return [
        StepChange(task_id, step, "pending", "enqueued"),
        StepChange(
            task_id, step, "enqueued", "in_progress", lease_owner=owner, lease_expires_at=expires
        ),
    ]


# -- creation and idempotency -------------------------------------------------------------------


def test_create_then_read_back(store: Store) -> None:
    task, steps = new_task(steps=4)
    created, is_new = store.create_task(task, list(reversed(steps)))
    assert is_new
    assert created == task
    assert store.get_task("t1") == task
    assert store.get_steps("t1") == steps
    assert store.get_transitions("t1") == []


def test_missing_task_is_task_not_found(store: Store) -> None:
    with pytest.raises(TaskNotFoundError, match="nope"):
        store.get_task("nope")
    with pytest.raises(TaskNotFoundError):
        store.get_steps("nope")
    with pytest.raises(TaskNotFoundError):
        store.get_transitions("nope")
    with pytest.raises(TaskNotFoundError):
        store.heartbeat("nope", ["s0"], "w1", 1.0)


def test_idempotency_key_returns_the_existing_task(store: Store) -> None:
    first, _ = new_task("t1", key="order-7")
    second, second_steps = new_task("t2", steps=5, key="order-7")
    store.create_task(first, new_task("t1")[1])
    found, is_new = store.create_task(second, second_steps)
    assert not is_new
    assert found == first
    with pytest.raises(TaskNotFoundError):
        store.get_task("t2")
    assert len(store.get_steps("t1")) == 3


def test_tasks_without_key_are_independent(store: Store) -> None:
    for tid in ("a", "b"):
        assert store.create_task(*new_task(tid))[1]
    assert {t.id for t in store.list_tasks()} == {"a", "b"}


def test_racing_threads_create_one_task_per_key(store: Store) -> None:
    barrier = threading.Barrier(6)
    results: list[tuple[Task, bool]] = []
    errors: list[BaseException] = []

    def submit(i: int) -> None:
        try:
            barrier.wait()
            results.append(store.create_task(*new_task(f"race{i}", key="same")))
        except BaseException as exc:  # collected and re-raised by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(is_new for _, is_new in results) == 1
    assert len({task.id for task, _ in results}) == 1
    assert len(store.list_tasks()) == 1


def test_duplicate_task_id_or_step_name_is_rejected(store: Store) -> None:
    store.create_task(*new_task("t1"))
    with pytest.raises(ValueError, match="already exists"):
        store.create_task(*new_task("t1"))
    task, steps = new_task("t2")
    with pytest.raises(ValueError, match="duplicate step name 's0'"):
        store.create_task(task, [*steps, attrs.evolve(steps[0], index=9)])
    with pytest.raises(TaskNotFoundError):
        store.get_task("t2")


def test_stored_payloads_are_copies(store: Store) -> None:
    task, steps = new_task()
    store.create_task(task, steps)
    task.context["order"] = 99
    results = {"items": [1, 2]}
    store.apply(start("t1", "s0"), now=1.0)
    store.apply([StepChange("t1", "s0", "in_progress", "complete", results=results)], now=2.0)
    results["items"].append(3)
    assert store.get_task("t1").context == {"order": 7}
    assert step_of(store, "t1", "s0").results == {"items": [1, 2]}


# -- step effects per target state --------------------------------------------------------------


def test_enqueue_changes_only_state_and_updated_at(store: Store) -> None:
    store.create_task(*new_task())
    before = step_of(store, "t1", "s0")
    assert store.apply([StepChange("t1", "s0", "pending", "enqueued")], now=5.0) == [True]
    assert step_of(store, "t1", "s0") == attrs.evolve(before, state="enqueued", updated_at=5.0)


def test_start_counts_an_attempt_and_takes_the_lease(store: Store) -> None:
    store.create_task(*new_task())
    assert store.apply(start("t1", "s0", owner="w9", expires=50.0), now=6.0) == [True, True]
    step = step_of(store, "t1", "s0")
    assert (step.state, step.attempts, step.lease_owner, step.lease_expires_at) == (
        "in_progress",
        1,
        "w9",
        50.0,
    )
    assert step.updated_at == 6.0


def test_complete_stores_results_and_clears_lease_and_error(store: Store) -> None:
    store.create_task(*new_task())
    boom = StepError("Boom", "first try failed")
    store.apply(start("t1", "s0"), now=1.0)
    store.apply(
        [StepChange("t1", "s0", "in_progress", "error", error=boom, next_retry_at=9.0)], now=2.0
    )
    store.apply(
        [
            StepChange("t1", "s0", "error", "enqueued"),
            StepChange("t1", "s0", "enqueued", "in_progress", lease_owner="w2", lease_expires_at=8),
            StepChange("t1", "s0", "in_progress", "complete", results={"n": [1, "x", None]}),
        ],
        now=3.0,
    )
    step = step_of(store, "t1", "s0")
    assert step.state == "complete"
    assert step.attempts == 2
    assert step.results == {"n": [1, "x", None]}
    assert step.error is None
    assert (step.lease_owner, step.lease_expires_at, step.next_retry_at) == (None, None, None)


def test_error_stores_error_and_retry_time_and_clears_lease(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    err = StepError("TimeoutError", "took too long", retryable=False)
    applied = store.apply(
        [StepChange("t1", "s0", "in_progress", "error", error=err, next_retry_at=None)], now=2.0
    )
    assert applied == [True]
    step = step_of(store, "t1", "s0")
    assert (step.state, step.error, step.next_retry_at, step.lease_owner) == (
        "error",
        err,
        None,
        None,
    )
    store.apply([StepChange("t1", "s0", "error", "enqueued")], now=3.0)
    store.apply(
        [StepChange("t1", "s0", "enqueued", "in_progress", lease_owner="w", lease_expires_at=9)],
        now=4.0,
    )
    store.apply(
        [StepChange("t1", "s0", "in_progress", "error", error=err, next_retry_at=44.5)], now=5.0
    )
    assert step_of(store, "t1", "s0").next_retry_at == 44.5


def test_starting_again_clears_next_retry_at(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    err = StepError("E", "m")
    store.apply(
        [StepChange("t1", "s0", "in_progress", "error", error=err, next_retry_at=7.0)], now=2.0
    )
    store.apply(
        [
            StepChange("t1", "s0", "error", "enqueued"),
            StepChange("t1", "s0", "enqueued", "in_progress", lease_owner="w", lease_expires_at=9),
        ],
        now=8.0,
    )
    step = step_of(store, "t1", "s0")
    assert step.next_retry_at is None
    assert step.error == err  # kept until the attempt completes
    assert step.attempts == 2


@pytest.mark.parametrize("from_state", ["pending", "error"])
def test_resolved_manually_stores_results(store: Store, from_state: str) -> None:
    store.create_task(*new_task())
    if from_state == "error":
        store.apply(start("t1", "s0"), now=1.0)
        store.apply(
            [StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m"))], now=2.0
        )
    change = StepChange("t1", "s0", from_state, "resolved_manually", results={"skipped": True})
    assert store.apply([change], now=3.0) == [True]
    step = step_of(store, "t1", "s0")
    assert (step.state, step.results, step.lease_owner) == (
        "resolved_manually",
        {"skipped": True},
        None,
    )


@pytest.mark.parametrize("from_state", ["pending", "enqueued", "error"])
def test_cancel_clears_the_lease(store: Store, from_state: str) -> None:
    store.create_task(*new_task())
    path = {
        "pending": [],
        "enqueued": [StepChange("t1", "s0", "pending", "enqueued")],
        "error": [
            *start("t1", "s0"),
            StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m")),
        ],
    }[from_state]
    if path:
        store.apply(path, now=1.0)
    assert store.apply([StepChange("t1", "s0", from_state, "cancelled")], now=2.0) == [True]
    step = step_of(store, "t1", "s0")
    assert (step.state, step.lease_owner, step.lease_expires_at) == ("cancelled", None, None)


def test_max_attempts_replaces_the_budget(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    store.apply(
        [StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m"))], now=2.0
    )
    store.apply([StepChange("t1", "s0", "error", "enqueued", max_attempts=7)], now=3.0)
    assert step_of(store, "t1", "s0").max_attempts == 7


# -- task effects -------------------------------------------------------------------------------


def test_task_timestamps_follow_the_lifecycle(store: Store) -> None:
    store.create_task(*new_task())
    store.apply([TaskChange("t1", "pending", "in_progress")], now=10.0)
    assert store.get_task("t1").started_at == 10.0
    store.apply([TaskChange("t1", "in_progress", "pending", wake_at=30.0)], now=11.0)
    task = store.get_task("t1")
    assert (task.state, task.wake_at, task.updated_at) == ("pending", 30.0, 11.0)
    store.apply([TaskChange("t1", "pending", "in_progress")], now=30.0)
    task = store.get_task("t1")
    assert (task.started_at, task.wake_at) == (10.0, None)  # only the first start counts
    store.apply([TaskChange("t1", "in_progress", "error")], now=40.0)
    assert store.get_task("t1").completed_at == 40.0
    store.apply([TaskChange("t1", "error", "pending", reason="operator retry")], now=50.0)
    task = store.get_task("t1")
    assert (task.state, task.completed_at, task.wake_at) == ("pending", None, None)
    store.apply(
        [TaskChange("t1", "pending", "in_progress"), TaskChange("t1", "in_progress", "complete")],
        now=60.0,
    )
    task = store.get_task("t1")
    assert (task.state, task.completed_at, task.started_at) == ("complete", 60.0, 10.0)


@pytest.mark.parametrize(
    ("path", "final"),
    [
        ([("pending", "cancelled")], "cancelled"),
        (
            [("pending", "in_progress"), ("in_progress", "error"), ("error", "resolved_manually")],
            "resolved_manually",
        ),
    ],
)
def test_terminal_task_states_set_completed_at(
    store: Store, path: list[tuple[str, str]], final: str
) -> None:
    store.create_task(*new_task())
    store.apply([TaskChange("t1", f, t) for f, t in path], now=5.0)
    task = store.get_task("t1")
    assert (task.state, task.completed_at) == (final, 5.0)


# -- compare-and-set and validation -------------------------------------------------------------


def test_wrong_from_state_loses_and_changes_nothing(store: Store) -> None:
    store.create_task(*new_task())
    before = snapshot(store, "t1")
    assert store.apply([StepChange("t1", "s0", "enqueued", "in_progress")], now=1.0) == [False]
    assert store.apply([TaskChange("t1", "in_progress", "complete")], now=1.0) == [False]
    assert snapshot(store, "t1") == before


def test_wrong_expect_attempt_loses(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    before = snapshot(store, "t1")
    stale = StepChange("t1", "s0", "in_progress", "complete", results=1, expect_attempt=2)
    assert store.apply([stale], now=2.0) == [False]
    assert snapshot(store, "t1") == before
    fresh = attrs.evolve(stale, expect_attempt=1)
    assert store.apply([fresh], now=3.0) == [True]


def test_losing_changes_do_not_stop_the_rest_of_the_batch(store: Store) -> None:
    store.create_task(*new_task())
    batch = [
        StepChange("t1", "s0", "pending", "enqueued"),
        StepChange("t1", "s1", "enqueued", "in_progress"),  # loses: s1 is pending
        StepChange("t1", "s0", "pending", "enqueued"),  # loses: s0 moved earlier in the batch
        StepChange("t1", "s0", "enqueued", "in_progress", lease_owner="w", lease_expires_at=5.0),
        StepChange("t1", "s2", "pending", "enqueued"),
    ]
    assert store.apply(batch, now=1.0) == [True, False, False, True, True]
    assert [s.state for s in store.get_steps("t1")] == ["in_progress", "pending", "enqueued"]
    assert len(store.get_transitions("t1")) == 3


def test_atomic_batch_is_all_or_nothing(store: Store) -> None:
    store.create_task(*new_task())
    before = snapshot(store, "t1")
    batch: list[StepChange | TaskChange] = [
        TaskChange("t1", "pending", "in_progress"),
        StepChange("t1", "s0", "pending", "enqueued"),
        StepChange("t1", "s1", "enqueued", "in_progress"),  # loses: s1 is pending
    ]
    assert store.apply(batch, now=1.0, atomic=True) == [False, False, False]
    assert snapshot(store, "t1") == before
    assert store.apply(batch[:2], now=2.0, atomic=True) == [True, True]
    assert store.get_task("t1").state == "in_progress"
    assert [t.to_state for t in store.get_transitions("t1")] == ["in_progress", "enqueued"]


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (StepChange("t1", "s1", "pending", "complete"), InvalidTransitionError),
        (TaskChange("t1", "complete", "in_progress"), InvalidTransitionError),
        (StepChange("t1", "nope", "pending", "enqueued"), KeyError),
        (StepChange("t9", "s0", "pending", "enqueued"), TaskNotFoundError),
        (TaskChange("t9", "pending", "in_progress"), TaskNotFoundError),
        (StepChange("t1", "s1", "pending", "resolved_manually", results={1, 2}), TypeError),
        (StepChange("t1", "s1", "pending", "enqueued", metadata={"x": object()}), TypeError),
    ],
)
def test_a_bad_change_rejects_the_whole_batch(
    store: Store, bad: StepChange | TaskChange, error: type[Exception]
) -> None:
    store.create_task(*new_task())
    before = snapshot(store, "t1")
    good: list[StepChange | TaskChange] = [
        StepChange("t1", "s0", "pending", "enqueued"),
        TaskChange("t1", "pending", "in_progress"),
    ]
    with pytest.raises(error):
        store.apply([*good, bad, StepChange("t1", "s2", "pending", "enqueued")], now=1.0)
    assert snapshot(store, "t1") == before


def test_illegal_transition_error_names_the_states(store: Store) -> None:
    store.create_task(*new_task())
    with pytest.raises(InvalidTransitionError) as info:
        store.apply([StepChange("t1", "s0", "complete", "pending")], now=1.0)
    assert (info.value.from_state, info.value.to_state) == ("complete", "pending")


def test_non_json_results_error_names_the_path(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    bad = StepChange("t1", "s0", "in_progress", "complete", results={"items": [1, 2, {3}]})
    with pytest.raises(TypeError, match=r"results\['items'\]\[2\]: set is not JSON"):
        store.apply([bad], now=2.0)


def test_empty_batch_is_a_no_op(store: Store) -> None:
    assert store.apply([], now=1.0) == []


def test_racing_workers_claim_each_step_once(store: Store) -> None:
    store.create_task(*new_task(steps=40))
    names = [f"s{i}" for i in range(40)]
    store.apply([StepChange("t1", n, "pending", "enqueued") for n in names], now=1.0)
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(owner: str) -> None:
        barrier.wait()
        for at in range(0, 40, 8):
            batch = [
                StepChange("t1", n, "enqueued", "in_progress", lease_owner=owner)
                for n in names[at : at + 8]
            ]
            won = store.apply(batch, now=2.0)
            mine = [c.step for c, ok in zip(batch, won, strict=True) if ok]
            claimed[owner] = claimed.get(owner, []) + mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = sorted(n for got in claimed.values() for n in got)
    assert winners == sorted(names)
    owners = {s.name: s.lease_owner or "" for s in store.get_steps("t1")}
    assert all(s in claimed[owners[s]] for s in names)
    assert all(s.attempts == 1 for s in store.get_steps("t1"))


# -- transitions --------------------------------------------------------------------------------


def test_transitions_record_every_applied_change(store: Store) -> None:
    store.create_task(*new_task())
    store.apply(
        [
            TaskChange("t1", "pending", "in_progress", reason="tick", metadata={"by": "coord"}),
            StepChange("t1", "s0", "pending", "enqueued", reason="ready"),
        ],
        now=3.5,
    )
    store.apply([StepChange("t1", "s0", "enqueued", "cancelled")], now=4.5)
    log = store.get_transitions("t1")
    summary = [(t.step, t.from_state, t.to_state, t.event, t.reason, t.created_at) for t in log]
    assert summary == [
        (None, "pending", "in_progress", "start", "tick", 3.5),
        ("s0", "pending", "enqueued", "enqueue", "ready", 3.5),
        ("s0", "enqueued", "cancelled", "cancel", "", 4.5),
    ]
    assert log[0].metadata == {"by": "coord"}
    assert [t.most_recent for t in log] == [True, False, True]


def test_one_most_recent_per_record_and_increasing_sort_keys(store: Store) -> None:
    store.create_task(*new_task("a"))
    store.create_task(*new_task("b"))
    for now, task_id in enumerate(["a", "b", "a"]):
        store.apply(
            [
                StepChange(task_id, "s0", "pending", "enqueued"),
                StepChange(task_id, "s0", "enqueued", "cancelled"),
                TaskChange(task_id, "pending", "in_progress"),
            ]
            if now < 2
            else [TaskChange(task_id, "in_progress", "pending", wake_at=9.0)],
            now=float(now),
        )
    for task_id in ("a", "b"):
        log = store.get_transitions(task_id)
        keys = [t.sort_key for t in log]
        assert keys == sorted(keys) and len(set(keys)) == len(keys)
        for record in {t.step for t in log}:
            mine = [t for t in log if t.step == record]
            assert [t.most_recent for t in mine] == [False] * (len(mine) - 1) + [True]


# -- leases -------------------------------------------------------------------------------------


def test_heartbeat_extends_only_leases_the_owner_holds(store: Store) -> None:
    store.create_task(*new_task(steps=4))
    store.apply([*start("t1", "s0", "w1", 10.0), *start("t1", "s1", "w2", 10.0)], now=1.0)
    store.apply([StepChange("t1", "s2", "pending", "enqueued")], now=1.0)
    held = store.heartbeat("t1", ["s0", "s1", "s2", "ghost"], "w1", 99.0)
    assert held == [True, False, False, False]
    leases = {s.name: s.lease_expires_at for s in store.get_steps("t1")}
    assert leases == {"s0": 99.0, "s1": 10.0, "s2": None, "s3": None}


def test_expired_leases_oldest_first_with_limit(store: Store) -> None:
    store.create_task(*new_task("a", steps=4))
    store.create_task(*new_task("b", steps=2))
    store.apply(
        [
            *start("a", "s0", expires=30.0),
            *start("a", "s1", expires=10.0),
            *start("a", "s2", expires=50.0),
            *start("b", "s1", expires=20.0),
            *start("a", "s3", expires=15.0),
        ],
        now=1.0,
    )
    store.apply([StepChange("a", "s3", "in_progress", "complete")], now=2.0)
    found = store.expired_leases(now=30.0, limit=10)
    assert [(s.task_id, s.name) for s in found] == [("a", "s1"), ("b", "s1")]  # 30.0 not before
    assert [s.name for s in store.expired_leases(now=100.0, limit=2)] == ["s1", "s1"]
    assert store.expired_leases(now=10.0, limit=10) == []
    assert found[0] == step_of(store, "a", "s1")


# -- listing ------------------------------------------------------------------------------------


def test_list_tasks_newest_first_filter_and_paging(store: Store) -> None:
    for task_id, created in [("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 3.0)]:
        store.create_task(*new_task(task_id, steps=1, created_at=created))
    store.apply([TaskChange("c", "pending", "in_progress")], now=5.0)
    assert [t.id for t in store.list_tasks()] == ["d", "b", "c", "a"]
    assert [t.id for t in store.list_tasks(states=["pending"])] == ["d", "b", "a"]
    assert [t.id for t in store.list_tasks(states={"in_progress", "error"})] == ["c"]
    assert [t.id for t in store.list_tasks(limit=2, offset=1)] == ["b", "c"]
    assert store.list_tasks(states=[]) == []


def test_factories_accept_no_config(tmp_path: Path) -> None:
    memory = make_memory_store("memory://")
    sqlite = make_sqlite_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert isinstance(memory, Store) and memory.scheme == "memory"
        assert isinstance(sqlite, Store) and sqlite.scheme == "sqlite"
    finally:
        memory.close()
        sqlite.close()


def test_memory_factory_reads_its_options() -> None:
    config = Config.from_mapping(
        {"store": {"url": "memory://", "options": {"record_calls": False}}}
    )
    store = make_memory_store("memory://", config)
    store.create_task(*new_task())
    assert store.calls == []
    bad = Config.from_mapping({"store": {"url": "memory://", "options": {"max_calls": "many"}}})
    with pytest.raises(ConfigError, match=r"store\.options\.max_calls"):
        make_memory_store("memory://", bad)


def test_memory_hook_registers_the_memory_scheme() -> None:
    registered: dict[str, Any] = {}
    memory_store.tasker_register_stores(register=lambda scheme, f: registered.update({scheme: f}))
    assert registered == {"memory": make_memory_store}


def test_memory_store_records_calls_and_resets() -> None:
    store = MemoryStore(max_calls=3)
    store.create_task(*new_task())
    store.apply(start("t1", "s0"), now=1.0)
    assert store.calls[:2] == [
        ("create_task", {"task_id": "t1", "steps": 3}),
        ("apply", {"changes": 2, "now": 1.0}),
    ]
    for _ in range(10):
        store.get_task("t1")
    assert 3 <= len(store.calls) <= 6
    store.reset()
    assert store.calls == []
    with pytest.raises(TaskNotFoundError):
        store.get_task("t1")


# -- the rule-based comparison with a model -----------------------------------------------------


@attrs.define
class ModelStep:
    state: str = "pending"
    attempts: int = 0
    max_attempts: int = 3
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    next_retry_at: float | None = None
    results: Any = None
    error: StepError | None = None
    updated_at: float = 0.0


@attrs.define
class ModelTask:
    state: str = "pending"
    started_at: float | None = None
    completed_at: float | None = None
    wake_at: float | None = None
    updated_at: float = 0.0
    steps: dict[str, ModelStep] = attrs.field(factory=dict)
    history: list[tuple[str | None, str, str]] = attrs.field(factory=list)


def model_step_change(step: ModelStep, c: StepChange, now: float) -> None:
    """The contract's effects, written out longhand (see StepChange's docstring)."""
    step.state = c.to_state
    step.updated_at = now
    lease_cleared = c.to_state in ("complete", "error", "resolved_manually", "cancelled")
    if c.to_state == "in_progress":
        step.attempts += 1
        step.lease_owner, step.lease_expires_at = c.lease_owner, c.lease_expires_at
        step.next_retry_at = None
    if c.to_state in ("complete", "resolved_manually"):
        step.results = c.results
    if c.to_state == "complete":
        step.error = None
    if c.to_state == "error":
        step.error, step.next_retry_at = c.error, c.next_retry_at
    if lease_cleared:
        step.lease_owner = step.lease_expires_at = None
    if c.max_attempts is not None:
        step.max_attempts = c.max_attempts


def model_task_change(task: ModelTask, c: TaskChange, now: float) -> None:
    task.state = c.to_state
    task.updated_at = now
    if c.to_state == "in_progress":
        task.wake_at = None
        if task.started_at is None:
            task.started_at = now
    if c.to_state in ("complete", "error", "cancelled", "resolved_manually"):
        task.completed_at = now
    if c.to_state == "pending":
        task.wake_at, task.completed_at = c.wake_at, None


TASK_IDS = ["ta", "tb"]
PREFERENCE = ["enqueued", "in_progress", "complete", "error", "pending", "cancelled"]
PREFERENCE.append("resolved_manually")
STEP_NAMES = ["s0", "s1", "s2"]

step_changes = st.builds(
    StepChange,
    task_id=st.sampled_from(TASK_IDS),
    step=st.sampled_from(STEP_NAMES),
    from_state=st.sampled_from(STEP_STATES),
    to_state=st.sampled_from(STEP_STATES),
    reason=st.sampled_from(["", "why"]),
    metadata=st.sampled_from([{}, {"k": [1, None]}]),
    lease_owner=st.sampled_from([None, "w1", "w2"]),
    lease_expires_at=st.sampled_from([None, 5.0, 50.0]),
    results=st.sampled_from([None, 1, {"r": "x"}]),
    error=st.sampled_from([None, StepError("E", "m", False)]),
    next_retry_at=st.sampled_from([None, 7.5]),
    expect_attempt=st.sampled_from([None, 0, 1, 2]),
    max_attempts=st.sampled_from([None, None, 5]),
)
task_changes = st.builds(
    TaskChange,
    task_id=st.sampled_from(TASK_IDS),
    from_state=st.sampled_from(TASK_STATES),
    to_state=st.sampled_from(TASK_STATES),
    wake_at=st.sampled_from([None, 3.0]),
)


def legal(c: StepChange | TaskChange) -> bool:
    table = STEP_TABLE if isinstance(c, StepChange) else TASK_TABLE
    return (c.from_state, c.to_state) in table


class StoreVersusModel(RuleBasedStateMachine):
    """Random batches against a store and the model; they must agree after every batch."""

    make: StoreFactory

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).make()
        self.model: dict[str, ModelTask] = {}
        self.now = 0.0

    def teardown(self) -> None:
        self.store.close()

    @initialize()
    def create_tasks(self) -> None:
        for task_id in TASK_IDS:
            task, steps = new_task(task_id, steps=len(STEP_NAMES), created_at=self.now)
            self.store.create_task(task, steps)
            self.model[task_id] = ModelTask(
                updated_at=self.now,
                steps={s.name: ModelStep(updated_at=self.now) for s in steps},
            )

    @rule(data=st.data(), size=st.integers(1, 4), atomic=st.booleans())
    def apply_batch(self, data: st.DataObject, size: int, atomic: bool) -> None:
        changes: list[StepChange | TaskChange] = []
        rnd = data.draw(st.randoms(use_true_random=False))  # weighted choices, not index-biased
        for _ in range(size):
            change = data.draw(st.one_of(step_changes, step_changes, task_changes))
            task = self.model[change.task_id]
            if data.draw(st.integers(0, 9)) < 9:
                # Mostly start from the record's current state and pick a legal target, so that
                # long legal histories (retries, leases, re-runs) get explored too.
                current = (
                    task.steps[change.step].state if isinstance(change, StepChange) else task.state
                )
                table = STEP_TABLE if isinstance(change, StepChange) else TASK_TABLE
                # Progress first and ending states weigh less, so that histories grow long.
                targets = [
                    t
                    for t in PREFERENCE
                    if (current, t) in table
                    for _ in range(1 if t in ("cancelled", "resolved_manually") else 4)
                ]
                if targets:
                    to = rnd.choice(targets)
                    change = attrs.evolve(change, from_state=current, to_state=to)
                    if isinstance(change, StepChange) and data.draw(st.booleans()):
                        # A well-behaved worker fences with the attempt it holds.
                        held = task.steps[change.step].attempts
                        change = attrs.evolve(change, expect_attempt=held)
            changes.append(change)
        self.now += 1.0
        if not all(legal(c) for c in changes):
            with pytest.raises(InvalidTransitionError):
                self.store.apply(changes, now=self.now, atomic=atomic)
            return
        if atomic:
            saved = copy.deepcopy(self.model)
        expected: list[bool] = []
        for c in changes:
            task = self.model[c.task_id]
            if isinstance(c, StepChange):
                step = task.steps[c.step]
                ok = step.state == c.from_state and (
                    c.expect_attempt is None or c.expect_attempt == step.attempts
                )
                if ok:
                    model_step_change(step, c, self.now)
            else:
                ok = task.state == c.from_state
                if ok:
                    model_task_change(task, c, self.now)
            if ok:
                task.history.append(
                    (c.step if isinstance(c, StepChange) else None, c.from_state, c.to_state)
                )
            expected.append(ok)
        if atomic and not all(expected):
            self.model = saved
            expected = [False] * len(changes)
        assert self.store.apply(changes, now=self.now, atomic=atomic) == expected

    @invariant()
    def store_matches_model(self) -> None:
        for task_id, mt in self.model.items():
            task = self.store.get_task(task_id)
            assert (task.state, task.started_at, task.completed_at, task.wake_at) == (
                mt.state,
                mt.started_at,
                mt.completed_at,
                mt.wake_at,
            )
            assert task.updated_at == mt.updated_at
            for step in self.store.get_steps(task_id):
                ms = mt.steps[step.name]
                got = (
                    step.state,
                    step.attempts,
                    step.max_attempts,
                    step.lease_owner,
                    step.lease_expires_at,
                    step.next_retry_at,
                    step.results,
                    step.error,
                    step.updated_at,
                )
                assert got == attrs.astuple(ms, recurse=False), step.name
            log = self.store.get_transitions(task_id)
            assert [(t.step, t.from_state, t.to_state) for t in log] == mt.history
            assert [t.sort_key for t in log] == sorted({t.sort_key for t in log})
            for record in {t.step for t in log}:
                flags = [t.most_recent for t in log if t.step == record]
                assert flags == [False] * (len(flags) - 1) + [True]


_CI = os.environ.get("HYPOTHESIS_PROFILE") == "ci"
_MACHINE_SETTINGS = settings(
    max_examples=150 if _CI else 20,
    stateful_step_count=40 if _CI else 20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _machine_test(make: StoreFactory) -> Any:
    machine: type[StoreVersusModel] = type(
        "Machine", (StoreVersusModel,), {"make": staticmethod(make)}
    )
    return _MACHINE_SETTINGS(machine).TestCase


TestMemoryStoreAgainstModel = _machine_test(MemoryStore)
TestSQLiteStoreAgainstModel = _machine_test(lambda: SQLiteStore("sqlite://"))
