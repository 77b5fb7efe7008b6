"""Lifecycle events of ``tasker worker`` processes sharing a real cluster.

Two worker processes publish into a sink plugin (installed through an entry point, as any
plugin is); the submitting engine publishes ``task.created``. For a diamond whose middle step
fails once and is retried after a backoff wait, and a workflow whose step fails for good, the
test checks every event against the catalogue (exactly its fields), the per-task order (each
step's lifecycle, parents before children, ``workflow.steps_ready`` after the enqueues it
names, the wait before the retry, the task's start first and its end last), and that each
step gets the same events as under the embedded engine running the same templates.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from tasker_core import SPEC_EVENTS_TOML, Config, Engine, Event, Registry, TaskRequest

from tasker_postgres.harness import Harness

HERE = Path(__file__).resolve().parent
RETRY = "retry: {retryable: true, max_attempts: 3, backoff: {base: 50ms, max: 1s}}"
TEMPLATES = {
    "diamond": [
        ("a", "ok", []),
        ("b", "ok", ["a"]),
        ("c", "flaky", ["a"]),
        ("d", "ok", ["b", "c"]),
    ],
    "doomed": [("a", "ok", []), ("bad", "permanent", ["a"]), ("after", "ok", ["bad"])],
}
PARENTS = {name: {step: deps for step, _, deps in steps} for name, steps in TEMPLATES.items()}
Record = dict[str, Any]


def _yaml(name: str, steps: list[tuple[str, str, list[str]]]) -> str:
    lines = [f"namespace: events\nname: {name}\nversion: 1.0.0\nsteps:"]
    for step, handler, deps in steps:
        ref = f"event_handlers:{handler}" if handler != "permanent" else "event_permanent:fail"
        lines.append(f"  - name: {step}\n    handler: {ref}")
        lines.append(f"    depends_on: [{', '.join(deps)}]\n    {RETRY}")
    return "\n".join(lines) + "\n"


def _install_plugins(root: Path) -> None:
    """The sink plugin as an installed distribution (entry point group ``tasker``), and a
    permanently failing handler."""
    info = root / "tasker_test_events-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: tasker-test-events\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text("[tasker]\ntestevents = event_handlers\n")
    (root / "event_permanent.py").write_text(
        "from tasker_core import PermanentError\n\n\n"
        "def fail(ctx):\n    raise PermanentError('this step cannot succeed')\n"
    )


def _catalogue() -> tuple[set[str], dict[str, set[str]]]:
    spec = tomllib.loads(SPEC_EVENTS_TOML)
    return set(spec["common"]["fields"]), {
        name: set(entry["fields"]) for name, entry in spec["events"].items()
    }


def _load(directory: Path) -> list[Record]:
    """Every event the worker processes published, in per-task order: by time (the time the
    transaction recorded), then by each process's own publication order."""
    found: list[tuple[float, int, int, Record]] = []
    for path in directory.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            found.append((r["event"]["time"], r["pid"], r["seq"], r["event"]))
    found.sort(key=lambda x: x[:3])
    return [x[3] for x in found]


def _embedded(templates: Path, tmp_path: Path) -> dict[str, list[Record]]:
    """The embedded engine's events for one task of each template (workflow -> events)."""
    engine = Engine(
        Config.from_mapping(
            {
                "store": {"url": "memory://"},
                "events": {"sinks": []},
                "backoff": {"base": "50ms", "max": "1s", "jitter": 0.0},
            }
        ),
        registry=Registry(),
    )
    got: list[Event] = []
    engine.subscribe("*", got.append)
    try:
        for path in sorted(templates.iterdir()):
            engine.load_template(path)
        for name in TEMPLATES:
            engine.run(TaskRequest("events", name), timeout=30)
        assert engine.flush_events(10)
    finally:
        engine.close()
    out: dict[str, list[Record]] = defaultdict(list)
    for event in got:
        out[event.workflow].append(event.to_dict())
    return out


def _per_step(events: list[Record]) -> dict[str, list[tuple[str, int]]]:
    out: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for e in events:
        if "step" in e:
            out[e["step"]].append((e["name"], e["attempt"]))
    return dict(out)


def _task_level(events: list[Record]) -> Counter[tuple[str, tuple[str, ...]]]:
    return Counter(
        (e["name"], tuple(sorted(e.get("steps", ())))) for e in events if "step" not in e
    )


def _check_step_lifecycle(step: str, seq: list[tuple[str, int]]) -> None:
    """enqueued(n), started(n), then completed(n) — or failed(n), and retry_scheduled(n)
    before enqueued(n + 1) — or failed(n) last."""
    i, attempt = 0, 1
    while True:
        assert seq[i : i + 2] == [("step.enqueued", attempt), ("step.started", attempt)], (
            step,
            seq,
        )
        outcome = seq[i + 2]
        if outcome == ("step.completed", attempt):
            assert i + 3 == len(seq), (step, seq)
            return
        assert outcome == ("step.failed", attempt), (step, seq)
        if i + 3 == len(seq):
            return
        assert seq[i + 3] == ("step.retry_scheduled", attempt), (step, seq)
        i, attempt = i + 4, attempt + 1


