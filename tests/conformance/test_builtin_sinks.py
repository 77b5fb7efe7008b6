"""The builtin event sinks (log, in-process subscribers) pass the conformance kit."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import pytest
from pytest_tasker.suites import EventSinkSuite

from tasker_core.builtin.log_sink import LogSink
from tasker_core.events import SubscriberSink
from tasker_core.models import Event
from tasker_core.protocols import EventSink


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class TestLogSink(EventSinkSuite):
    """Not readable (it logs a summary, not the event), but must take every event shape."""

    @pytest.fixture
    def sink(self) -> EventSink:
        logger = logging.getLogger("tasker.kit.log-sink")
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
        return LogSink(logger)


class TestSubscriberSink(EventSinkSuite):
    """In-process subscribers get every event object, so the suite can read them back."""

    capabilities = {"readable"}

    @pytest.fixture
    def sink(self) -> EventSink:
        sink = SubscriberSink()
        self.seen: list[Event] = []
        sink.add("*", self.seen.append)
        return sink

    def read_back(self, sink: EventSink) -> list[Mapping[str, Any]]:
        # Through JSON, as a remote subscriber would see them.
        return [json.loads(json.dumps(e.to_dict())) for e in self.seen]
