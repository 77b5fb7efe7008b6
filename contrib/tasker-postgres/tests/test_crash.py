"""Crash test: 4 worker processes, mixed workflows, workers SIGKILLed mid-run and restarted
(three kills: one worker slot twice, its restarted process included, and another once).

Afterwards every task is complete (or in error exactly where a handler demands it), every step
has at most one ``complete`` transition, every history is a legal path, no step ever ran in two
places at once (the handlers record each execution), and the killed workers' attempts were
counted as lost.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from pytest_tasker.history import assert_legal_history
from tasker_core import TaskRequest

from tasker_postgres.harness import Harness
from tasker_postgres.store import PostgresStore

HERE = Path(__file__).resolve().parent
RETRY = "retry: {retryable: true, max_attempts: 6, backoff: {base: 50ms, max: 500ms}}"


def _yaml(name: str, steps: list[tuple[str, str, list[str]]]) -> str:
    lines = [f"namespace: crash\nname: {name}\nversion: 1.0.0\nsteps:"]
    for step, handler, deps in steps:
        lines.append(f"  - name: {step}\n    handler: crash_handlers:{handler}")
        lines.append(f"    depends_on: [{', '.join(deps)}]\n    {RETRY}")
    return "\n".join(lines) + "\n"


SHAPES: dict[str, list[tuple[str, str, list[str]]]] = {
    "chain": [(f"s{i}", "work", [f"s{i - 1}"] if i else []) for i in range(5)],
    "diamond": [
        ("a", "work", []),
        ("b", "work", ["a"]),
        ("c", "flaky", ["a"]),
        ("d", "work", ["b", "c"]),
    ],
    "fanout": [
        ("root", "work", []),
        *((f"w{i}", "work", ["root"]) for i in range(20)),
        ("join", "work", [f"w{i}" for i in range(20)]),
    ],
    "failing": [
        ("a", "work", []),
        ("bad", "doomed", ["a"]),
        ("after", "work", ["bad"]),
        ("side", "flaky", ["a"]),
    ],
}
EXPECTED_FAILING = {"a": "complete", "bad": "error", "after": "pending", "side": "complete"}
TASKS_PER_SHAPE = 50


def _worker(env: dict[str, str], templates: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "tasker_core.cli", "worker", "-t", str(templates), "-n", "4"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.slow
def test_workers_killed_mid_run(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(HERE))  # submission resolves the handlers here too
    templates = tmp_path / "templates"
    records = tmp_path / "records"
    templates.mkdir()
    records.mkdir()
    for name, shape_steps in SHAPES.items():
        (templates / f"{name}.yml").write_text(_yaml(name, shape_steps))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "CRASH_RECORDS": str(records),
        "TASKER__STORE__URL": pg_url,
        "TASKER__EVENTS__SINKS": "[]",
        "TASKER__EXECUTION__LEASE": "1500ms",
        "TASKER__EXECUTION__HEARTBEAT_INTERVAL": "300ms",
        "TASKER__EXECUTION__POLL_INTERVAL": "200ms",
        "TASKER__LOGGING__LEVEL": "WARNING",
    }
    harness = Harness(pg_url)
    harness.config["identity"] = {"strategy": "none"}
    engine = harness.engine()
    for path in templates.iterdir():
        engine.load_template(path)
    ids: dict[str, str] = {}
    for i in range(TASKS_PER_SHAPE):
        for shape in SHAPES:
            ids[engine.submit(TaskRequest("crash", shape, context={"i": i})).id] = shape
    workers = [_worker(env, templates) for _ in range(4)]
    killed: dict[int, float] = {}
    try:
        for victim in (0, 1, 0):
            pid = workers[victim].pid
            _wait_until_busy(pg_url, pid)
            workers[victim].send_signal(signal.SIGKILL)
            workers[victim].wait(10)
            killed[pid] = time.time()
            workers[victim] = _worker(env, templates)
        tasks = harness.wait_done(engine, list(ids), timeout=180)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        codes = [w.wait(30) for w in workers]
        stderr = [w.stderr.read().decode(errors="replace") if w.stderr else "" for w in workers]
        harness.close()
    assert codes == [0, 0, 0, 0], f"workers exited {codes}: {stderr}"
    assert len(tasks) >= 200

    store = PostgresStore(pg_url, migrate=False)
    lost_attempts = 0
    try:
        for task in tasks:
            shape = ids[task.id]
            steps = {s.name: s for s in store.get_steps(task.id)}
            history = store.get_transitions(task.id)
            finals: dict[str | None, str] = {None: task.state}
            finals.update({name: s.state for name, s in steps.items()})
            assert_legal_history(history, finals)
            if shape == "failing":
                assert task.state == "error", task.id
                assert {n: s.state for n, s in steps.items()} == EXPECTED_FAILING
            else:
                assert task.state == "complete", (task.id, shape)
            completes: dict[str, int] = defaultdict(int)
            for t in history:
                if t.step is not None and t.to_state == "complete":
                    completes[t.step] += 1
                if t.reason == "lease lost":
                    lost_attempts += 1
            for name, s in steps.items():
                assert completes[name] == (1 if s.state == "complete" else 0), (task.id, name)
    finally:
        store.close()
    _check_executions(records, killed)
    assert lost_attempts >= 1, "killing busy workers should have lost at least one attempt"


def _wait_until_busy(url: str, pid: int, timeout: float = 60.0) -> None:
    """Block until worker ``pid`` holds at least two running steps (so a kill loses them)."""
    import psycopg

    from tasker_postgres.db import conninfo

    deadline = time.monotonic() + timeout
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM tasker_steps WHERE state = 'in_progress' "
                "AND lease_owner LIKE %s",
                (f"%:{pid}:%",),
            ).fetchone()
            if row and row[0] >= 2:
                return
            time.sleep(0.01)
    raise AssertionError(f"worker {pid} never ran two steps at once within {timeout}s")


def _check_executions(records: Path, killed: dict[int, float]) -> None:
    """No step ran in two places at once; each attempt ran at most once."""
    starts: dict[tuple[str, str, int, int], float] = {}
    ends: dict[tuple[str, str, int, int], float] = {}
    for path in records.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            try:
                r: dict[str, Any] = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by SIGKILL
            key = (r["task"], r["step"], r["attempt"], r["pid"])
            (starts if r["kind"] == "start" else ends)[key] = r["t"]
    runs: dict[tuple[str, str], list[tuple[float, float, int, int]]] = defaultdict(list)
    for key, begin in starts.items():
        task, step, attempt, pid = key
        end = ends.get(key)
        if end is None:
            assert pid in killed, f"{task}/{step} attempt {attempt} never ended in live pid {pid}"
            end = killed[pid]
        runs[(task, step)].append((begin, end, attempt, pid))
    for (task, step), spans in runs.items():
        attempts = [s[2] for s in spans]
        assert len(attempts) == len(set(attempts)), f"{task}/{step}: an attempt ran twice"
        spans.sort()
        for earlier, later in itertools.pairwise(spans):
            assert later[0] >= earlier[1], f"{task}/{step} ran in two places at once: {spans}"
