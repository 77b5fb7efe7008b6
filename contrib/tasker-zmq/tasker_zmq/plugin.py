"""The tasker plugin (entry point ``zmq``): the ``zmq`` event sink and ``tasker events``.

Enable the sink with ``events.sinks: [log, zmq]`` and configure it under ``events.zmq``. This
module stays import-light (no ZeroMQ) because every ``tasker`` invocation loads it.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tasker_core import Config
from tasker_core.plugin import RegisterEventSink, hookimpl

from tasker_zmq.commands import add_commands

if TYPE_CHECKING:
    from tasker_zmq.sink import ZmqSink

__all__ = ["make_sink", "tasker_add_cli_commands", "tasker_register_event_sinks"]


def make_sink(config: Config) -> ZmqSink:
    """Build the sink from ``events.zmq``; ConfigError names the bad key."""
    from tasker_zmq.options import ZmqOptions
    from tasker_zmq.sink import ZmqSink

    return ZmqSink(ZmqOptions.from_config(config))


@hookimpl
def tasker_register_event_sinks(register: RegisterEventSink) -> None:
    """Offer the ``zmq`` sink."""
    register("zmq", make_sink)


@hookimpl
def tasker_add_cli_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``tasker events tail|proxy|keygen``."""
    add_commands(subparsers)
