"""Run the language-neutral conformance cases of spec/cases/ against the built native module.

The same JSON files are run by `cargo test` on the Rust crates and by the reference model's tests,
so all three implementations are held to one written-down expectation (format:
spec/cases/README.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

import tasker_core._native as native
from tasker_core import errors
from tasker_core.solver import build_graph

CASES = Path(__file__).resolve().parents[2] / "spec" / "cases"
MACHINES = {"task": native.TASK_MACHINE, "step": native.STEP_MACHINE}
GRAPH_ERRORS: dict[str, type[errors.GraphError]] = {
    "DuplicateStepError": errors.DuplicateStepError,
    "UnknownDependencyError": errors.UnknownDependencyError,
    "SelfDependencyError": errors.SelfDependencyError,
    "CycleError": errors.CycleError,
}
FSM_ERRORS: dict[str, type[errors.TaskerError]] = {
    "InvalidTransitionError": errors.InvalidTransitionError,
    "UnknownStateError": errors.UnknownStateError,
}


def load(name: str, section: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CASES / name).read_text(encoding="utf-8"))[section]
    return cases


def by_name(cases: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=[c["name"] for c in cases])


def build(case: dict[str, Any]) -> native.WorkflowGraph:
    steps = case["steps"]
    return native.WorkflowGraph([s["name"] for s in steps], [s["depends_on"] for s in steps])


@by_name(load("transitions.json", "sequences"))
def test_transition_sequence(case: dict[str, Any]) -> None:
    machine = MACHINES[case["kind"]]
    state = machine.state_code(case["start"])
    seen: list[str] = []
    error = case.get("error")
    for i, event in enumerate(case["events"]):
        if error is not None and i == error["at"]:
            with pytest.raises(FSM_ERRORS[error["type"]]) as info:
                machine.apply(state, machine.event_code(event))
            assert machine.kind in str(info.value)
            break
        state = machine.apply(state, machine.event_code(event))
        seen.append(machine.states[state])
    assert seen == case["expect"]


def test_illegal_event_error_carries_its_facts() -> None:
    step = native.STEP_MACHINE
    complete, retry = step.state_code("complete"), step.event_code("retry")
    with pytest.raises(errors.InvalidTransitionError) as info:
        step.apply(complete, retry)
    err = info.value
    facts = (err.kind, err.from_state, err.to_state, err.event)
    assert facts == ("step", "complete", None, "retry")
    assert str(err) == "illegal step transition by event 'retry' from 'complete'"


CHECKS = load("transitions.json", "checks")


@pytest.mark.parametrize(
    "case", CHECKS, ids=[f"{c['kind']}:{c['from']}->{c['to']}" for c in CHECKS]
)
def test_transition_check(case: dict[str, Any]) -> None:
    machine = MACHINES[case["kind"]]
    frm, to = machine.state_code(case["from"]), machine.state_code(case["to"])
    assert machine.can(frm, to) is (case["event"] is not None)
    if case["event"] is None:
        with pytest.raises(errors.InvalidTransitionError) as info:
            machine.check(frm, to)
        err = info.value
        assert (err.kind, err.from_state, err.to_state, err.event) == (
            case["kind"],
            case["from"],
            case["to"],
            None,
        )
    else:
        assert machine.events[machine.check(frm, to)] == case["event"]


def build_through_solver(case: dict[str, Any]) -> native.WorkflowGraph:
    return build_graph([(s["name"], tuple(s["depends_on"])) for s in case["steps"]])


@pytest.mark.parametrize("builder", [build, build_through_solver], ids=["native", "solver"])
@by_name(load("graphs.json", "cases"))
def test_graph(case: dict[str, Any], builder: Any) -> None:
    error = case.get("error")
    if error is not None:
        with pytest.raises(GRAPH_ERRORS[error["type"]]) as info:
            builder(case)
        facts = {k: v for k, v in error.items() if k != "type"}
        assert {k: getattr(info.value, k) for k in facts} == facts
        return
    graph = builder(case)
    names = graph.names
    assert [names[i] for i in graph.topological_order()] == case["order"]
    assert graph.levels() == case["levels"]
    assert [names[i] for i in graph.roots()] == case["roots"]
    assert [names[i] for i in graph.leaves()] == case["leaves"]
    assert graph.edge_count == case["edge_count"]
    assert len(graph) == len(case["steps"])


@by_name(load("readiness.json", "cases"))
def test_readiness(case: dict[str, Any]) -> None:
    graph = build(case)
    steps = case["steps"]
    ready = graph.ready(
        [native.STEP_MACHINE.state_code(s["state"]) for s in steps],
        [s["attempts"] for s in steps],
        [s["max_attempts"] for s in steps],
        [s["retryable"] for s in steps],
        [s["next_retry_at"] for s in steps],
        [s["leased"] for s in steps],
        case["now"],
    )
    assert [graph.names[i] for i in ready] == case["ready"]


JITTER = load("backoff.json", "jitter_fraction")


@pytest.mark.parametrize(
    "case", JITTER, ids=[f"{c['key']}-{c['attempt']}-{c['seed']}" for c in JITTER]
)
def test_jitter_fraction(case: dict[str, Any]) -> None:
    got = native.jitter_fraction(case["key"], case["attempt"], case["seed"])
    assert got == case["expect"]


@by_name(load("backoff.json", "backoff_delay"))
def test_backoff_delay(case: dict[str, Any]) -> None:
    args = {k: case[k] for k in ("attempt", "base", "max_delay", "jitter", "key", "seed")}
    if "error" in case:
        assert case["error"] == "ValueError"
        with pytest.raises(ValueError):
            native.backoff_delay(**args, retry_after=case["retry_after"])
        return
    got = native.backoff_delay(**args, retry_after=case["retry_after"])
    assert math.isclose(got, case["expect"], rel_tol=1e-12, abs_tol=1e-12)


def test_build_graph_refuses_a_bare_string_of_dependencies() -> None:
    with pytest.raises(TypeError, match="step 'b': depends_on must be a sequence"):
        build_graph([("a", ()), ("b", "a")])