def _check_task(workflow: str, events: list[Record]) -> None:
    common, fields = _catalogue()
    for e in events:
        assert set(e) == common | fields[e["name"]], e
        if "attempt" in e:
            assert isinstance(e["attempt"], int) and e["attempt"] >= 1, e
        if "duration" in e:
            assert isinstance(e["duration"], float) and e["duration"] >= 0, e
    names = [e["name"] for e in events]
    assert names[0] == "task.started" and names.count("task.started") == 1, names
    assert names[-1] in ("task.completed", "task.failed"), names
    for step, seq in _per_step(events).items():
        _check_step_lifecycle(step, seq)
    done_at: dict[str, int] = {}
    for i, e in enumerate(events):
        if e["name"] == "step.completed":
            done_at[e["step"]] = i
        elif e["name"] == "step.enqueued" and e["attempt"] == 1:
            for parent in PARENTS[workflow][e["step"]]:
                assert done_at.get(parent, len(events)) < i, (e, names)
        elif e["name"] == "workflow.steps_ready":
            before = events[i - len(e["steps"]) : i]
            assert [b["name"] for b in before] == ["step.enqueued"] * len(e["steps"]), names
            assert sorted(b["step"] for b in before) == sorted(e["steps"]), (e, before)
        elif e["name"] == "step.retry_scheduled":
            assert e["retry_at"] >= e["time"] + 0.19, e
            assert e["error_class"] == "RetryableError", e
        elif e["name"] == "workflow.waiting":
            (scheduled,) = [x for x in events[:i] if x["name"] == "step.retry_scheduled"]
            assert e["retry_at"] == scheduled["retry_at"], (e, scheduled)
            resumed = next(x for x in events[i:] if x["name"] == "step.enqueued")
            assert (resumed["step"], resumed["attempt"]) == (scheduled["step"], 2)
            assert resumed["time"] >= e["retry_at"], (resumed, e)
    last = events[-1]
    if last["name"] == "task.completed":
        assert last["duration"] == pytest.approx(last["time"] - events[0]["time"], abs=5e-3)
    else:
        assert last["steps"] == ["bad"], last


def _worker(env: dict[str, str], templates: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tasker_core.cli", "worker", "-t", str(templates), "-n", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_worker_processes_publish_the_catalogue_lifecycle(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plugins, templates, published = tmp_path / "plugins", tmp_path / "templates", tmp_path / "ev"
    for d in (plugins, templates, published):
        d.mkdir()
    _install_plugins(plugins)
    for name, steps in TEMPLATES.items():
        (templates / f"{name}.yml").write_text(_yaml(name, steps))
    monkeypatch.syspath_prepend(str(HERE))
    monkeypatch.syspath_prepend(str(plugins))
    expected = _embedded(templates, tmp_path)

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugins), str(HERE), os.environ.get("PYTHONPATH", "")]),
        "TASKER_TEST_EVENTS": str(published),
        "TASKER__STORE__URL": pg_url,
        "TASKER__EVENTS__SINKS": '["testevents"]',
        "TASKER__EVENTS__FLUSH_INTERVAL": "10ms",
        "TASKER__BACKOFF__JITTER": "0",
        "TASKER__EXECUTION__POLL_INTERVAL": "200ms",
        "TASKER__LOGGING__LEVEL": "WARNING",
    }
    workers = [_worker(env, templates) for _ in range(2)]
    harness = Harness(pg_url)
    created: list[Event] = []
    try:
        engine = harness.engine()
        engine.subscribe("task.created", created.append)
        for path in sorted(templates.iterdir()):
            engine.load_template(path)
        ids = {engine.submit(TaskRequest("events", name)).id: name for name in TEMPLATES}
        tasks = harness.wait_done(engine, list(ids), timeout=60)
        assert {t.id: t.state for t in tasks} == {
            i: "complete" if n == "diamond" else "error" for i, n in ids.items()
        }
        assert engine.flush_events(10)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(30) for w in workers]
        stderr = [w.stderr.read().decode(errors="replace") if w.stderr else "" for w in workers]
        harness.close()
    assert codes == [0, 0], f"workers exited {codes}: {stderr}"
    assert sorted(e.task_id for e in created) == sorted(ids)

    by_task: dict[str, list[Record]] = defaultdict(list)
    for e in _load(published):
        by_task[e["task_id"]].append(e)
    assert set(by_task) == set(ids)
    for task_id, workflow in ids.items():
        events = by_task[task_id]
        assert all(e["workflow"] == workflow and e["namespace"] == "events" for e in events)
        _check_task(workflow, events)
        embedded = [e for e in expected[workflow] if e["name"] != "task.created"]
        _check_task(workflow, embedded)
        assert _per_step(events) == _per_step(embedded), workflow
        assert _task_level(events) == _task_level(embedded), workflow
