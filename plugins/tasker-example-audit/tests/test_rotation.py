"""Size-based rotation: files stay within max_bytes, the oldest are dropped, no line is split."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_tasker.events import event_batches, example_events
from tasker_core import Event

from tasker_example_audit import AuditOptions, AuditSink, read_audit_log
from tasker_example_audit.sink import audit_files


def _sink(tmp: Path, max_bytes: int, backups: int) -> AuditSink:
    return AuditSink(AuditOptions(path=str(tmp / "a.jsonl"), max_bytes=max_bytes, backups=backups))


def test_rotates_before_a_write_would_pass_the_limit(tmp_path: Path) -> None:
    events = example_events()
    sink = _sink(tmp_path, max_bytes=1000, backups=50)
    sink.publish(events)
    sink.close()
    files = sink.files()
    assert len(files) > 1 and sink.rotations == len(files) - 1
    for f in files:
        lines = f.read_bytes().splitlines(keepends=True)
        assert all(line.endswith(b"\n") for line in lines)
        assert f.stat().st_size <= 1000 or len(lines) == 1
    assert [e["id"] for e in read_audit_log(sink.path, 50)] == [e.id for e in events]


def test_keeps_only_the_newest_backups(tmp_path: Path) -> None:
    events = example_events() * 3
    sink = _sink(tmp_path, max_bytes=400, backups=2)
    for e in events:
        sink.publish([e])
    sink.close()
    assert [p.name for p in sink.files()] == ["a.jsonl.2", "a.jsonl.1", "a.jsonl"]
    kept = read_audit_log(sink.path, 2)
    assert [e["id"] for e in kept] == [e.id for e in events[-len(kept) :]]


def test_zero_backups_keeps_only_the_live_file(tmp_path: Path) -> None:
    sink = _sink(tmp_path, max_bytes=300, backups=0)
    sink.publish(example_events())
    sink.close()
    assert [p.name for p in sink.files()] == ["a.jsonl"]
    assert read_audit_log(sink.path, 0)[-1]["id"] == example_events()[-1].id


def test_an_oversized_event_gets_a_file_of_its_own(tmp_path: Path) -> None:
    big = Event("custom.blob", "big", 1.0, "t", "ns", "wf", "1.0.0", {"payload": "x" * 5000})
    small = example_events()[0]
    sink = _sink(tmp_path, max_bytes=1000, backups=10)
    sink.publish([small, big, small])
    sink.close()
    sizes = [len(f.read_bytes().splitlines()) for f in sink.files()]
    assert sizes == [1, 1, 1]


def test_appends_to_an_existing_log_and_counts_its_size(tmp_path: Path) -> None:
    first = _sink(tmp_path, max_bytes=10_000, backups=3)
    first.publish(example_events()[:2])
    first.close()
    again = _sink(tmp_path, max_bytes=10_000, backups=3)
    again.publish(example_events()[2:])
    again.close()
    assert [e["id"] for e in read_audit_log(again.path, 3)] == [e.id for e in example_events()]


@given(
    batches=st.lists(event_batches(max_size=8), max_size=6),
    max_bytes=st.integers(200, 5000),
)
@settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
def test_nothing_lost_with_enough_backups(batches: list[list[Event]], max_bytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        sink = _sink(Path(tmp), max_bytes=max_bytes, backups=10_000)
        for batch in batches:
            sink.publish(batch)
        sink.close()
        sent = [e.to_dict() for batch in batches for e in batch]
        assert read_audit_log(sink.path, 10_000) == json.loads(json.dumps(sent))
        for f in audit_files(sink.path, 10_000):
            assert f.stat().st_size <= max_bytes or len(f.read_bytes().splitlines()) == 1
