"""CURVE: only subscribers holding the right keys receive anything; only allowed publishers
reach the bus. Keys come from `tasker events keygen` (the CLI, in-process)."""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.auth
from tasker_core import Engine, Event, TaskRequest
from tasker_core.cli import main

from tasker_zmq import Proxy, Subscriber, ZmqOptions, ZmqSink, load_public_key, load_secret_key

ANY_PORT = "tcp://127.0.0.1:*"
QUIET = 1.0  # how long an unauthorised subscriber is given to (not) receive anything


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """server, worker, reader and stranger key pairs; reader and worker are allowed."""
    directory = tmp_path / "keys"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKER_LOAD_PLUGINS", "zmq")  # the keygen command needs only this plugin
        for name in ("server", "worker", "reader", "stranger"):
            assert main(["events", "keygen", str(directory), "--name", name]) == 0
    for side, name in (("publishers", "worker"), ("subscribers", "reader")):
        (directory / side).mkdir()
        (directory / side / f"{name}.key").write_bytes((directory / f"{name}.key").read_bytes())
    return directory


@pytest.fixture
def proxy(keys: Path) -> Iterator[Proxy]:
    running = Proxy(
        ANY_PORT,
        ANY_PORT,
        server_key=load_secret_key(keys / "server.key_secret"),
        publishers=keys / "publishers",
        subscribers=keys / "subscribers",
    )
    running.start()
    yield running
    running.stop()


def keyed(keys: Path, connect: str, name: str, server: str = "server") -> Subscriber:
    return Subscriber(
        connect,
        server_key=load_public_key(keys / f"{server}.key"),
        client_key=load_secret_key(keys / f"{name}.key_secret"),
    )


def publisher(keys: Path, frontend: str, name: str) -> ZmqSink:
    return ZmqSink(
        ZmqOptions.from_mapping(
            {
                "publish": frontend,
                "curve": {
                    "server_public_key": str(keys / "server.key"),
                    "client_secret_key": str(keys / f"{name}.key_secret"),
                },
            }
        )
    )


def run_task(make_engine: Callable[..., Engine], sink: ZmqSink) -> list[Event]:
    engine = make_engine([sink], width=3)
    recorded: list[Event] = []
    engine.subscribe("*", recorded.append)
    assert engine.run(TaskRequest("zmq", "fan"), timeout=60).state == "complete"
    engine.close()
    return recorded


def receive(subscriber: Subscriber, n: int, timeout: float) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        event = subscriber.receive(0.1)
        if event is not None:
            got.append(event)
    return got


def test_keygen_writes_certificates_with_a_private_secret(keys: Path) -> None:
    public, secret = keys / "server.key", keys / "server.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert "secret-key" not in public.read_text()
    pub_key, none = zmq.auth.load_certificate(public)
    same_pub, secret_key = zmq.auth.load_certificate(secret)
    assert none is None and pub_key == same_pub and secret_key is not None
    assert zmq.curve_public(secret_key) == pub_key
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKER_LOAD_PLUGINS", "zmq")
        assert main(["events", "keygen", str(keys), "--name", "server"]) == 2  # no overwrite


def test_only_the_keyed_subscriber_receives_events(
    keys: Path, proxy: Proxy, make_engine: Callable[..., Engine]
) -> None:
    frontend, backend = proxy.endpoints
    reader = keyed(keys, backend, "reader")
    stranger = keyed(keys, backend, "stranger")  # right server key, not on the allow-list
    wrong_server = keyed(keys, backend, "reader", server="stranger")
    unkeyed = Subscriber(backend)
    sink = publisher(keys, frontend, "worker")
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        recorded = run_task(make_engine, sink)
        got = receive(reader, len(recorded), timeout=20)
        assert got == [event.to_dict() for event in recorded]
        for other in (stranger, wrong_server, unkeyed):
            assert receive(other, 1, timeout=QUIET) == []
    finally:
        for subscriber in (reader, stranger, wrong_server, unkeyed):
            subscriber.close()


def test_a_publisher_off_the_allow_list_cannot_inject_events(
    keys: Path, proxy: Proxy, make_engine: Callable[..., Engine]
) -> None:
    frontend, backend = proxy.endpoints
    reader = keyed(keys, backend, "reader")
    intruder = publisher(keys, frontend, "stranger")
    try:
        # The proxy refuses the handshake, so not even the subscription reaches the intruder.
        assert not intruder.wait_for_subscriptions([""], timeout=QUIET)
        run_task(make_engine, intruder)
        assert receive(reader, 1, timeout=QUIET) == []
        assert intruder.stats()["sent"] == 0
    finally:
        reader.close()


def test_a_bound_sink_is_the_curve_server(keys: Path, make_engine: Callable[..., Engine]) -> None:
    sink = ZmqSink(
        ZmqOptions.from_mapping(
            {
                "bind": ANY_PORT,
                "curve": {
                    "server_secret_key": str(keys / "server.key_secret"),
                    "authorized_keys": str(keys / "subscribers"),
                },
            }
        )
    )
    reader = keyed(keys, sink.endpoint, "reader")
    stranger = keyed(keys, sink.endpoint, "stranger")
    unkeyed = Subscriber(sink.endpoint)
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        recorded = run_task(make_engine, sink)
        assert receive(reader, len(recorded), timeout=20) == [e.to_dict() for e in recorded]
        assert receive(stranger, 1, timeout=QUIET) == []
        assert receive(unkeyed, 1, timeout=QUIET) == []
    finally:
        for subscriber in (reader, stranger, unkeyed):
            subscriber.close()
