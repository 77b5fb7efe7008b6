"""tasker-zmq: a ZeroMQ event bus for tasker.

Each engine's ``zmq`` sink publishes lifecycle events as ``[name, JSON lines]`` messages (each
one or more consecutive events of that name); ``tasker events proxy`` joins many publishers to
many subscribers; ``tasker events tail`` prints them.
The wire format is documented in docs/events-wire-format.md; the README has the set-up.

Names are imported on first use (PEP 562), so loading the plugin does not import ZeroMQ.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasker_zmq.keys import KeyPair, load_public_key, load_secret_key, write_keypair
    from tasker_zmq.options import DEFAULT_BACKEND, DEFAULT_FRONTEND, CurveOptions, ZmqOptions
    from tasker_zmq.proxy import Proxy, ProxyCounters
    from tasker_zmq.sink import ZmqSink
    from tasker_zmq.tail import Subscriber, format_event
    from tasker_zmq.wire import WireError, decode, encode, encode_messages

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "DEFAULT_BACKEND": "tasker_zmq.options",
    "DEFAULT_FRONTEND": "tasker_zmq.options",
    "CurveOptions": "tasker_zmq.options",
    "KeyPair": "tasker_zmq.keys",
    "Proxy": "tasker_zmq.proxy",
    "ProxyCounters": "tasker_zmq.proxy",
    "Subscriber": "tasker_zmq.tail",
    "WireError": "tasker_zmq.wire",
    "ZmqOptions": "tasker_zmq.options",
    "ZmqSink": "tasker_zmq.sink",
    "decode": "tasker_zmq.wire",
    "encode": "tasker_zmq.wire",
    "encode_messages": "tasker_zmq.wire",
    "format_event": "tasker_zmq.tail",
    "load_public_key": "tasker_zmq.keys",
    "load_secret_key": "tasker_zmq.keys",
    "write_keypair": "tasker_zmq.keys",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasker_zmq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_FRONTEND",
    "CurveOptions",
    "KeyPair",
    "Proxy",
    "ProxyCounters",
    "Subscriber",
    "WireError",
    "ZmqOptions",
    "ZmqSink",
    "__version__",
    "decode",
    "encode",
    "encode_messages",
    "format_event",
    "load_public_key",
    "load_secret_key",
    "write_keypair",
]
