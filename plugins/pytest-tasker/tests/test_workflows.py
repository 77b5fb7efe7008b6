"""Workflow strategies: templates load, behaviours do what they say, invalid templates fail
as declared, and an engine run ends exactly as ``expected_states`` predicts."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tasker_core import Config, Engine, ManualClock, PermanentError, RetryableError, TaskRequest
from tasker_core.templates import template_from_mapping

from pytest_tasker import assert_legal_history
from pytest_tasker.plugin import examples
from pytest_tasker.workflows import (
    SHAPES,
    Behaviour,
    InvalidTemplate,
    WorkflowCase,
    invalid_templates,
    named_shapes,
    workflow_cases,
    workflow_templates,
)

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


@given(workflow_templates(max_steps=25, max_width=4, max_depth=5))
@settings(suppress_health_check=SLOW)
def test_random_templates_load_and_respect_limits(mapping: dict[str, Any]) -> None:
    template = template_from_mapping(mapping)
    assert len(template.steps) == len(mapping["steps"]) >= 1


@pytest.mark.parametrize("shape", sorted(SHAPES))
@given(data=st.data())
@settings(max_examples=examples(0.1), suppress_health_check=SLOW)
def test_named_shapes_load(shape: str, data: st.DataObject) -> None:
    mapping = data.draw(workflow_templates(named_shapes(shape)))
    assert template_from_mapping(mapping).steps


def test_unknown_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown shape 'ring'"):
        named_shapes("ring")


class _Ctx:
    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.step = "s"


def test_behaviours_are_real_handlers() -> None:
    assert Behaviour("succeed").handler()(_Ctx(1)) == {"step": "s", "ok": True}  # type: ignore[arg-type]
    flaky = Behaviour("flaky", failures=2).handler()
    for attempt in (1, 2):
        with pytest.raises(RetryableError):
            flaky(_Ctx(attempt))  # type: ignore[arg-type]
    assert flaky(_Ctx(3)) == {"step": "s", "ok": True}  # type: ignore[arg-type]
    with pytest.raises(PermanentError):
        Behaviour("fail").handler()(_Ctx(9))  # type: ignore[arg-type]
    big = Behaviour("large", size=50_000).handler()(_Ctx(1))  # type: ignore[arg-type]
    assert len(big["blob"]) == 50_000


@given(invalid_templates())
@settings(suppress_health_check=SLOW)
def test_invalid_templates_fail_as_declared(case: InvalidTemplate) -> None:
    with pytest.raises(case.error) as info:
        template_from_mapping(case.mapping)
    assert re.search(case.match, str(info.value)), (case.kind, str(info.value))
    if case.cause is not None:
        assert isinstance(info.value.__cause__, case.cause), case.kind


@given(workflow_cases())
@settings(max_examples=examples(0.1), deadline=None, suppress_health_check=SLOW)
def test_engine_reaches_the_predicted_outcome(case: WorkflowCase) -> None:
    config = Config.from_mapping(
        {
            "store": {"url": "memory://"},
            "events": {"sinks": []},
            "backoff": {"base": "1s", "max": "1s", "jitter": 0.0},
        }
    )
    engine = Engine(config, clock=ManualClock())
    try:
        for name, fn in case.handlers.items():
            engine.register_handler(name, fn)
        engine.register_template(template_from_mapping(case.template))
        task = engine.run(TaskRequest(case.template["namespace"], case.template["name"]))
        states = {s.name: s.state for s in engine.get_steps(task.id)}
        assert states == case.expected
        assert task.state == case.expected_task
        finals: dict[str | None, str] = {None: task.state}
        finals.update(states)
        assert_legal_history(engine.transitions(task.id), finals)
    finally:
        engine.close()
