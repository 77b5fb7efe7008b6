"""The ``events.zmq`` configuration section, validated up front.

The kernel hands each sink its raw sub-section (``config.events.sink_options["zmq"]``); this
module turns it into :class:`ZmqOptions` or raises :class:`~tasker_core.ConfigError` naming the
key (``events.zmq.hwm``), so a typo stops the engine at start-up instead of silencing events.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
from tasker_core import Config, ConfigError, parse_duration

from tasker_zmq.wire import MAX_EVENTS

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "SECTION",
    "CurveOptions",
    "ZmqOptions",
    "check_endpoint",
]

SECTION = "events.zmq"
DEFAULT_FRONTEND = "tcp://127.0.0.1:5559"
"""Where publishers meet the proxy (``tasker events proxy --frontend``)."""
DEFAULT_BACKEND = "tcp://127.0.0.1:5560"
"""Where subscribers meet the proxy (``tasker events proxy --backend``)."""

_TCP = re.compile(r"tcp://(?P<host>\[[^\]]+\]|[^:/\[\]]+):(?P<port>\*|\d+)")


@attrs.frozen
class CurveOptions:
    """Key files for CURVE (ZeroMQ's authenticated encryption); paths as written in config.

    A sink that connects (``publish``) is a CURVE client: it needs the server's public key and
    its own key pair. A sink that binds is the server: it needs its own key pair, and may name a
    directory of client public keys allowed to subscribe (anyone holding the server's public key
    otherwise).
    """

    server_public_key: Path | None = None
    client_secret_key: Path | None = None
    server_secret_key: Path | None = None
    authorized_keys: Path | None = None


@attrs.frozen
class ZmqOptions:
    """Everything the ``zmq`` sink reads from ``events.zmq`` (see docs/events-wire-format.md)."""

    publish: str | None = None
    bind: str | None = None
    hwm: int = 10000
    linger: float = 1.0
    log_interval: float = 10.0
    curve: CurveOptions | None = None
    events_per_message: int = MAX_EVENTS
    """At most this many consecutive events of one name share a message; 1 sends each event
    alone (the wire format's first version, for consumers that predate coalescing)."""

    @property
    def endpoint(self) -> str:
        """The one address this sink uses: ``bind`` if set, else ``publish`` (or its default)."""
        return self.bind or self.publish or DEFAULT_FRONTEND

    @property
    def binds(self) -> bool:
        return self.bind is not None

    @classmethod
    def from_config(cls, config: Config) -> ZmqOptions:
        """The validated ``events.zmq`` section of ``config`` (defaults when it is absent)."""
        raw = config.events.sink_options.get("zmq") or {}
        return cls.from_mapping(raw, location=config.source or "")

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], location: str = "") -> ZmqOptions:
        """Validate a raw ``events.zmq`` mapping; ConfigError names the first bad key."""
        reader = _Reader(location)
        known = ("publish", "bind", "hwm", "linger", "log_interval", "curve", "events_per_message")
        reader.no_unknown(raw, known, SECTION)
        publish = reader.endpoint(raw, "publish", bind=False)
        bind = reader.endpoint(raw, "bind", bind=True)
        if publish is not None and bind is not None:
            raise reader.error(
                "set either events.zmq.publish (connect to a proxy) or events.zmq.bind "
                "(single process), not both",
                "bind",
            )
        hwm = reader.integer(raw, "hwm", 10000, minimum=1)
        linger = reader.duration(raw, "linger", 1.0)
        log_interval = reader.duration(raw, "log_interval", 10.0, positive=True)
        curve = reader.curve(raw.get("curve"), binds=bind is not None)
        per_message = reader.integer(raw, "events_per_message", MAX_EVENTS, minimum=1)
        return cls(publish, bind, hwm, linger, log_interval, curve, per_message)


def check_endpoint(address: str, *, bind: bool) -> str | None:
    """Why ``address`` is not a usable ZeroMQ endpoint, or None when it is.

    tcp://HOST:PORT and ipc://PATH only: inproc would only reach sockets of the sink's own
    private context, i.e. nobody. A ``*`` port (pick a free one) only makes sense for binding.
    """
    if address.startswith("ipc://"):
        return None if len(address) > len("ipc://") else "ipc:// needs a path"
    match = _TCP.fullmatch(address)
    if match is None:
        return "expected tcp://HOST:PORT or ipc://PATH"
    port = match["port"]
    if match["host"] == "*" and not bind:
        return "a connect address needs a host, not '*'"
    if port == "*":
        return None if bind else "a connect address needs a port number, not '*'"
    if not 0 < int(port) < 65536:
        return f"port {port} is out of range 1-65535"
    return None


class _Reader:
    """Reads one key at a time, raising ConfigError with the key's full path."""

    def __init__(self, location: str) -> None:
        self.location = location

    def error(self, message: str, *keys: str) -> ConfigError:
        return ConfigError(message, key_path=".".join((SECTION, *keys)), location=self.location)

    def no_unknown(self, raw: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(
                f"expected a mapping, got {raw!r}", key_path=path, location=self.location
            )
        for key in raw:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
                raise ConfigError(
                    f"unknown key {key!r}; {hint}", key_path=f"{path}.{key}", location=self.location
                )

    def endpoint(self, raw: Mapping[str, Any], key: str, *, bind: bool) -> str | None:
        value = raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.error(f"expected an address like 'tcp://127.0.0.1:5559', got {value!r}", key)
        problem = check_endpoint(value, bind=bind)
        if problem is not None:
            raise self.error(f"{value!r}: {problem}", key)
        return value

    def integer(self, raw: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(f"expected an integer, got {value!r}", key)
        if value < minimum:
            raise self.error(f"must be at least {minimum}, got {value}", key)
        return value

    def duration(
        self, raw: Mapping[str, Any], key: str, default: float, *, positive: bool = False
    ) -> float:
        try:
            seconds = parse_duration(raw.get(key, default))
        except ValueError as exc:
            raise self.error(str(exc), key) from None
        if positive and seconds <= 0:
            raise self.error(f"must be a positive duration, got {raw.get(key)!r}", key)
        return seconds

    def curve(self, raw: Any, *, binds: bool) -> CurveOptions | None:
        if raw is None:
            return None
        known = ("server_public_key", "client_secret_key", "server_secret_key", "authorized_keys")
        self.no_unknown(raw, known, f"{SECTION}.curve")
        paths: dict[str, Path | None] = {}
        for key in known:
            value = raw.get(key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise self.error(f"expected a file path, got {value!r}", "curve", key)
            paths[key] = Path(value) if value is not None else None
        needed: tuple[str, ...]
        unwanted: tuple[str, ...]
        if binds:
            needed, unwanted = ("server_secret_key",), ("server_public_key", "client_secret_key")
            mode = "a sink that binds is the CURVE server"
        else:
            needed = ("server_public_key", "client_secret_key")
            unwanted = ("server_secret_key", "authorized_keys")
            mode = "a sink that publishes to a proxy is a CURVE client"
        for key in needed:
            if paths[key] is None:
                raise self.error(f"is required: {mode}", "curve", key)
        for key in unwanted:
            if paths[key] is not None:
                raise self.error(f"does not apply: {mode}", "curve", key)
        for key, path in paths.items():
            if path is None:
                continue
            exists = path.is_dir() if key == "authorized_keys" else path.is_file()
            if not exists:
                kind = "directory" if key == "authorized_keys" else "file"
                raise self.error(f"no such {kind}: {str(path)!r}", "curve", key)
        return CurveOptions(**paths)
