"""The audit sink passes the conformance kit's EventSinkSuite, rotating or not."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pytest_tasker.suites import EventSinkSuite
from tasker_core.protocols import EventSink

from tasker_example_audit import AuditOptions, AuditSink, read_audit_log


class TestAuditSink(EventSinkSuite):
    """Default size limit: the suite's events fit in one file."""

    capabilities = frozenset({"readable"})

    @pytest.fixture
    def sink(self, tmp_path: Path) -> AuditSink:
        return AuditSink(AuditOptions(path=str(tmp_path / "audit" / "events.jsonl")))

    def read_back(self, sink: EventSink) -> list[Mapping[str, Any]]:
        assert isinstance(sink, AuditSink)
        return list(read_audit_log(sink.path, sink.options.backups))


class TestRotatingAuditSink(TestAuditSink):
    """A 2 KiB limit rotates many times during the suite; with enough backups nothing is lost
    and the files read back oldest first give every event in order."""

    @pytest.fixture
    def sink(self, tmp_path: Path) -> AuditSink:
        return AuditSink(
            AuditOptions(path=str(tmp_path / "events.jsonl"), max_bytes=2048, backups=100_000)
        )
