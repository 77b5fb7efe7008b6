"""The language-neutral conformance cases of spec/cases/ (format: spec/cases/README.md), run against
both Python-facing implementations: the built native module and the conformance kit's reference
model. `cargo test` runs the same files on the Rust crates, so all three are held to one
written-down expectation.

The reference model reads the repository's spec/states.toml, not the text embedded in the native
build, so its cases judge the spec, the cases and the model without trusting the build.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from attrs import frozen
from pytest_tasker import reference

import tasker_core._native as native
from tasker_core import errors
from tasker_core.solver import build_graph

SPEC = Path(__file__).resolve().parents[2] / "spec"
CASES = SPEC / "cases"


@frozen
class Impl:
    """One implementation of the native API, as the cases exercise it."""

    machines: dict[str, Any]
    graph: Callable[[Sequence[str], Sequence[Sequence[str]]], Any]
    jitter_fraction: Callable[[int, int, int], float]
    backoff_delay: Callable[..., float]


def _reference() -> Impl:
    text = (SPEC / "states.toml").read_text(encoding="utf-8")
    machines = {kind: reference.RefStateMachine(kind, text) for kind in ("task", "step")}
    return Impl(
        machines,
        lambda names, deps: reference.RefGraph(names, deps, step_machine=machines["step"]),
        reference.jitter_fraction,
        reference.backoff_delay,
    )


def _native() -> Impl:
    machines = {"task": native.TASK_MACHINE, "step": native.STEP_MACHINE}
    return Impl(machines, native.WorkflowGraph, native.jitter_fraction, native.backoff_delay)


def _through_solver() -> Impl:
    """The kernel's wrapper (what templates and the engine call) over the native graph."""
    base = _native()
    return Impl(
        base.machines,
        lambda names, deps: build_graph(list(zip(names, deps, strict=True))),
        base.jitter_fraction,
        base.backoff_delay,
    )


IMPLS = {"native": _native, "reference": _reference}


@pytest.fixture(params=sorted(IMPLS))
def impl(request: pytest.FixtureRequest) -> Impl:
    return IMPLS[request.param]()


def load(file: str, key: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((CASES / file).read_text(encoding="utf-8"))[key]
    return cases


def by_name(cases: list[dict[str, Any]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("case", cases, ids=[str(c.get("name", "")) for c in cases])


def error_class(name: str) -> type[Exception]:
    """The exception a case names: a tasker_core.errors class, or ValueError."""
    if name == "ValueError":
        return ValueError
    found = getattr(errors, name, None)
    assert isinstance(found, type) and issubclass(found, errors.TaskerError), name
    return found


def build(impl: Impl, steps: list[dict[str, Any]]) -> Any:
    return impl.graph([s["name"] for s in steps], [s["depends_on"] for s in steps])


def test_the_case_files_are_all_used() -> None:
    """A new case file must get a runner here, not be silently ignored."""
    assert sorted(p.name for p in CASES.glob("*.json")) == [
        "backoff.json",
        "graphs.json",
        "readiness.json",
        "transitions.json",
    ]


@by_name(load("transitions.json", "sequences"))
def test_transition_sequences(impl: Impl, case: dict[str, Any]) -> None:
    machine = impl.machines[case["kind"]]
    state = machine.state_code(case["start"])
    seen: list[str] = []
    error = case.get("error")
    for i, event in enumerate(case["events"]):
        if error is not None and i == error["at"]:
            with pytest.raises(error_class(error["type"])) as raised:
                machine.apply(state, machine.event_code(event))
            if isinstance(raised.value, errors.InvalidTransitionError):
                facts = (raised.value.kind, raised.value.from_state, raised.value.event)
                assert facts == (case["kind"], machine.states[state], event)
            break
        state = machine.apply(state, machine.event_code(event))
        seen.append(machine.states[state])
    assert seen == case["expect"]


CHECKS = load("transitions.json", "checks")


@pytest.mark.parametrize(
    "case", CHECKS, ids=[f"{c['kind']}:{c['from']}->{c['to']}" for c in CHECKS]
)
def test_transition_checks(impl: Impl, case: dict[str, Any]) -> None:
    machine = impl.machines[case["kind"]]
    source, target = machine.state_code(case["from"]), machine.state_code(case["to"])
    assert machine.can(source, target) is (case["event"] is not None)
    if case["event"] is None:
        with pytest.raises(errors.InvalidTransitionError) as raised:
            machine.check(source, target)
        err = raised.value
        facts = (err.kind, err.from_state, err.to_state, err.event)
        assert facts == (case["kind"], case["from"], case["to"], None)
    else:
        assert machine.events[machine.check(source, target)] == case["event"]


@pytest.mark.parametrize("builder", [*sorted(IMPLS), "solver"])
@by_name(load("graphs.json", "cases"))
def test_graphs(builder: str, case: dict[str, Any]) -> None:
    impl = _through_solver() if builder == "solver" else IMPLS[builder]()
    if "error" in case:
        expected = dict(case["error"])
        with pytest.raises(error_class(expected.pop("type"))) as raised:
            build(impl, case["steps"])
        assert {key: getattr(raised.value, key) for key in expected} == expected
        return
    graph = build(impl, case["steps"])
    names = graph.names
    assert [names[i] for i in graph.topological_order()] == case["order"]
    assert graph.levels() == case["levels"]
    assert [names[i] for i in graph.roots()] == case["roots"]
    assert [names[i] for i in graph.leaves()] == case["leaves"]
    assert graph.edge_count == case["edge_count"]
    assert len(graph) == len(case["steps"])


@by_name(load("readiness.json", "cases"))
def test_readiness(impl: Impl, case: dict[str, Any]) -> None:
    steps = case["steps"]
    graph = build(impl, steps)
    machine = impl.machines["step"]
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


JITTER = load("backoff.json", "jitter_fraction")


@pytest.mark.parametrize(
    "case", JITTER, ids=[f"{c['key']}-{c['attempt']}-{c['seed']}" for c in JITTER]
)
def test_jitter_fraction(impl: Impl, case: dict[str, Any]) -> None:
    assert impl.jitter_fraction(case["key"], case["attempt"], case["seed"]) == case["expect"]


@by_name(load("backoff.json", "backoff_delay"))
def test_backoff_delay(impl: Impl, case: dict[str, Any]) -> None:
    args = {k: case[k] for k in ("attempt", "base", "max_delay", "jitter", "key", "seed")}
    if "error" in case:
        with pytest.raises(error_class(case["error"])):
            impl.backoff_delay(**args, retry_after=case["retry_after"])
        return
    got = impl.backoff_delay(**args, retry_after=case["retry_after"])
    assert math.isclose(got, case["expect"], rel_tol=1e-12, abs_tol=1e-12)


def test_illegal_event_error_carries_its_facts() -> None:
    step = native.STEP_MACHINE
    with pytest.raises(errors.InvalidTransitionError) as info:
        step.apply(step.state_code("complete"), step.event_code("retry"))
    err = info.value
    assert (err.kind, err.from_state, err.to_state, err.event) == (
        "step",
        "complete",
        None,
        "retry",
    )
    assert str(err) == "illegal step transition by event 'retry' from 'complete'"


def test_build_graph_refuses_a_bare_string_of_dependencies() -> None:
    with pytest.raises(TypeError, match="step 'b': depends_on must be a sequence"):
        build_graph([("a", ()), ("b", "a")])
