"""Many workers, one bus: two worker processes publish through a `tasker events proxy` process.

The slow-joiner handshake, sleep-free: subscribers connect first, each with a distinct prefix
set; every worker's sink waits (``wait_for_subscriptions``) until all of those prefixes have
travelled subscriber -> proxy XPUB -> proxy XSUB -> worker before it runs its task. From then on
nothing is lost, so the test can demand *every* event.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tasker_zmq import Subscriber

HERE = Path(__file__).resolve().parent
WORKER = HERE / "bus_worker.py"

Events = list[dict[str, Any]]


def collect(subscriber: Subscriber, done: Callable[[Events], bool], timeout: float) -> Events:
    received: Events = []
    deadline = time.monotonic() + timeout
    while not done(received):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out with {len(received)} events: {received[-3:]}")
        event = subscriber.receive(min(left, 0.5))
        if event is not None:
            received.append(event)
    return received


def by_task(events: Events) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = defaultdict(list)
    for event in events:
        ids[event["task_id"]].append(event["id"])
    return dict(ids)


def finished(count: int) -> Callable[[Events], bool]:
    final = {"task.completed", "task.failed"}
    return lambda events: sum(e["name"] in final for e in events) >= count


@pytest.mark.slow
def test_two_workers_through_the_proxy(
    proxy: Mapping[str, Any],
    cli: Callable[..., subprocess.Popen[str]],
    check_fields: Callable[[Mapping[str, Any]], None],
    next_line: Callable[[subprocess.Popen[str], float], str],
    stop_process: Callable[..., int],
    tmp_path: Path,
) -> None:
    everything = Subscriber(proxy["backend"])
    steps = Subscriber(proxy["backend"], ["step."])
    failures = Subscriber(proxy["backend"], ["task.failed"])
    tail = cli(
        "events",
        "tail",
        "--connect",
        proxy["backend"],
        "--filter",
        "task.",
        "--json",
        "--timeout",
        "180s",
    )
    prefixes = ["", "step.", "task.failed", "task."]
    workers = []
    for label, fail in (("one", False), ("two", True)):
        command = [
            sys.executable,
            str(WORKER),
            "--publish",
            proxy["frontend"],
            "--out",
            str(tmp_path / f"{label}.json"),
            "--label",
            label,
        ]
        command += [f"--await={prefix}" for prefix in prefixes]
        workers.append(
            subprocess.Popen(
                [*command, *(["--fail"] if fail else [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            assert json.loads(out)["sink"]["hwm"] == 0
        got_all = collect(everything, finished(2), timeout=30)
        got_failed = collect(failures, lambda e: len(e) >= 1, timeout=30)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    recorded = [json.loads((tmp_path / f"{label}.json").read_text()) for label in ("one", "two")]
    sent = [event for run in recorded for event in run]

    # Every event of both runs arrived, exactly as published, and in per-task order.
    assert len(by_task(sent)) == 2
    assert by_task(got_all) == by_task(sent)
    assert sorted(got_all, key=lambda e: e["id"]) == sorted(sent, key=lambda e: e["id"])
    for event in got_all:
        check_fields(event)
    assert {"step.retry_scheduled", "step.failed", "custom.progress", "task.failed"} <= {
        e["name"] for e in got_all
    }

    # Prefix filters: the step. subscriber saw exactly the step events, in per-task order.
    got_steps = collect(
        steps, lambda e: len(e) >= sum(x["name"].startswith("step.") for x in sent), timeout=30
    )
    assert by_task(got_steps) == by_task([e for e in sent if e["name"].startswith("step.")])
    assert [e["name"] for e in got_failed] == ["task.failed"]
    assert failures.receive(0.2) is None

    # `tasker events tail --json`: one JSON object per line, the task events of both runs;
    # then SIGINT stops it cleanly.
    task_events = [e for e in sent if e["name"].startswith("task.")]
    lines = [json.loads(next_line(tail, 30)) for _ in task_events]
    assert by_task(lines) == by_task(task_events)
    assert stop_process(tail, signal.SIGINT) == 0
    for subscriber in (everything, steps, failures):
        subscriber.close()


@pytest.mark.slow
def test_nothing_is_sent_to_nobody(proxy: Mapping[str, Any], tmp_path: Path) -> None:
    """With no subscriber, a worker drops every event at the source, counted, and still runs."""
    out = subprocess.run(
        [
            sys.executable,
            str(WORKER),
            "--publish",
            proxy["frontend"],
            "--out",
            str(tmp_path / "w.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    stats = json.loads(out)["sink"]
    recorded = json.loads((tmp_path / "w.json").read_text())
    assert stats["sent"] == 0
    assert stats["no_subscriber"] == stats["dropped"] == len(recorded) > 0
