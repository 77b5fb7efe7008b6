"""The reference model (pytest_tasker.reference) passes every conformance case in spec/cases/.

The model reads the repository's spec/states.toml here, not the text embedded in the native
module, so these tests judge the spec, the cases and the model without the native build.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from pytest_tasker.reference import RefGraph, RefStateMachine, backoff_delay, jitter_fraction

import tasker_core.errors as errors

SPEC = Path(__file__).resolve().parents[2] / "spec"
CASES = SPEC / "cases"
SPEC_TEXT = (SPEC / "states.toml").read_text(encoding="utf-8")
MACHINES = {kind: RefStateMachine(kind, SPEC_TEXT) for kind in ("task", "step")}


def load(file: str, key: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CASES / file).read_text(encoding="utf-8"))[key]
    return cases


def case_id(case: dict[str, Any]) -> str:
    return str(case.get("name", ""))


def error_class(name: str) -> type[Exception]:
    """The exception class a case names: one of tasker_core.errors, or ValueError."""
    if name == "ValueError":
        return ValueError
    found = getattr(errors, name, None)
    assert isinstance(found, type) and issubclass(found, errors.TaskerError), name
    return found


def build(steps: list[dict[str, Any]]) -> RefGraph:
    return RefGraph(
        [s["name"] for s in steps],
        [s["depends_on"] for s in steps],
        step_machine=MACHINES["step"],
    )


def test_the_case_files_are_all_used() -> None:
    """A new case file must get a runner here, not be silently ignored."""
    assert sorted(p.name for p in CASES.glob("*.json")) == [
        "backoff.json",
        "graphs.json",
        "readiness.json",
        "transitions.json",
    ]


@pytest.mark.parametrize("case", load("transitions.json", "sequences"), ids=case_id)
def test_transition_sequences(case: dict[str, Any]) -> None:
    machine = MACHINES[case["kind"]]
    state = machine.state_code(case["start"])
    seen: list[str] = []
    error = case.get("error")
    for i, event_name in enumerate(case["events"]):
        if error is not None and i == error["at"]:
            with pytest.raises(error_class(error["type"])) as raised:
                state = machine.apply(state, machine.event_code(event_name))
            if isinstance(raised.value, errors.InvalidTransitionError):
                assert raised.value.kind == case["kind"]
                assert raised.value.from_state == machine.states[state]
                assert raised.value.event == event_name
            break
        state = machine.apply(state, machine.event_code(event_name))
        seen.append(machine.states[state])
    assert seen == case["expect"]


@pytest.mark.parametrize(
    "case",
    load("transitions.json", "checks"),
    ids=lambda c: f"{c['kind']}:{c['from']}->{c['to']}",
)
def test_transition_checks(case: dict[str, Any]) -> None:
    machine = MACHINES[case["kind"]]
    source, target = machine.state_code(case["from"]), machine.state_code(case["to"])
    assert machine.can(source, target) is (case["event"] is not None)
    if case["event"] is None:
        with pytest.raises(errors.InvalidTransitionError) as raised:
            machine.check(source, target)
        assert (raised.value.from_state, raised.value.to_state) == (case["from"], case["to"])
    else:
        assert machine.events[machine.check(source, target)] == case["event"]


@pytest.mark.parametrize("case", load("graphs.json", "cases"), ids=case_id)
def test_graphs(case: dict[str, Any]) -> None:
    if "error" in case:
        expected = dict(case["error"])
        with pytest.raises(error_class(expected.pop("type"))) as raised:
            build(case["steps"])
        assert {key: getattr(raised.value, key) for key in expected} == expected
        return
    graph = build(case["steps"])
    names = graph.names
    assert [names[i] for i in graph.topological_order()] == case["order"]
    assert graph.levels() == case["levels"]
    assert [names[i] for i in graph.roots()] == case["roots"]
    assert [names[i] for i in graph.leaves()] == case["leaves"]
    assert graph.edge_count == case["edge_count"]


@pytest.mark.parametrize("case", load("readiness.json", "cases"), ids=case_id)
def test_readiness(case: dict[str, Any]) -> None:
    steps = case["steps"]
    graph = build(steps)
    machine = MACHINES["step"]
    ready = graph.ready(
        [machine.state_code(s["state"]) for s in steps],
        [s["attempts"] for s in steps],
        [s["max_attempts"] for s in steps],
        [s["retryable"] for s in steps],
        [s["next_retry_at"] for s in steps],
        [s["leased"] for s in steps],
        case["now"],
    )
    assert [graph.names[i] for i in ready] == case["ready"]


@pytest.mark.parametrize(
    "case",
    load("backoff.json", "jitter_fraction"),
    ids=lambda c: f"{c['key']}-{c['attempt']}-{c['seed']}",
)
def test_jitter_fraction(case: dict[str, Any]) -> None:
    assert jitter_fraction(case["key"], case["attempt"], case["seed"]) == case["expect"]


@pytest.mark.parametrize("case", load("backoff.json", "backoff_delay"), ids=case_id)
def test_backoff_delay(case: dict[str, Any]) -> None:
    args = (case["attempt"], case["base"], case["max_delay"], case["jitter"], case["key"])
    kwargs = {"seed": case["seed"], "retry_after": case["retry_after"]}
    if "error" in case:
        with pytest.raises(error_class(case["error"])):
            backoff_delay(*args, **kwargs)
        return
    got = backoff_delay(*args, **kwargs)
    if case["expect"] == 0:
        assert got == pytest.approx(0.0, abs=1e-12)
    else:
        assert math.isclose(got, case["expect"], rel_tol=1e-12)
