"""The ``log`` event sink: lifecycle events to the ``tasker.events`` logger.

Task events log at INFO, step and workflow events at DEBUG, failures at WARNING, so the default
configuration tells an operator what happened to each task without a line per step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from tasker_core.models import Event
from tasker_core.plugin import hookimpl

_log = logging.getLogger("tasker.events")

_WARN = frozenset({"task.failed", "step.failed"})


class LogSink:
    name = "log"

    def __init__(self, logger: logging.Logger = _log) -> None:
        self._logger = logger

    def publish(self, events: Sequence[Event]) -> None:
        logger = self._logger
        for event in events:
            level = (
                logging.WARNING
                if event.name in _WARN
                else logging.INFO
                if event.name.startswith("task.")
                else logging.DEBUG
            )
            if logger.isEnabledFor(level):
                extra = " ".join(f"{k}={v}" for k, v in event.data.items())
                logger.log(
                    level, "%s task=%s %s %s", event.name, event.task_id, event.workflow, extra
                )

    def close(self) -> None:
        return None


def _make_log_sink(config: Any) -> LogSink:
    return LogSink()


@hookimpl
def tasker_register_event_sinks(register: Any) -> None:
    register("log", _make_log_sink)
