"""Deliberately broken backends, each with one bug a real backend could ship.

Run by test_mutations.py in a separate pytest process: every class below must FAIL the kit,
with a message that names the bug. Healthy controls at the end must pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from unittest import mock

import attrs
import pytest
from tasker_core import Claim, Event, StepChange, TaskChange
from tasker_core.builtin import memory_store
from tasker_core.builtin.inprocess_queue import InProcessQueue
from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.fsm import STEP, TASK
from tasker_core.templates import TaskTemplate, template_from_mapping

from pytest_tasker.suites import EventSinkSuite, QueueSuite, StoreSuite, TemplateFinderSuite

Change = StepChange | TaskChange
ALL_STORE_CAPS = {"atomic_batches", "concurrent_writers"}


def _lenient_events(changes: Sequence[Change]) -> list[str]:
    """check_events that lets illegal moves through instead of raising."""
    out = []
    for c in changes:
        machine = STEP if isinstance(c, StepChange) else TASK
        legal = machine.can(c.from_state, c.to_state)
        out.append(machine.check(c.from_state, c.to_state) if legal else "illegal")
    return out


class IllegalTransitionStore(MemoryStore):
    """Bug: never validates (from, to) against the state table."""

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        with mock.patch.object(memory_store, "check_events", _lenient_events):
            return super().apply(changes, now, atomic)


class LosingResultsStore(MemoryStore):
    """Bug: a completed step's results are not written."""

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        dropped = [
            attrs.evolve(c, results=None)
            if isinstance(c, StepChange) and c.to_state == "complete"
            else c
            for c in changes
        ]
        return super().apply(dropped, now, atomic)


class DoubleClaimStore(MemoryStore):
    """Bug: the claim UPDATE lacks its state guard, so a second claimer also 'wins'.

    The bug's effect (the claim taken over, one more attempt counted) is produced through the
    public API, so the mutant does not depend on the memory store's internals.
    """

    def apply(self, changes: Sequence[Change], now: float, atomic: bool = False) -> list[bool]:
        out = super().apply(changes, now, atomic)
        for i, (c, ok) in enumerate(zip(changes, out, strict=True)):
            if ok or not isinstance(c, StepChange) or c.to_state != "in_progress":
                continue
            current = next(s for s in self.get_steps(c.task_id) if s.name == c.step)
            if current.state == "in_progress":
                takeover = [
                    StepChange(c.task_id, c.step, "in_progress", "error"),
                    StepChange(c.task_id, c.step, "error", "enqueued"),
                    attrs.evolve(c, from_state="enqueued", expect_attempt=None),
                ]
                out[i] = all(super().apply(takeover, now))
        return out


class LostNackQueue(InProcessQueue):
    """Bug: a nack drops the item instead of making it visible again."""

    def nack(self, claims: Sequence[Claim], delay: float, now: float) -> list[bool]:
        return self.ack(claims)


class DoubleClaimQueue(InProcessQueue):
    """Bug: claiming does not hide the item, so the next claimer gets it too."""

    def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Claim]:
        got = super().claim(owner, limit, lease, now)
        with self._lock:
            for c in got:
                self._push((c.item.task_id, c.item.step), c.item.available_at)
        return got


class DroppingSink:
    """Bug: loses the last event of every batch (an off-by-one in a flush loop)."""

    name = "dropping"

    def __init__(self) -> None:
        self.lines: list[str] = []

    def publish(self, events: Sequence[Event]) -> None:
        for event in events[:-1]:
            self.lines.append(json.dumps(event.to_dict()))

    def close(self) -> None:
        return None


class StringOrderFinder:
    """Bug: picks the latest version by string order (1.9.0 beats 1.10.0)."""

    def __init__(self, templates: list[dict[str, Any]]) -> None:
        self.templates = [template_from_mapping(t) for t in templates]

    def find(self, namespace: str, name: str, version: str | None) -> TaskTemplate | None:
        mine = [t for t in self.templates if (t.namespace, t.name) == (namespace, name)]
        if version is not None:
            mine = [t for t in mine if t.version == version]
        return max(mine, key=lambda t: t.version) if mine else None


class TestIllegalTransitionStore(StoreSuite):
    capabilities = ALL_STORE_CAPS

    @pytest.fixture
    def store(self) -> MemoryStore:
        return IllegalTransitionStore(record_calls=False)

    @pytest.fixture
    def store_factory(self) -> Callable[[], MemoryStore]:
        return lambda: IllegalTransitionStore(record_calls=False)


class TestLosingResultsStore(StoreSuite):
    capabilities = ALL_STORE_CAPS

    @pytest.fixture
    def store(self) -> MemoryStore:
        return LosingResultsStore(record_calls=False)

    @pytest.fixture
    def store_factory(self) -> Callable[[], MemoryStore]:
        return lambda: LosingResultsStore(record_calls=False)


class TestDoubleClaimStore(StoreSuite):
    capabilities = ALL_STORE_CAPS

    @pytest.fixture
    def store(self) -> MemoryStore:
        return DoubleClaimStore(record_calls=False)

    @pytest.fixture
    def store_factory(self) -> Callable[[], MemoryStore]:
        return lambda: DoubleClaimStore(record_calls=False)


class TestLostNackQueue(QueueSuite):
    capabilities = {"concurrent_claimers", "ordering", "wakeup"}

    @pytest.fixture
    def queue(self) -> InProcessQueue:
        return LostNackQueue()

    @pytest.fixture
    def queue_factory(self) -> Callable[[], InProcessQueue]:
        return LostNackQueue


class TestDoubleClaimQueue(QueueSuite):
    capabilities = {"concurrent_claimers", "ordering", "wakeup"}

    @pytest.fixture
    def queue(self) -> InProcessQueue:
        return DoubleClaimQueue()

    @pytest.fixture
    def queue_factory(self) -> Callable[[], InProcessQueue]:
        return DoubleClaimQueue


class TestDroppingSink(EventSinkSuite):
    capabilities = {"readable"}

    @pytest.fixture
    def sink(self) -> DroppingSink:
        return DroppingSink()

    def read_back(self, sink: Any) -> list[Mapping[str, Any]]:
        return [json.loads(line) for line in sink.lines]


class TestStringOrderFinder(TemplateFinderSuite):
    @pytest.fixture
    def finder(self, templates: list[dict[str, Any]]) -> StringOrderFinder:
        return StringOrderFinder(templates)


class TestHealthyQueue(QueueSuite):
    """Control: the unmodified queue passes in the same run."""

    capabilities = {"concurrent_claimers", "ordering", "wakeup"}

    @pytest.fixture
    def queue(self) -> InProcessQueue:
        return InProcessQueue()


class TestHealthyStore(StoreSuite):
    """Control: the unmodified memory store passes in the same run."""

    capabilities = ALL_STORE_CAPS

    @pytest.fixture
    def store(self) -> MemoryStore:
        return MemoryStore(record_calls=False)
