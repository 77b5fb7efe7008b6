"""The in-process queue passes the conformance kit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_tasker.suites import QueueSuite

from tasker_core.builtin.inprocess_queue import InProcessQueue
from tasker_core.protocols import Queue


class TestInProcessQueue(QueueSuite):
    capabilities = {"concurrent_claimers", "ordering", "wakeup"}

    @pytest.fixture
    def queue(self) -> Iterator[Queue]:
        queue = InProcessQueue()
        yield queue
        queue.close()
