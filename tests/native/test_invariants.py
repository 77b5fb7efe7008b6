"""Properties every implementation of the core must have, checked on the native module and on the
reference model alike (each test runs once per implementation)."""

from __future__ import annotations

import random
import tomllib
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_tasker import reference as ref
from pytest_tasker.strategies import Graph, big_dags, dags, readiness_inputs, shapes

import tasker_core._native as native

SPEC = tomllib.loads(
    (Path(__file__).resolve().parents[2] / "spec" / "states.toml").read_text(encoding="utf-8")
)
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
AnyGraph = native.WorkflowGraph | ref.RefGraph
AnyMachine = native.StateMachine | ref.RefStateMachine
Builder = Callable[[Sequence[str], Sequence[Sequence[str]]], AnyGraph]


def ref_graph(names: Sequence[str], deps: Sequence[Sequence[str]]) -> AnyGraph:
    return ref.RefGraph(names, deps, ref.RefStateMachine("step"))


GRAPHS = pytest.mark.parametrize(
    "build", [pytest.param(native.WorkflowGraph, id="native"), pytest.param(ref_graph, id="ref")]
)
MACHINES = pytest.mark.parametrize(
    "machines",
    [
        pytest.param({"task": native.TASK_MACHINE, "step": native.STEP_MACHINE}, id="native"),
        pytest.param(
            {"task": ref.RefStateMachine("task"), "step": ref.RefStateMachine("step")}, id="ref"
        ),
    ],
)
STEP = native.STEP_MACHINE
PENDING, ERROR = STEP.state_code("pending"), STEP.state_code("error")
COMPLETE = STEP.state_code("complete")
any_graph = st.one_of(dags(max_steps=40), shapes(), big_dags(max_steps=200))


@GRAPHS
@given(graph=dags(max_steps=24, max_parents=4), data=st.data())
@settings(suppress_health_check=SLOW)
def test_a_ready_step_may_run_and_its_parents_are_satisfied(
    build: Builder, graph: Graph, data: st.DataObject
) -> None:
    g = build(*graph)
    columns = data.draw(readiness_inputs(len(g), len(STEP.states)))
    for i in g.ready(*columns):
        assert all(STEP.satisfies_dependency(columns.states[p]) for p in g.parents(i))
        assert not columns.leased[i]
        assert columns.states[i] == PENDING or (
            columns.states[i] == ERROR
            and columns.retryable[i]
            and columns.attempts[i] < columns.max_attempts[i]
            and columns.now >= columns.next_retry_at[i]
        )


@GRAPHS
@given(graph=any_graph)
@settings(suppress_health_check=SLOW)
def test_topological_order_is_a_permutation_respecting_every_edge(
    build: Builder, graph: Graph
) -> None:
    g = build(*graph)
    order = g.topological_order()
    assert sorted(order) == list(range(len(g)))
    place = {step: k for k, step in enumerate(order)}
    for child in range(len(g)):
        for parent in g.parents(child):
            assert place[parent] < place[child]
            assert child in g.children(parent)


@GRAPHS
@given(graph=any_graph)
@settings(suppress_health_check=SLOW)
def test_levels_are_consistent_with_edges(build: Builder, graph: Graph) -> None:
    g = build(*graph)
    levels = g.levels()
    assert [i for i in range(len(g)) if levels[i] == 0] == g.roots()
    for child in range(len(g)):
        parent_levels = [levels[p] for p in g.parents(child)]
        assert all(level < levels[child] for level in parent_levels)
        if parent_levels:
            assert max(parent_levels) == levels[child] - 1


@GRAPHS
@given(graph=any_graph)
@settings(suppress_health_check=SLOW)
def test_completing_in_topological_order_unblocks_every_step_exactly_once(
    build: Builder, graph: Graph
) -> None:
    g = build(*graph)
    tracker = g.tracker()
    unblocked = tracker.unblocked()
    assert unblocked == g.roots()
    for step in g.topological_order():
        assert tracker.remaining_parents(step) == 0
        assert not tracker.is_satisfied(step)
        released = tracker.mark_satisfied(step)
        assert released == sorted(released)
        assert all(tracker.remaining_parents(c) == 0 for c in released)
        unblocked.extend(released)
        assert tracker.mark_satisfied(step) == []
    assert sorted(unblocked) == list(range(len(g)))
    assert tracker.all_satisfied() and tracker.satisfied_count == len(g)
    assert tracker.unblocked() == []


@GRAPHS
@given(graph=any_graph, rng=st.randoms(use_true_random=True))
@settings(suppress_health_check=SLOW)
def test_running_by_readiness_completes_every_step_once(
    build: Builder, graph: Graph, rng: random.Random
) -> None:
    """Repeatedly complete any one ready step: every step completes, each once, parents first."""
    g = build(*graph)
    n = len(g)
    states = [PENDING] * n
    fixed = ([0] * n, [1] * n, [False] * n, [0.0] * n, [False] * n)
    done: list[int] = []
    while ready := g.ready(states, *fixed, 0.0):
        step = rng.choice(ready)
        assert all(states[p] == COMPLETE for p in g.parents(step))
        states[step] = COMPLETE
        done.append(step)
    assert sorted(done) == list(range(n))


@MACHINES
def test_terminal_states_leave_only_by_transitions_the_spec_lists(
    machines: dict[str, AnyMachine],
) -> None:
    for kind, machine in machines.items():
        table = SPEC[kind]
        listed = {
            (machine.state_code(source), machine.state_code(rule["to"]))
            for rule in table["transitions"]
            for source in rule["from"]
        }
        for name in table["terminal"]:
            state = machine.state_code(name)
            assert machine.is_terminal(state)
            assert machine.targets(state) == sorted(to for s, to in listed if s == state)
        non_terminal = [s for s in machine.states if s not in table["terminal"]]
        assert not any(machine.is_terminal(machine.state_code(s)) for s in non_terminal)
        assert {(s, t) for _, s, t in machine.transitions()} == listed


@GRAPHS
@given(
    attempts=st.integers(0, 5),
    max_attempts=st.integers(0, 5),
    retryable=st.booleans(),
    next_retry_at=st.floats(0.0, 100.0),
    now=st.floats(0.0, 200.0),
    once=st.sampled_from(["max_attempts=1", "retryable=false"]),
)
def test_run_once_steps_get_their_first_attempt_and_never_a_retry(
    build: Builder,
    attempts: int,
    max_attempts: int,
    retryable: bool,
    next_retry_at: float,
    now: float,
    once: str,
) -> None:
    """``retryable: false`` or ``max_attempts: 1`` means run once: pending is always ready,
    a failed step never is (the fixed Tasker bug: such steps never ran at all)."""
    if once == "max_attempts=1":
        max_attempts = 1
    else:
        retryable = False
    g = build(["only"], [[]])
    columns = ([attempts], [max_attempts], [retryable], [next_retry_at], [False], now)
    assert g.ready([PENDING], *columns) == [0]
    failed_columns = ([max(attempts, 1)], *columns[1:])
    assert g.ready([ERROR], *failed_columns) == []
