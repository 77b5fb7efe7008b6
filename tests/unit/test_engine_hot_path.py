"""What the hot-path shortcuts must keep: a lazily built step logger, a memory-store batch that is
refused or raises after pass one moved rows leaves every row as it was, and the in-process queue's
FIFO-plus-heap claims in (visible_at, enqueue order) whatever order items arrive in.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasker_core import StepContext
from tasker_core.builtin.inprocess_queue import InProcessQueue
from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.errors import TaskNotFoundError
from tasker_core.models import Step, StepChange, Task, TaskChange, WorkItem


def _publish(name: str, payload: Any) -> None:
    return None


def _ctx(logger: logging.LoggerAdapter[logging.Logger] | None) -> StepContext:
    return StepContext("t1", "ns", "wf", "1", "s", 1, 3, {}, {}, {}, logger, _publish)


def test_a_context_without_logger_builds_one_once_carrying_task_and_step() -> None:
    ctx = _ctx(None)
    adapter = ctx.logger
    assert adapter.logger.name == "tasker.step"
    assert adapter.extra == {"task_id": "t1", "step": "s"}
    assert ctx.logger is adapter
    assert ctx == _ctx(None)  # the cached adapter takes no part in equality


def test_a_given_logger_is_the_one_handlers_get() -> None:
    given_adapter = logging.LoggerAdapter(logging.getLogger("mine"), {})
    assert _ctx(given_adapter).logger is given_adapter


def _store(states: list[str]) -> MemoryStore:
    store = MemoryStore()
    task = Task("t", "ns", "wf", "1", "in_progress", {}, 0.0, 0.0)
    steps = [Step("t", i, f"s{i}", "h", state, 3, True) for i, state in enumerate(states)]
    store.create_task(task, steps)
    return store


def _rows(store: MemoryStore) -> list[tuple[str, int]]:
    return [(s.state, s.attempts) for s in store.get_steps("t")]


def test_a_refused_atomic_batch_puts_back_rows_moved_twice() -> None:
    store = _store(["pending", "enqueued"])
    before = _rows(store)
    batch = [
        StepChange("t", "s0", "pending", "enqueued"),
        StepChange("t", "s0", "enqueued", "in_progress", lease_owner="o"),
        StepChange("t", "s1", "in_progress", "complete", expect_attempt=1),  # loses
    ]
    assert store.apply(batch, 1.0, atomic=True) == [False, False, False]
    assert _rows(store) == before
    assert store.get_transitions("t") == []
    assert store.apply(batch, 1.0) == [True, True, False]  # not atomic: the winners apply
    assert _rows(store) == [("in_progress", 1), ("enqueued", 0)]


@pytest.mark.parametrize(
    ("last", "error"),
    [
        (StepChange("t", "nope", "pending", "enqueued"), KeyError),
        (StepChange("gone", "s0", "pending", "enqueued"), TaskNotFoundError),
        (StepChange("t", "s1", "pending", "enqueued", metadata={"x": {1, 2}}), TypeError),
    ],
)
def test_a_batch_that_raises_after_moving_rows_leaves_them_as_they_were(
    last: StepChange, error: type[Exception]
) -> None:
    store = _store(["pending", "pending"])
    with pytest.raises(error):
        store.apply([StepChange("t", "s0", "pending", "enqueued"), last], 1.0)
    assert _rows(store) == [("pending", 0), ("pending", 0)]
    assert store.get_transitions("t") == []


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 5), min_size=1, max_size=6), min_size=1, max_size=5))
def test_claims_follow_visible_time_then_enqueue_order(batches: list[list[int]]) -> None:
    queue = InProcessQueue()
    expected: list[tuple[float, int, str]] = []
    for b, times in enumerate(batches):
        items = [WorkItem("t", f"b{b}i{i}", float(at)) for i, at in enumerate(times)]
        queue.enqueue(items)
        expected += [
            (item.available_at, len(expected) + k, item.step) for k, item in enumerate(items)
        ]
    claimed: list[Any] = []
    for now in range(7):  # claim a few at a time as time passes
        claimed += [c.item.step for c in queue.claim("o", 2, 30.0, float(now))]
    claimed += [c.item.step for c in queue.claim("o", 100, 30.0, 10.0)]
    assert claimed == [step for _, _, step in sorted(expected)][: len(claimed)]
    assert sorted(claimed) == sorted(step for _, _, step in expected)


_STATES = ["pending", "enqueued", "in_progress", "complete", "error", "cancelled"]
_change = st.builds(
    StepChange,
    st.sampled_from(["t", "t", "t", "gone"]),
    st.sampled_from(["s0", "s1", "s2", "nope"]),
    st.sampled_from(_STATES),
    st.sampled_from(_STATES),
    st.just("r"),
    st.sampled_from([{"attempt": 1}, {"attempt": 2, "duration": 0.5}, {"x": {1}}, {}]),
    st.sampled_from([None, "owner"]),
    st.sampled_from([None, 9.0]),
    st.sampled_from([None, {"v": [1, 2]}, {"v": object()}]),
    st.just(None),
    st.sampled_from([None, 4.0]),
    st.sampled_from([None, 0, 1]),
    st.sampled_from([None, 5]),
)


def _outcome(store: MemoryStore, call: Any) -> tuple[Any, list[Step], list[Any], str]:
    try:
        result: Any = call()
    except Exception as exc:  # the kind of error is part of what must agree
        result = type(exc)
    transitions = [
        (t.step, t.from_state, t.to_state, t.metadata, t.most_recent)
        for t in store.get_transitions("t")
    ]
    return result, store.get_steps("t"), transitions, store.get_task("t").state


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(_STATES), min_size=3, max_size=3),
    st.lists(st.lists(_change, min_size=1, max_size=5), min_size=1, max_size=4),
    st.booleans(),
)
def test_the_one_pass_apply_agrees_with_the_checked_one(
    states: list[str], batches: list[list[StepChange]], atomic: bool
) -> None:
    """The optimistic native pass gives up on anything unusual; whatever ``apply`` writes,
    returns or raises must be what the careful two-pass path gives for the same batches."""
    fast, careful = _store(states), _store(states)
    for batch in batches:
        got = _outcome(fast, functools.partial(fast.apply, batch, 2.0, atomic))
        want = _outcome(careful, functools.partial(careful._apply_checked, batch, 2.0, atomic))
        assert got == want
        assert fast._sort_key == careful._sort_key


def test_the_native_pass_takes_the_usual_batch_and_hands_back_the_rest() -> None:
    """The engine's own batches must not all fall through to Python (that would pass every
    agreement test and lose the point); a task change, an unseen pair or a lost compare-and-set
    in an atomic batch must come back untouched."""
    store = _store(["pending", "enqueued", "in_progress"])
    usual = [
        StepChange("t", "s0", "pending", "enqueued", metadata={"attempt": 1}),
        StepChange("t", "s1", "enqueued", "in_progress", lease_owner="o", lease_expires_at=9.0),
        StepChange("t", "s2", "in_progress", "complete", results={"n": 1}, expect_attempt=0),
    ]
    done = store._native.apply(usual, 1.0, True, store._sort_key)
    assert done == ([True, True, True], 3)
    store._sort_key = 3
    assert _rows(store) == [("enqueued", 0), ("in_progress", 1), ("complete", 0)]
    assert [(t.step, t.to_state, t.metadata) for t in store.get_transitions("t")] == [
        ("s0", "enqueued", {"attempt": 1}),
        ("s1", "in_progress", {}),
        ("s2", "complete", {}),
    ]
    assert store.get_steps("t")[2].results == {"n": 1}
    assert store._in_progress == {("t", "s1")}
    before = (_rows(store), store.get_transitions("t"))
    for unusual in (
        [StepChange("t", "s0", "enqueued", "in_progress"), TaskChange("t", "in_progress", "error")],
        [StepChange("t", "s0", "enqueued", "in_progress"), StepChange("t", "s2", "complete", "x")],
        [
            StepChange("t", "s0", "enqueued", "in_progress"),
            StepChange("t", "s1", "pending", "enqueued"),
        ],
        [
            StepChange("t", "s0", "enqueued", "in_progress"),
            StepChange("t", "nope", "pending", "enqueued"),
        ],
        [
            StepChange("t", "s0", "enqueued", "in_progress"),
            StepChange("u", "s0", "pending", "enqueued"),
        ],
        [StepChange("t", "s0", "enqueued", "in_progress", metadata={"x": {1}})],
    ):
        assert store._native.apply(unusual, 2.0, True, store._sort_key) is None
        assert (_rows(store), store.get_transitions("t")) == before


def test_a_stored_step_row_lists_steps_fields_in_order() -> None:
    """get_steps builds Steps from a row's values in order, so the row must keep field order."""
    store = _store(["pending"])
    (step,) = store.get_steps("t")
    assert step == Step("t", 0, "s0", "h", "pending", 3, True)
    assert list(store._steps["t"][0]) == [a.name for a in attrs.fields(Step)]
