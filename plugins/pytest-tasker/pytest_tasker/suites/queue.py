"""QueueSuite: the Queue contract (tasker_core.protocols.Queue) as tests a backend inherits.

Subclass it and override the ``queue`` fixture to return an EMPTY queue of your backend::

    class TestMyQueue(QueueSuite):
        capabilities = {"concurrent_claimers", "ordering", "wakeup"}

        @pytest.fixture
        def queue(self):
            queue = MyQueue(...)
            yield queue
            queue.close()

Capabilities: ``concurrent_claimers`` (many threads may claim at once and never share an item),
``ordering`` (each claim batch lists items in the order they became visible, ties in enqueue
order), ``wakeup`` (``wait`` returns promptly when another thread enqueues).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import ClassVar

import pytest
from hypothesis.stateful import run_state_machine_as_test
from tasker_core import Claim, Queue, WorkItem

from pytest_tasker.suites.base import SuiteBase, machine_settings, requires
from pytest_tasker.suites.queue_machine import QueueMachine

__all__ = ["QueueSuite"]


def _steps(claims: list[Claim]) -> list[str]:
    return [c.item.step for c in claims]


def _items(*steps: str, at: float = 0.0, task: str = "t") -> list[WorkItem]:
    return [WorkItem(task, s, at) for s in steps]


class QueueSuite(SuiteBase):
    """Every documented behaviour of a Queue, plus a model-based state machine."""

    KNOWN_CAPABILITIES: ClassVar[frozenset[str]] = frozenset(
        {"concurrent_claimers", "ordering", "wakeup"}
    )
    machine_examples: ClassVar[float] = 0.5
    machine_steps: ClassVar[int] = 40

    @pytest.fixture
    def queue(self) -> Queue:
        """Override: return an empty queue of the backend under test (close it after)."""
        pytest.fail(
            f"{type(self).__name__} must override the 'queue' fixture to build the queue under "
            "test",
            pytrace=False,
        )

    @pytest.fixture
    def queue_factory(self, queue: Queue) -> Callable[[], Queue]:
        """Builds the queue each state-machine example runs on.

        By default every example shares the ``queue`` fixture (each example starts by draining
        it). Override to give every example a fresh queue when that is cheap.
        """
        return lambda: queue

    def test_state_machine_against_model(self, queue_factory: Callable[[], Queue]) -> None:
        """Random enqueues, claims, acks, nacks, extends and clock moves agree with the model."""
        ordered = self.has("ordering")
        run_state_machine_as_test(
            QueueMachine.bound(queue_factory, ordered),
            settings=machine_settings(self.machine_examples, self.machine_steps),
        )

    def test_is_a_queue(self, queue: Queue) -> None:
        assert isinstance(queue, Queue), "the backend does not implement the Queue protocol"
        assert isinstance(queue.scheme, str) and queue.scheme
        assert len(queue) == 0, "the queue fixture must return an empty queue"

    def test_enqueue_claim_ack(self, queue: Queue) -> None:
        queue.enqueue(_items("a", "b"))
        assert len(queue) == 2
        claims = queue.claim("w1", 10, 30.0, now=1.0)
        assert sorted(_steps(claims)) == ["a", "b"]
        assert all(c.owner == "w1" and c.expires_at == 31.0 for c in claims)
        assert {(c.item.task_id, c.item.step) for c in claims} == {("t", "a"), ("t", "b")}
        assert len(queue) == 2, "claimed items still count until acked"
        assert queue.claim("w2", 10, 30.0, now=2.0) == [], "a claimed item was handed out again"
        assert queue.ack(claims) == [True, True]
        assert len(queue) == 0
        assert queue.claim("w2", 10, 30.0, now=100.0) == [], "an acked item came back"

    def test_claim_honours_limit(self, queue: Queue) -> None:
        queue.enqueue(_items(*(f"s{i}" for i in range(5))))
        assert len(queue.claim("w1", 2, 10.0, now=1.0)) == 2
        assert len(queue.claim("w1", 10, 10.0, now=1.0)) == 3

    def test_delayed_items_become_visible_at_available_at(self, queue: Queue) -> None:
        queue.enqueue([WorkItem("t", "later", 50.0), WorkItem("t", "now", 10.0)])
        assert _steps(queue.claim("w", 10, 5.0, now=49.0)) == ["now"]
        assert _steps(queue.claim("w", 10, 5.0, now=50.0)) == ["later"], (
            "an item is visible when available_at <= now"
        )

    def test_enqueueing_a_waiting_or_claimed_key_is_a_no_op(self, queue: Queue) -> None:
        queue.enqueue(_items("a"))
        queue.enqueue(_items("a", at=5.0))
        assert len(queue) == 1, "the queue holds two copies of one (task_id, step)"
        first = queue.claim("w", 10, 10.0, now=1.0)
        queue.enqueue(_items("a"))
        assert len(queue) == 1
        assert queue.claim("w2", 10, 10.0, now=2.0) == []
        assert queue.ack(first) == [True]
        queue.enqueue(_items("a"))
        assert len(queue) == 1, "after an ack the key may be enqueued again"

    def test_same_step_of_other_tasks_are_other_keys(self, queue: Queue) -> None:
        queue.enqueue([WorkItem("t1", "s"), WorkItem("t2", "s")])
        assert len(queue) == 2
        assert len(queue.claim("w", 10, 10.0, now=1.0)) == 2

    def test_expired_lease_is_redelivered(self, queue: Queue) -> None:
        queue.enqueue(_items("a"))
        (first,) = queue.claim("w1", 1, 10.0, now=0.0)
        assert queue.claim("w2", 1, 10.0, now=10.0) == [], "a lease expiring at now is still live"
        (again,) = queue.claim("w2", 1, 10.0, now=10.5)
        assert again.item.step == "a" and again.owner == "w2"
        assert again.token != first.token, "a redelivery must be told from the lost claim"
        assert queue.ack([first]) == [False], "the lost claim could still ack"
        assert queue.nack([first], 0.0, now=11.0) == [False]
        assert queue.extend([first], 10.0, now=11.0) == [None]
        assert queue.ack([again]) == [True]

    def test_nack_makes_the_item_visible_after_the_delay(self, queue: Queue) -> None:
        queue.enqueue(_items("a"))
        claims = queue.claim("w1", 1, 10.0, now=0.0)
        assert queue.nack(claims, 5.0, now=2.0) == [True]
        assert len(queue) == 1, "a nacked item was lost"
        assert queue.claim("w2", 1, 10.0, now=6.9) == []
        again = queue.claim("w2", 1, 10.0, now=7.0)
        assert _steps(again) == ["a"], "a nacked item must come back at now + delay"
        assert queue.ack(claims) == [False], "the released claim could still ack"

    def test_extend_renews_only_current_claims(self, queue: Queue) -> None:
        queue.enqueue(_items("a", "b"))
        claims = queue.claim("w1", 2, 10.0, now=0.0)
        renewed = queue.extend(claims, 20.0, now=5.0)
        assert [r.expires_at if r else None for r in renewed] == [25.0, 25.0]
        assert queue.claim("w2", 2, 10.0, now=15.0) == [], "an extended lease expired early"
        current = [r for r in renewed if r is not None]
        assert queue.ack(current[:1]) == [True]
        assert queue.extend(current[:1], 20.0, now=6.0) == [None], "extended an acked claim"

    def test_ack_and_nack_of_empty_lists(self, queue: Queue) -> None:
        assert queue.ack([]) == []
        assert queue.nack([], 1.0, now=0.0) == []
        assert queue.extend([], 1.0, now=0.0) == []

    @requires("ordering")
    def test_first_visible_is_claimed_first_ties_in_enqueue_order(self, queue: Queue) -> None:
        queue.enqueue([WorkItem("t", "late", 3.0), WorkItem("t", "x", 1.0)])
        queue.enqueue([WorkItem("t", "y", 1.0), WorkItem("t", "early", 0.5)])
        got = queue.claim("w", 10, 10.0, now=5.0)
        assert _steps(got) == ["early", "x", "y", "late"]

    @requires("concurrent_claimers")
    def test_concurrent_claimers_never_share_an_item(self, queue: Queue) -> None:
        total = 200
        queue.enqueue([WorkItem("t", f"s{i:03d}", 0.0) for i in range(total)])
        taken: list[Claim] = []
        lock = threading.Lock()
        errors: list[BaseException] = []
        barrier = threading.Barrier(4)

        def worker(owner: str) -> None:
            try:
                barrier.wait()
                while True:  # claim (never ack) until nothing is left; bounded if items repeat
                    claims = queue.claim(owner, 7, 60.0, now=1.0)
                    with lock:
                        taken.extend(claims)
                        if not claims or len(taken) > 2 * total:
                            return
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"claimer threads failed: {errors!r}"
        seen = _steps(taken)
        doubled = sorted(s for s, n in Counter(seen).items() if n > 1)
        assert not doubled, f"items claimed by two live claims at once: {doubled[:10]}"
        assert len(seen) == total, f"{total - len(seen)} items never delivered"
        assert queue.ack(taken) == [True] * total
        assert len(queue) == 0

    @requires("wakeup")
    def test_wait_wakes_on_enqueue(self, queue: Queue) -> None:
        timer = threading.Timer(0.05, lambda: queue.enqueue(_items("a")))
        started = time.monotonic()
        timer.start()
        try:
            woke = queue.wait(5.0)
        finally:
            timer.join()
        assert woke, "wait() returned False though an enqueue happened"
        assert time.monotonic() - started < 2.0, "wait() did not return promptly on enqueue"

    def test_wait_returns_within_its_timeout(self, queue: Queue) -> None:
        started = time.monotonic()
        answer = queue.wait(0.05)
        assert isinstance(answer, bool)
        assert time.monotonic() - started < 2.0
