"""`tasker events tail | proxy | keygen` as a user runs them: real subprocesses and signals."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from tasker_core import TaskRequest
from tasker_core.cli import main

from tasker_zmq import ZmqOptions, ZmqSink

Start = Callable[..., subprocess.Popen[str]]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_tail_stops_cleanly_on_a_signal(
    cli: Start, stop_process: Callable[..., int], sig: int
) -> None:
    sink = ZmqSink(ZmqOptions(bind="tcp://127.0.0.1:*"))
    try:
        tail = cli("events", "tail", "--connect", sink.endpoint)
        assert sink.wait_for_subscriptions([""], timeout=60)  # it runs and has subscribed
        started = time.monotonic()
        assert stop_process(tail, sig) == 0
        assert time.monotonic() - started < 5
        assert tail.stderr is not None and "Traceback" not in tail.stderr.read()
    finally:
        sink.close()


def test_tail_count_and_timeout(cli: Start, proxy: Mapping[str, Any]) -> None:
    tail = cli(
        "events", "tail", "--connect", proxy["backend"], "--count", "1", "--timeout", "300ms"
    )
    _, err = tail.communicate(timeout=60)
    assert tail.returncode == 1
    assert "timed out after 0 of 1 events" in err
    quiet = cli("events", "tail", "--connect", proxy["backend"], "--timeout", "100ms")
    assert quiet.wait(60) == 0


def test_tail_prints_readable_lines_and_exits_after_count(
    cli: Start,
    next_line: Callable[[subprocess.Popen[str], float], str],
    make_engine: Callable[..., Any],
) -> None:
    sink = ZmqSink(ZmqOptions(bind="tcp://127.0.0.1:*"))
    tail = cli(
        "events",
        "tail",
        "--connect",
        sink.endpoint,
        "--filter",
        "step.completed",
        "--count",
        "2",
        "--timeout",
        "60s",
    )
    try:
        assert sink.wait_for_subscriptions(["step.completed"], timeout=60)
        engine = make_engine([sink], width=3)
        engine.run(TaskRequest("zmq", "fan"), timeout=60)
        lines = [next_line(tail, 30) for _ in range(2)]
        assert tail.wait(30) == 0
    finally:
        sink.close()
    assert all(" step.completed " in line and "zmq/fan@1.0.0" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tail", "--connect", "tcp://127.0.0.1:*"], "needs a port number"),
        (["tail", "--connect", "nonsense"], "expected tcp://HOST:PORT"),
        (["tail", "--server-key", "x.key"], "both --server-key and --client-key"),
        (["proxy", "--frontend", "udp://x:1"], "--frontend"),
        (["proxy", "--subscribers", "/no/such/dir"], "is not a directory"),
        (["proxy", "--server-key", "/no/such.key_secret"], "cannot read CURVE key file"),
    ],
)
@pytest.mark.usefixtures("only_this_plugin")
def test_bad_input_is_one_line_and_status_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_proxy_refuses_a_port_in_use(cli: Start, proxy: Mapping[str, Any]) -> None:
    clash = cli(
        "events", "proxy", "--frontend", proxy["frontend"], "--backend", "tcp://127.0.0.1:*"
    )
    _, err = clash.communicate(timeout=60)
    assert clash.returncode == 2
    assert "Address already in use" in err


@pytest.mark.usefixtures("only_this_plugin")
def test_keygen_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["events", "keygen", str(tmp_path), "--name", "w1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["public"] == str(tmp_path / "w1.key")
    assert out["secret"] == str(tmp_path / "w1.key_secret")
    assert len(out["public_key"]) == 40
    assert main(["events", "keygen", str(tmp_path), "--name", "w1", "--force"]) == 0
