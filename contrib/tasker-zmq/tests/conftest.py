"""Fixtures for the tasker-zmq suite: real sockets on 127.0.0.1, bounded in time.

Helpers are fixtures returning callables (not an importable module) because the suite runs
with ``--import-mode=importlib`` next to other suites. Ports are never guessed: everything binds
``tcp://127.0.0.1:*`` and reports the port the OS picked.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from tasker_core import Config, Engine, StepTemplate, TaskTemplate

ANY_PORT = "tcp://127.0.0.1:*"
HERE = Path(__file__).resolve().parent
CATALOGUE = HERE.parents[2] / "spec" / "events.toml"
CLI = [sys.executable, "-m", "tasker_core.cli"]


_pending: dict[int, bytes] = {}


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The next stdout line of ``proc`` within ``timeout`` seconds (AssertionError otherwise).

    Reads the pipe's descriptor directly: the text wrapper's read-ahead would hide lines from
    ``select``.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + timeout
    buffer = _pending.pop(fd, b"")
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                _pending[fd] = buffer
                raise AssertionError(f"no output line from {proc.args!r} within {timeout}s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"{proc.args!r} ended (status {proc.wait(5)}): {buffer!r}")
            buffer += chunk
    line, rest = buffer.split(b"\n", 1)
    if rest:
        _pending[fd] = rest
    return line.decode() + "\n"


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 15) -> int:
    """Signal ``proc`` and wait for it; kill (and fail) if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        err = proc.stderr.read() if proc.stderr is not None else ""
        raise AssertionError(
            f"{proc.args!r} did not stop within {timeout}s of signal {sig}; stderr: {err}"
        ) from None


@pytest.fixture
def cli() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``tasker ARGS...`` as a subprocess with text pipes."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        # Only this plugin: the `events` commands need nothing else, and another plugin's
        # trouble should not fail this suite.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TASKER_LOAD_PLUGINS": "zmq"}
        proc = subprocess.Popen(
            [*CLI, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def proxy(cli: Callable[..., subprocess.Popen[str]]) -> Iterator[dict[str, Any]]:
    """``tasker events proxy`` on two free ports; yields its ready line (frontend, backend)."""
    proc = cli("events", "proxy", "--frontend", ANY_PORT, "--backend", ANY_PORT, "--json")
    ready = json.loads(read_line(proc, 60))
    yield {**ready, "process": proc}
    status = stop(proc)
    assert status == 0, proc.stderr.read() if proc.stderr else status
    assert proc.stderr is not None and "stopped after forwarding" in proc.stderr.read()


@pytest.fixture(scope="session")
def catalogue() -> dict[str, Any]:
    """spec/events.toml: the fields every event must carry."""
    with CATALOGUE.open("rb") as file:
        return tomllib.load(file)


@pytest.fixture
def check_fields(catalogue: dict[str, Any]) -> Callable[[Mapping[str, Any]], None]:
    """Assert one wire event carries the common fields and its own, per the catalogue."""
    common = catalogue["common"]["fields"]
    events = catalogue["events"]

    def check(event: Mapping[str, Any]) -> None:
        name = event["name"]
        key = "custom" if name.startswith("custom.") else name
        assert key in events, f"{name} is not in the catalogue"
        missing = [f for f in (*common, *events[key]["fields"]) if f not in event]
        assert not missing, f"{name} lacks {missing}: {event}"

    return check


def fanout_template(width: int, namespace: str = "zmq", name: str = "fan") -> TaskTemplate:
    steps = [StepTemplate("src", "zmq.noop")]
    steps += [StepTemplate(f"w{i}", "zmq.noop", ("src",)) for i in range(width)]
    return TaskTemplate(namespace, name, "1.0.0", tuple(steps))


@pytest.fixture
def make_engine() -> Iterator[Callable[..., Engine]]:
    """An engine on the memory store with the given sinks and a no-op fan-out template."""
    engines: list[Engine] = []

    def build(
        sinks: Sequence[Any], width: int = 3, events: Mapping[str, Any] | None = None
    ) -> Engine:
        config = Config.from_mapping(
            {
                "store": {"url": "memory://"},
                "events": {"sinks": [], **(events or {})},
                "execution": {"max_concurrent_steps": 4, "poll_interval": "10ms"},
            }
        )
        engine = Engine(config, sinks=list(sinks))
        engine.register_handler("zmq.noop", lambda ctx: None)
        engine.register_template(fanout_template(width))
        engines.append(engine)
        return engine

    yield build
    for engine in engines:
        engine.close()


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def eventually() -> Callable[[Callable[[], bool], float, str], None]:
    return wait_until


@pytest.fixture
def only_this_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process ``tasker`` runs load only this plugin (see :func:`cli`)."""
    monkeypatch.setenv("TASKER_LOAD_PLUGINS", "zmq")


@pytest.fixture
def next_line() -> Callable[[subprocess.Popen[str], float], str]:
    return read_line


@pytest.fixture
def stop_process() -> Callable[..., int]:
    return stop
