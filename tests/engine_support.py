"""Helpers shared by the engine tests: building engines on a controlled clock, and the one
assertion that every recorded history is a legal path of the spec's state tables (which lives in
the conformance kit, ``pytest_tasker.assert_legal_history``, and is re-exported here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pytest_tasker import assert_legal_history

from tasker_core import Clock, Config, Engine, ManualClock
from tasker_core.models import Event
from tasker_core.protocols import Store
from tasker_core.registry import Registry
from tasker_core.templates import template_from_mapping

__all__ = [
    "Recorder",
    "assert_legal_history",
    "check_task_history",
    "make_config",
    "make_engine",
    "workflow",
]


def make_config(**sections: Mapping[str, Any]) -> Config:
    data: dict[str, Any] = {
        "store": {"url": "memory://"},
        "events": {"sinks": []},
        "execution": {"max_concurrent_steps": 4, "poll_interval": "50ms"},
        "backoff": {"base": "1s", "max": "60s", "jitter": 0.0},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Config.from_mapping(data)


def workflow(
    name: str,
    steps: Iterable[Mapping[str, Any]],
    namespace: str = "test",
    version: str = "1.0.0",
    **extra: Any,
) -> dict[str, Any]:
    return {"namespace": namespace, "name": name, "version": version, "steps": list(steps), **extra}


def make_engine(
    templates: Iterable[Mapping[str, Any]],
    handlers: Mapping[str, Callable[..., Any]],
    *,
    clock: Clock | None = None,
    store: Store | None = None,
    **sections: Mapping[str, Any],
) -> Engine:
    registry = Registry()
    for name, fn in handlers.items():
        registry.register_handler(name, fn)
    engine = Engine(
        make_config(**sections),
        clock=clock if clock is not None else ManualClock(),
        registry=registry,
        store=store,
    )
    for data in templates:
        engine.register_template(template_from_mapping(data))
    return engine


def check_task_history(engine: Engine, task_id: str) -> None:
    task = engine.get_task(task_id)
    finals: dict[str | None, str] = {None: task.state}
    finals.update({s.name: s.state for s in engine.get_steps(task_id)})
    assert_legal_history(engine.transitions(task_id), finals)


class Recorder:
    """Collects events from ``engine.subscribe``."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def names(self, step: str | None = None) -> list[str]:
        return [e.name for e in self.events if step is None or e.data.get("step") == step]
