"""EventSinkSuite: the EventSink contract (tasker_core.protocols.EventSink) as inherited tests.

Subclass it and override the ``sink`` fixture::

    class TestMySink(EventSinkSuite):
        capabilities = {"readable"}

        @pytest.fixture
        def sink(self, tmp_path):
            return MySink(tmp_path / "events")

        def read_back(self, sink):          # only needed when claiming "readable"
            return [json.loads(line) for line in ...]

Capability ``readable``: ``read_back(sink)`` (called after ``sink.close()``) returns what the sink
delivered, as ``Event.to_dict()`` mappings oldest first; the suite then checks that every event
arrives exactly once, in order, with every field intact.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from tasker_core import Event, EventSink

from pytest_tasker.events import catalogue, event_batches, example_events
from pytest_tasker.plugin import examples
from pytest_tasker.suites.base import SuiteBase, requires

__all__ = ["EventSinkSuite"]


class EventSinkSuite(SuiteBase):
    """Every documented behaviour of an EventSink."""

    KNOWN_CAPABILITIES: ClassVar[frozenset[str]] = frozenset({"readable"})
    random_examples: ClassVar[float] = 0.2
    """Fraction of the profile's max_examples for the random-batch test."""

    @pytest.fixture
    def sink(self) -> EventSink:
        """Override: return the event sink under test."""
        pytest.fail(
            f"{type(self).__name__} must override the 'sink' fixture to build the sink under test",
            pytrace=False,
        )

    def read_back(self, sink: EventSink) -> list[Mapping[str, Any]]:
        """Override when claiming ``readable``: what the (closed) sink delivered, oldest first."""
        pytest.fail(
            f"{type(self).__name__} claims 'readable' but does not override read_back()",
            pytrace=False,
        )

    def _assert_delivered(self, sink: EventSink, sent: list[Event]) -> None:
        got = [dict(e) for e in self.read_back(sink)]
        want = [e.to_dict() for e in sent]
        assert len(got) == len(want), f"published {len(want)} events, the sink holds {len(got)}"
        for n, (g, w) in enumerate(zip(got, want, strict=True)):
            assert g == w, f"event {n} ({w['name']}) came back as {g!r}, expected {w!r}"

    def test_is_an_event_sink(self, sink: EventSink) -> None:
        assert isinstance(sink, EventSink), "the backend does not implement EventSink"
        assert isinstance(sink.name, str) and sink.name, "name must be a non-empty str"

    def test_accepts_every_catalogue_event_in_one_batch(self, sink: EventSink) -> None:
        sent = example_events()
        assert {e.name.split(".")[0] for e in sent} >= {"task", "step", "workflow", "custom"}
        assert len(sent) == len(catalogue())
        sink.publish(sent)
        sink.close()
        if self.has("readable"):
            self._assert_delivered(sink, sent)

    def test_accepts_every_catalogue_event_alone(self, sink: EventSink) -> None:
        sent = example_events()
        for event in sent:
            sink.publish([event])
        sink.close()
        if self.has("readable"):
            self._assert_delivered(sink, sent)

    def test_empty_batch(self, sink: EventSink) -> None:
        sink.publish([])
        sink.close()
        if self.has("readable"):
            self._assert_delivered(sink, [])

    def test_a_large_batch(self, sink: EventSink) -> None:
        template = example_events()
        sent = [
            Event(
                e.name,
                f"{e.id}-{i}",
                e.time + i,
                f"task-{i}",
                e.namespace,
                e.workflow,
                e.version,
                e.data,
            )
            for i in range(40)
            for e in template
        ]
        sink.publish(sent)
        sink.close()
        if self.has("readable"):
            self._assert_delivered(sink, sent)

    def test_random_batches(self, sink: EventSink) -> None:
        """Random catalogue events (unicode, big numbers, nested payloads) in random batches."""
        sent: list[Event] = []

        @given(
            batches=event_batches().map(lambda b: [b])
            | event_batches().map(lambda b: [b[: len(b) // 2], b[len(b) // 2 :]])
        )
        @settings(
            max_examples=examples(self.random_examples),
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        def publish(batches: list[list[Event]]) -> None:
            for batch in batches:
                sink.publish(batch)
                sent.extend(batch)

        publish()
        sink.close()
        if self.has("readable"):
            self._assert_delivered(sink, sent)

    @requires("readable")
    def test_delivers_everything_once_in_order(self, sink: EventSink) -> None:
        first, second = example_events("a"), example_events("b")
        sink.publish(first)
        sink.publish(second)
        sink.close()
        self._assert_delivered(sink, first + second)
