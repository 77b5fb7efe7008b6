"""``events.zmq`` validation: every bad value fails naming its key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tasker_core import Config, ConfigError, parse_duration

from tasker_zmq.options import (
    DEFAULT_FRONTEND,
    ZmqOptions,
    check_endpoint,
)


def failure(raw: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        ZmqOptions.from_mapping(raw)
    return caught.value


def test_defaults_publish_to_the_proxy_on_loopback() -> None:
    options = ZmqOptions.from_config(Config.from_mapping({"events": {"sinks": ["zmq"]}}))
    assert options == ZmqOptions()
    assert options.endpoint == DEFAULT_FRONTEND
    assert options.endpoint.startswith("tcp://127.0.0.1:")
    assert (options.hwm, options.linger, options.curve) == (10000, 1.0, None)
    assert options.events_per_message == 16


def test_the_section_comes_from_the_config_file(tmp_path: Path) -> None:
    file = tmp_path / "tasker.yaml"
    file.write_text(
        "default:\n  events:\n    sinks: [log, zmq]\n"
        "    zmq:\n      bind: tcp://127.0.0.1:7000\n      hwm: 50\n      linger: 250ms\n"
    )
    from tasker_core import load_config

    options = ZmqOptions.from_config(load_config(file, env={}))
    assert (options.bind, options.hwm, options.linger) == ("tcp://127.0.0.1:7000", 50, 0.25)
    assert options.binds and options.endpoint == "tcp://127.0.0.1:7000"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"publsh": "tcp://127.0.0.1:1"}, "events.zmq.publsh"),
        ({"publish": 5559}, "events.zmq.publish"),
        ({"publish": "udp://127.0.0.1:1"}, "events.zmq.publish"),
        ({"publish": "tcp://127.0.0.1:*"}, "events.zmq.publish"),
        ({"bind": "tcp://127.0.0.1:70000"}, "events.zmq.bind"),
        ({"bind": "inproc://x"}, "events.zmq.bind"),
        ({"publish": "tcp://a:1", "bind": "tcp://b:2"}, "events.zmq.bind"),
        ({"hwm": 0}, "events.zmq.hwm"),
        ({"events_per_message": 0}, "events.zmq.events_per_message"),
        ({"events_per_message": 2.5}, "events.zmq.events_per_message"),
        ({"hwm": "10"}, "events.zmq.hwm"),
        ({"hwm": True}, "events.zmq.hwm"),
        ({"linger": "soon"}, "events.zmq.linger"),
        ({"linger": -1}, "events.zmq.linger"),
        ({"log_interval": 0}, "events.zmq.log_interval"),
        ({"curve": "yes"}, "events.zmq.curve"),
        ({"curve": {"server_key": "x"}}, "events.zmq.curve.server_key"),
        ({"curve": {"client_secret_key": "c"}}, "events.zmq.curve.server_public_key"),
        ({"curve": {"server_public_key": 3}}, "events.zmq.curve.server_public_key"),
    ],
)
def test_bad_values_name_their_key(raw: dict[str, Any], key: str) -> None:
    assert failure(raw).key_path == key


def test_an_unknown_key_suggests_the_likely_one() -> None:
    assert "did you mean 'publish'?" in str(failure({"publsh": "tcp://127.0.0.1:1"}))


def test_curve_keys_must_fit_the_role_and_exist(tmp_path: Path) -> None:
    key = tmp_path / "k.key"
    key.write_text("x")
    client = {"server_public_key": str(key), "client_secret_key": str(key)}
    assert ZmqOptions.from_mapping({"curve": client}).curve is not None
    assert failure({"bind": "tcp://127.0.0.1:1", "curve": client}).key_path == (
        "events.zmq.curve.server_secret_key"
    )
    server = {"server_secret_key": str(key), "authorized_keys": str(tmp_path / "missing")}
    error = failure({"bind": "tcp://127.0.0.1:1", "curve": server})
    assert error.key_path == "events.zmq.curve.authorized_keys"
    assert "no such directory" in str(error)
    missing = {"server_public_key": str(tmp_path / "nope"), "client_secret_key": str(key)}
    assert failure({"curve": missing}).key_path == "events.zmq.curve.server_public_key"
    assert failure({"curve": {**client, "server_secret_key": str(key)}}).key_path == (
        "events.zmq.curve.server_secret_key"
    )


hosts = st.sampled_from(["127.0.0.1", "localhost", "bus.internal", "[::1]", "*", "eth0"])


@given(host=hosts, port=st.integers(1, 65535), bind=st.booleans())
def test_tcp_endpoints_with_a_port_in_range_are_accepted(host: str, port: int, bind: bool) -> None:
    problem = check_endpoint(f"tcp://{host}:{port}", bind=bind)
    if host == "*" and not bind:
        assert problem is not None and "needs a host" in problem
    else:
        assert problem is None


@given(
    host=hosts.filter(lambda h: h != "*"),
    port=st.one_of(st.integers(65536, 10**6), st.just(0)),
    bind=st.booleans(),
)
def test_ports_out_of_range_are_refused(host: str, port: int, bind: bool) -> None:
    assert "out of range" in (check_endpoint(f"tcp://{host}:{port}", bind=bind) or "")


@given(bind=st.booleans())
def test_a_wildcard_port_is_only_for_binding(bind: bool) -> None:
    assert (check_endpoint("tcp://127.0.0.1:*", bind=bind) is None) == bind


@given(text=st.text(max_size=30).filter(lambda t: not t.startswith(("tcp://", "ipc://"))))
def test_other_schemes_are_refused(text: str) -> None:
    assert check_endpoint(text, bind=True) is not None


units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}


@given(number=st.integers(0, 10**6), unit=st.sampled_from(sorted(units)))
def test_durations_scale_by_their_unit(number: int, unit: str) -> None:
    assert parse_duration(f"{number}{unit}") == pytest.approx(number * units[unit])


@given(seconds=st.floats(0, 1e9))
def test_numbers_are_seconds(seconds: float) -> None:
    assert parse_duration(seconds) == seconds


@pytest.mark.parametrize("value", ["-1s", "1 day", "", "1s2", float("nan"), float("inf"), None])
def test_non_durations_are_refused(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)
