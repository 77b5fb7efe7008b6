"""Handlers and an event sink plugin for the lifecycle-event tests' worker processes.

The sink (``testevents``) appends every event it receives, as JSON with this process's id and
a sequence number, to ``$TASKER_TEST_EVENTS/<pid>.jsonl``; the test loads the plugin through a
``*.dist-info`` entry point it writes next to this module, like any installed plugin.
"""

from __future__ import annotations

import itertools
import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from tasker_core import Config, Event, RetryableError, StepContext
from tasker_core.plugin import hookimpl

SLOW_FAIL = 0.3
"""How long the flaky step's first attempt runs before failing (the other branch is done by
then, so the task waits for the retry: ``workflow.waiting`` in every engine)."""
RETRY_AFTER = 0.2


def ok(ctx: StepContext) -> str:
    return ctx.step


def flaky(ctx: StepContext) -> str:
    if ctx.attempt == 1:
        time.sleep(SLOW_FAIL)
        raise RetryableError("the first attempt always fails", retry_after=RETRY_AFTER)
    return ctx.step


class FileSink:
    name = "testevents"

    def __init__(self, directory: str) -> None:
        self._path = os.path.join(directory, f"{os.getpid()}.jsonl")
        self._seq = itertools.count()
        self._lock = threading.Lock()

    def publish(self, events: Sequence[Event]) -> None:
        with self._lock, open(self._path, "a", encoding="utf-8") as out:
            for event in events:
                line = {"pid": os.getpid(), "seq": next(self._seq), "event": event.to_dict()}
                out.write(json.dumps(line) + "\n")

    def close(self) -> None:
        return None


def _make_sink(config: Config) -> FileSink:
    return FileSink(os.environ["TASKER_TEST_EVENTS"])


@hookimpl
def tasker_register_event_sinks(register: Any) -> None:
    register("testevents", _make_sink)
