"""A real `tasker run` killed with SIGKILL mid-step, then `tasker resume`: nothing completed runs
again, the lost attempt is recorded, and the task finishes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from engine_support import assert_legal_history

from tasker_core import Config, Engine, TaskState

TEMPLATE = """\
namespace: crash
name: flow
version: 1.0.0
steps:
  - name: first
    handler: crash_handlers:record
  - name: second
    handler: crash_handlers:record
    depends_on: [first]
  - name: slow
    handler: crash_handlers:slow
    depends_on: [second]
    retry: {max_attempts: 3, backoff: {base: 10ms}}
  - name: last
    handler: crash_handlers:record
    depends_on: [slow]
"""

HANDLERS = """\
import os, time
from pathlib import Path

LOG = Path(os.environ["CRASH_LOG"])

def _log(ctx, what):
    with LOG.open("a") as f:
        f.write(f"{ctx.step} {ctx.attempt} {os.getpid()} {what}\\n")

def record(ctx):
    _log(ctx, "ran")
    return ctx.step

def slow(ctx):
    _log(ctx, "started")
    if ctx.attempt == 1:
        time.sleep(120)  # killed here
    return "slow done"
"""


def tasker(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tasker_core.cli", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


@pytest.mark.slow
def test_sigkill_mid_step_then_resume_finishes_without_rerunning(tmp_path: Path) -> None:
    (tmp_path / "flow.yml").write_text(TEMPLATE)
    (tmp_path / "crash_handlers.py").write_text(textwrap.dedent(HANDLERS))
    log = tmp_path / "log.txt"
    log.touch()
    env = {
        **os.environ,
        "CRASH_LOG": str(log),
        "TASKER_LOAD_PLUGINS": "memory,sqlite,inprocess,log",
    }

    run = tasker(tmp_path, "run", "crash/flow", "--template", "flow.yml", env=env)
    wait_for(lambda: "slow 1" in log.read_text(), 60)
    os.kill(run.pid, signal.SIGKILL)
    run.wait(10)
    assert run.returncode == -signal.SIGKILL

    resume = tasker(tmp_path, "--json", "resume", "--template", "flow.yml", env=env)
    out, err = resume.communicate(timeout=120)
    assert resume.returncode == 0, err

    lines = [line.split() for line in log.read_text().splitlines()]
    runs = [(step, int(attempt)) for step, attempt, _pid, _ in lines]
    assert runs.count(("first", 1)) == 1 and runs.count(("second", 1)) == 1
    assert [a for s, a in runs if s == "first" or s == "second"] == [1, 1]
    assert ("slow", 1) in runs and ("slow", 2) in runs and ("last", 1) in runs
    pids = {step: {pid for s, _a, pid, _w in lines if s == step} for step in ("first", "last")}
    assert pids["first"] != pids["last"], "the resumed steps ran in the new process"

    config = Config.from_mapping({"store": {"url": f"sqlite:///{tmp_path}/.tasker/tasker.db"}})
    engine = Engine(config)
    try:
        engine.load_template(tmp_path / "flow.yml")
        [task] = engine.list_tasks()
        assert task.state == TaskState.COMPLETE
        steps = {s.name: s for s in engine.get_steps(task.id)}
        assert steps["slow"].attempts == 2 and steps["slow"].results == "slow done"
        assert steps["first"].attempts == 1 and steps["second"].attempts == 1
        history = engine.transitions(task.id)
        lost = [t for t in history if t.step == "slow" and t.to_state == "error"]
        assert len(lost) == 1 and lost[0].reason == "lease lost"
        assert lost[0].metadata["attempt"] == 1
        finals: dict[str | None, str] = {None: task.state}
        finals.update({s.name: s.state for s in steps.values()})
        assert_legal_history(history, finals)
        summary = json.loads(out)
        assert summary, "resume --json printed its summary"
    finally:
        engine.close()
