"""StoreSuite: the Store contract (tasker_core.protocols.Store) as tests a backend inherits.

Subclass it, override the ``store`` fixture to return an EMPTY store of your backend, and list
what it can do in ``capabilities``::

    class TestMyStore(StoreSuite):
        capabilities = {"atomic_batches", "concurrent_writers", "persistence"}

        @pytest.fixture
        def store(self, tmp_path):
            store = MyStore(tmp_path / "db")
            yield store
            store.close()

        def reopen(self, store):          # only needed when claiming "persistence"
            store.close()
            return MyStore(store.path)

Capabilities: ``atomic_batches`` (``apply(atomic=True)`` is all or nothing), ``concurrent_writers``
(safe under writes from many threads: creates and compare-and-set races), ``persistence``
(``reopen`` gives a store that still holds everything).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis.stateful import run_state_machine_as_test
from tasker_core import (
    InvalidTransitionError,
    Step,
    StepChange,
    StepError,
    Store,
    Task,
    TaskChange,
    TaskNotFoundError,
)

from pytest_tasker.history import assert_legal_history
from pytest_tasker.store_model import make_steps, make_task, start_changes
from pytest_tasker.suites.base import SuiteBase, machine_settings, requires
from pytest_tasker.suites.store_machine import StoreMachine

__all__ = ["StoreSuite"]

Change = StepChange | TaskChange


def _step(store: Store, task_id: str, name: str) -> Step:
    return next(s for s in store.get_steps(task_id) if s.name == name)


def _snapshot(store: Store, task_id: str) -> tuple[Any, ...]:
    return (store.get_task(task_id), store.get_steps(task_id), store.get_transitions(task_id))


def _create(store: Store, task_id: str = "t1", steps: int = 3, **kw: Any) -> Task:
    created_at = kw.get("created_at", 100.0)
    task, is_new = store.create_task(
        make_task(task_id, **kw), make_steps(task_id, steps, created_at=created_at)
    )
    assert is_new, f"create_task({task_id!r}) on an empty store said the task already existed"
    return task


def _history_ok(store: Store, task_id: str) -> None:
    finals: dict[str | None, str] = {None: store.get_task(task_id).state}
    finals.update({s.name: s.state for s in store.get_steps(task_id)})
    assert_legal_history(store.get_transitions(task_id), finals)


class StoreSuite(SuiteBase):
    """Every documented behaviour of a Store, plus a model-based state machine."""

    KNOWN_CAPABILITIES: ClassVar[frozenset[str]] = frozenset(
        {"atomic_batches", "concurrent_writers", "persistence"}
    )

    machine_examples: ClassVar[float] = 0.5
    """Fraction of the profile's max_examples the state machine runs."""
    machine_steps: ClassVar[int] = 30
    """Rules per state-machine example."""

    @pytest.fixture
    def store(self) -> Store:
        """Override: return an empty store of the backend under test (close it after)."""
        pytest.fail(
            f"{type(self).__name__} must override the 'store' fixture to build the store under "
            "test",
            pytrace=False,
        )

    @pytest.fixture
    def store_factory(self, store: Store) -> Callable[[], Store]:
        """Builds the store each state-machine example runs on.

        By default every example shares the ``store`` fixture (each uses task ids of its own, so
        nothing needs emptying). Override to give every example a fresh store when that is
        cheap: failures then shrink without traces of earlier examples.
        """
        return lambda: store

    def reopen(self, store: Store) -> Store:
        """Override when claiming ``persistence``: close ``store``, open it again, return that."""
        pytest.fail(
            f"{type(self).__name__} claims 'persistence' but does not override reopen()",
            pytrace=False,
        )

    # -- the model-based state machine ---------------------------------------------------------

    def test_state_machine_against_model(self, store_factory: Callable[[], Store]) -> None:
        """Random creates, batches, races, heartbeats and lease scans agree with the model."""
        caps = frozenset(self.capabilities)
        run_state_machine_as_test(
            StoreMachine.bound(store_factory, caps),
            settings=machine_settings(self.machine_examples, self.machine_steps),
        )

    # -- protocol shape ------------------------------------------------------------------------

    def test_is_a_store(self, store: Store) -> None:
        assert isinstance(store, Store), "the backend does not implement the Store protocol"
        assert isinstance(store.scheme, str) and store.scheme, "scheme must be a non-empty str"

    # -- create_task and reads -----------------------------------------------------------------

    def test_create_then_read_back(self, store: Store) -> None:
        task = make_task("t1", context={"order": 7, "items": ["a", {"b": None}], "ü": 1.5})
        steps = make_steps("t1", 4)
        created, is_new = store.create_task(task, list(reversed(steps)))
        assert is_new
        assert created == task
        assert store.get_task("t1") == task
        assert store.get_steps("t1") == steps, "get_steps must return steps ordered by index"
        assert store.get_transitions("t1") == []

    def test_missing_task_raises_task_not_found(self, store: Store) -> None:
        with pytest.raises(TaskNotFoundError):
            store.get_task("nope")
        with pytest.raises(TaskNotFoundError):
            store.get_steps("nope")
        with pytest.raises(TaskNotFoundError):
            store.get_transitions("nope")
        with pytest.raises(TaskNotFoundError):
            store.heartbeat("nope", ["s0"], "w1", 1.0)

    def test_idempotency_key_returns_the_existing_task(self, store: Store) -> None:
        first = _create(store, "t1", key="order-7")
        found, is_new = store.create_task(make_task("t2", key="order-7"), make_steps("t2", 5))
        assert not is_new
        assert found == first
        with pytest.raises(TaskNotFoundError):
            store.get_task("t2")
        assert len(store.get_steps("t1")) == 3

    def test_tasks_without_key_are_independent(self, store: Store) -> None:
        for tid in ("a", "b"):
            _create(store, tid)
        assert {t.id for t in store.list_tasks()} == {"a", "b"}

    @requires("concurrent_writers")
    def test_racing_creates_make_one_task_per_key(self, store: Store) -> None:
        barrier = threading.Barrier(6)
        results: list[tuple[Task, bool]] = []
        errors: list[BaseException] = []

        def submit(i: int) -> None:
            try:
                barrier.wait()
                results.append(
                    store.create_task(make_task(f"race{i}", key="same"), make_steps(f"race{i}"))
                )
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == [], f"racing create_task calls raised: {errors!r}"
        assert sum(is_new for _, is_new in results) == 1, "more than one racing create won"
        assert len({task.id for task, _ in results}) == 1
        assert len(store.list_tasks()) == 1

    def test_list_tasks_newest_first_filter_and_paging(self, store: Store) -> None:
        for task_id, created in [("a", 1.0), ("b", 3.0), ("c", 2.0), ("d", 3.0)]:
            _create(store, task_id, steps=1, created_at=created)
        store.apply([TaskChange("c", "pending", "in_progress")], now=5.0)
        assert [t.id for t in store.list_tasks()] == ["d", "b", "c", "a"]
        assert [t.id for t in store.list_tasks(states=["pending"])] == ["d", "b", "a"]
        assert [t.id for t in store.list_tasks(states={"in_progress", "error"})] == ["c"]
        assert [t.id for t in store.list_tasks(limit=2, offset=1)] == ["b", "c"]
        assert store.list_tasks(states=[]) == []

    # -- apply: effects per target state -------------------------------------------------------

    def test_enqueue_changes_only_state_and_updated_at(self, store: Store) -> None:
        _create(store)
        before = _step(store, "t1", "s0")
        assert store.apply([StepChange("t1", "s0", "pending", "enqueued")], now=5.0) == [True]
        assert _step(store, "t1", "s0") == attrs.evolve(before, state="enqueued", updated_at=5.0)

    def test_start_counts_an_attempt_and_takes_the_lease(self, store: Store) -> None:
        _create(store)
        assert store.apply(start_changes("t1", "s0", "w9", 50.0), now=6.0) == [True, True]
        step = _step(store, "t1", "s0")
        got = (step.state, step.attempts, step.lease_owner, step.lease_expires_at, step.updated_at)
        assert got == ("in_progress", 1, "w9", 50.0, 6.0)

    def test_complete_stores_results_and_clears_lease_and_error(self, store: Store) -> None:
        _create(store)
        store.apply(start_changes("t1", "s0"), now=1.0)
        store.apply(
            [
                StepChange(
                    "t1",
                    "s0",
                    "in_progress",
                    "error",
                    error=StepError("Boom", "m"),
                    next_retry_at=9.0,
                )
            ],
            now=2.0,
        )
        results = {"n": [1, "x", None, 2.5, True], "nested": {"ü": "ok"}}
        applied = store.apply(
            [
                StepChange("t1", "s0", "error", "enqueued"),
                StepChange(
                    "t1", "s0", "enqueued", "in_progress", lease_owner="w2", lease_expires_at=8
                ),
                StepChange("t1", "s0", "in_progress", "complete", results=results),
            ],
            now=3.0,
        )
        assert applied == [True, True, True]
        step = _step(store, "t1", "s0")
        assert step.state == "complete"
        assert step.attempts == 2
        assert step.results == results, "the step's results were not stored as given"
        assert step.error is None
        assert (step.lease_owner, step.lease_expires_at, step.next_retry_at) == (None, None, None)
        _history_ok(store, "t1")

    def test_error_stores_error_and_retry_time_and_clears_lease(self, store: Store) -> None:
        _create(store)
        store.apply(start_changes("t1", "s0"), now=1.0)
        err = StepError("TimeoutError", "took too long", retryable=False)
        applied = store.apply(
            [StepChange("t1", "s0", "in_progress", "error", error=err, next_retry_at=44.5)],
            now=2.0,
        )
        assert applied == [True]
        step = _step(store, "t1", "s0")
        assert (step.state, step.error, step.next_retry_at, step.lease_owner) == (
            "error",
            err,
            44.5,
            None,
        )

    def test_starting_again_clears_next_retry_at_and_keeps_the_error(self, store: Store) -> None:
        _create(store)
        store.apply(start_changes("t1", "s0"), now=1.0)
        err = StepError("E", "m")
        store.apply(
            [StepChange("t1", "s0", "in_progress", "error", error=err, next_retry_at=7.0)],
            now=2.0,
        )
        store.apply(
            [
                StepChange("t1", "s0", "error", "enqueued"),
                StepChange(
                    "t1", "s0", "enqueued", "in_progress", lease_owner="w", lease_expires_at=9
                ),
            ],
            now=8.0,
        )
        step = _step(store, "t1", "s0")
        assert (step.next_retry_at, step.error, step.attempts) == (None, err, 2)

    @pytest.mark.parametrize("from_state", ["pending", "error"])
    def test_resolved_manually_stores_results(self, store: Store, from_state: str) -> None:
        _create(store)
        if from_state == "error":
            store.apply(start_changes("t1", "s0"), now=1.0)
            store.apply(
                [StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m"))],
                now=2.0,
            )
        change = StepChange("t1", "s0", from_state, "resolved_manually", results={"skip": True})
        assert store.apply([change], now=3.0) == [True]
        step = _step(store, "t1", "s0")
        assert (step.state, step.results, step.lease_owner) == (
            "resolved_manually",
            {"skip": True},
            None,
        )

    @pytest.mark.parametrize("from_state", ["pending", "enqueued", "error"])
    def test_cancel_clears_the_lease(self, store: Store, from_state: str) -> None:
        _create(store)
        path: dict[str, list[StepChange]] = {
            "pending": [],
            "enqueued": [StepChange("t1", "s0", "pending", "enqueued")],
            "error": [
                *start_changes("t1", "s0"),
                StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m")),
            ],
        }
        if path[from_state]:
            store.apply(path[from_state], now=1.0)
        assert store.apply([StepChange("t1", "s0", from_state, "cancelled")], now=2.0) == [True]
        step = _step(store, "t1", "s0")
        assert (step.state, step.lease_owner, step.lease_expires_at) == ("cancelled", None, None)

    def test_max_attempts_replaces_the_budget(self, store: Store) -> None:
        _create(store)
        store.apply(start_changes("t1", "s0"), now=1.0)
        store.apply(
            [StepChange("t1", "s0", "in_progress", "error", error=StepError("E", "m"))], now=2.0
        )
        store.apply([StepChange("t1", "s0", "error", "enqueued", max_attempts=7)], now=3.0)
        assert _step(store, "t1", "s0").max_attempts == 7

    def test_task_timestamps_follow_the_lifecycle(self, store: Store) -> None:
        _create(store)
        store.apply([TaskChange("t1", "pending", "in_progress")], now=10.0)
        assert store.get_task("t1").started_at == 10.0
        store.apply([TaskChange("t1", "in_progress", "pending", wake_at=30.0)], now=11.0)
        task = store.get_task("t1")
        assert (task.state, task.wake_at, task.updated_at) == ("pending", 30.0, 11.0)
        store.apply([TaskChange("t1", "pending", "in_progress")], now=30.0)
        task = store.get_task("t1")
        assert (task.started_at, task.wake_at) == (10.0, None), "only the first start counts"
        store.apply([TaskChange("t1", "in_progress", "error")], now=40.0)
        assert store.get_task("t1").completed_at == 40.0
        store.apply([TaskChange("t1", "error", "pending", reason="operator retry")], now=50.0)
        task = store.get_task("t1")
        assert (task.state, task.completed_at, task.wake_at) == ("pending", None, None)
        store.apply(
            [
                TaskChange("t1", "pending", "in_progress"),
                TaskChange("t1", "in_progress", "complete"),
            ],
            now=60.0,
        )
        task = store.get_task("t1")
        assert (task.state, task.completed_at, task.started_at) == ("complete", 60.0, 10.0)
        _history_ok(store, "t1")

    # -- apply: compare-and-set and validation -------------------------------------------------

    def test_wrong_from_state_loses_and_changes_nothing(self, store: Store) -> None:
        _create(store)
        before = _snapshot(store, "t1")
        assert store.apply([StepChange("t1", "s0", "enqueued", "in_progress")], now=1.0) == [False]
        assert store.apply([TaskChange("t1", "in_progress", "complete")], now=1.0) == [False]
        assert _snapshot(store, "t1") == before, "a lost compare-and-set wrote something"

    def test_wrong_expect_attempt_loses(self, store: Store) -> None:
        _create(store)
        store.apply(start_changes("t1", "s0"), now=1.0)
        before = _snapshot(store, "t1")
        stale = StepChange("t1", "s0", "in_progress", "complete", results=1, expect_attempt=2)
        assert store.apply([stale], now=2.0) == [False], "a stale attempt fence applied"
        assert _snapshot(store, "t1") == before
        assert store.apply([attrs.evolve(stale, expect_attempt=1)], now=3.0) == [True]

    def test_losing_changes_do_not_stop_the_rest_of_the_batch(self, store: Store) -> None:
        _create(store)
        batch = [
            StepChange("t1", "s0", "pending", "enqueued"),
            StepChange("t1", "s1", "enqueued", "in_progress"),  # loses: s1 is pending
            StepChange("t1", "s0", "pending", "enqueued"),  # loses: s0 moved earlier in the batch
            StepChange(
                "t1", "s0", "enqueued", "in_progress", lease_owner="w", lease_expires_at=5.0
            ),
            StepChange("t1", "s2", "pending", "enqueued"),
        ]
        assert store.apply(batch, now=1.0) == [True, False, False, True, True]
        assert [s.state for s in store.get_steps("t1")] == ["in_progress", "pending", "enqueued"]
        assert len(store.get_transitions("t1")) == 3

    @requires("atomic_batches")
    def test_atomic_batch_is_all_or_nothing(self, store: Store) -> None:
        _create(store)
        before = _snapshot(store, "t1")
        batch: list[Change] = [
            TaskChange("t1", "pending", "in_progress"),
            StepChange("t1", "s0", "pending", "enqueued"),
            StepChange("t1", "s1", "enqueued", "in_progress"),  # loses: s1 is pending
        ]
        assert store.apply(batch, now=1.0, atomic=True) == [False, False, False]
        assert _snapshot(store, "t1") == before, "a refused atomic batch left a trace"
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
        ],
        ids=["illegal-step", "illegal-task", "missing-step", "missing-task", "missing-task2"],
    )
    def test_a_bad_change_rejects_the_whole_batch(
        self, store: Store, bad: Change, error: type[Exception]
    ) -> None:
        _create(store)
        before = _snapshot(store, "t1")
        good: list[Change] = [
            StepChange("t1", "s0", "pending", "enqueued"),
            TaskChange("t1", "pending", "in_progress"),
        ]
        with pytest.raises(error):
            store.apply([*good, bad, StepChange("t1", "s2", "pending", "enqueued")], now=1.0)
        assert _snapshot(store, "t1") == before, "a rejected batch was partly written"

    def test_illegal_transition_error_names_the_states(self, store: Store) -> None:
        _create(store)
        with pytest.raises(InvalidTransitionError) as info:
            store.apply([StepChange("t1", "s0", "complete", "pending")], now=1.0)
        assert (info.value.from_state, info.value.to_state) == ("complete", "pending")

    def test_empty_batch_is_a_no_op(self, store: Store) -> None:
        assert store.apply([], now=1.0) == []

    @requires("concurrent_writers")
    def test_racing_workers_claim_each_step_once(self, store: Store) -> None:
        _create(store, steps=40)
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
        assert winners == sorted(names), (
            "each step must be claimed by exactly one racing worker; claims: "
            + repr({o: sorted(got) for o, got in claimed.items()})
        )
        owners = {s.name: s.lease_owner or "" for s in store.get_steps("t1")}
        assert all(s in claimed[owners[s]] for s in names)
        assert all(s.attempts == 1 for s in store.get_steps("t1"))
        _history_ok(store, "t1")

    # -- transitions ---------------------------------------------------------------------------

    def test_transitions_record_every_applied_change(self, store: Store) -> None:
        _create(store)
        store.apply(
            [
                TaskChange("t1", "pending", "in_progress", reason="tick", metadata={"by": "c"}),
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
        assert log[0].metadata == {"by": "c"}
        assert [t.most_recent for t in log] == [True, False, True]
        _history_ok(store, "t1")

    # -- leases --------------------------------------------------------------------------------

    def test_heartbeat_extends_only_leases_the_owner_holds(self, store: Store) -> None:
        _create(store, steps=4)
        store.apply(
            [*start_changes("t1", "s0", "w1", 10.0), *start_changes("t1", "s1", "w2", 10.0)],
            now=1.0,
        )
        store.apply([StepChange("t1", "s2", "pending", "enqueued")], now=1.0)
        held = store.heartbeat("t1", ["s0", "s1", "s2", "ghost"], "w1", 99.0)
        assert held == [True, False, False, False]
        leases = {s.name: s.lease_expires_at for s in store.get_steps("t1")}
        assert leases == {"s0": 99.0, "s1": 10.0, "s2": None, "s3": None}

    def test_expired_leases_are_in_progress_steps_expired_before_now(self, store: Store) -> None:
        _create(store, "a", steps=4)
        _create(store, "b", steps=2)
        store.apply(
            [
                *start_changes("a", "s0", expires=30.0),
                *start_changes("a", "s1", expires=10.0),
                *start_changes("a", "s2", expires=50.0),
                *start_changes("b", "s1", expires=20.0),
                *start_changes("a", "s3", expires=15.0),
            ],
            now=1.0,
        )
        store.apply([StepChange("a", "s3", "in_progress", "complete")], now=2.0)
        found = store.expired_leases(now=30.0, limit=10)
        keys = sorted((s.task_id, s.name) for s in found)
        assert keys == [("a", "s1"), ("b", "s1")], "expiry is strictly before now"
        assert _step(store, "a", "s1") in found
        assert len(store.expired_leases(now=100.0, limit=2)) == 2, "limit not honoured"
        assert store.expired_leases(now=10.0, limit=10) == []

    # -- persistence ---------------------------------------------------------------------------

    @requires("persistence")
    def test_everything_survives_reopening(self, store: Store) -> None:
        _create(store, key="k")
        store.apply(
            [
                *start_changes("t1", "s0"),
                StepChange("t1", "s0", "in_progress", "complete", results={"r": [1]}),
            ],
            now=2.0,
        )
        before = _snapshot(store, "t1")
        again = self.reopen(store)
        try:
            assert _snapshot(again, "t1") == before
            assert again.create_task(make_task("t2", key="k"), make_steps("t2"))[1] is False
        finally:
            again.close()
