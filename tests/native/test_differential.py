"""Differential tests: the native core answers every call exactly as the reference model does.

Each test feeds the same random input to ``tasker_core._native`` and to
``pytest_tasker.reference`` and compares the outcomes: the same value, or the same exception type
with the same attributes (cycle path, step, dependency, states). Example counts follow the
hypothesis profile (``HYPOTHESIS_PROFILE=ci`` for many).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pytest_tasker import reference as ref
from pytest_tasker.outcomes import Outcome, outcome
from pytest_tasker.plugin import examples
from pytest_tasker.strategies import (
    Graph,
    big_dags,
    dags,
    defective_graphs,
    graphs,
    readiness_inputs,
    step_names,
)

import tasker_core._native as native
from tasker_core.errors import CycleError

SPEC_FILE = Path(__file__).resolve().parents[2] / "spec" / "states.toml"
KINDS = ("task", "step")
NATIVE_MACHINES = {"task": native.TASK_MACHINE, "step": native.STEP_MACHINE}
REF_MACHINES = {"task": ref.RefStateMachine("task"), "step": ref.RefStateMachine("step")}
REF_STEP = REF_MACHINES["step"]
U64 = 2**64 - 1
SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]

AnyGraph = native.WorkflowGraph | ref.RefGraph


def assert_same(native_result: Outcome, ref_result: Outcome) -> None:
    assert native_result == ref_result, f"native {native_result} != reference {ref_result}"


def build_both(graph: Graph) -> tuple[Outcome, Outcome]:
    names, deps = graph
    return (
        outcome(native.WorkflowGraph, names, deps),
        outcome(ref.RefGraph, names, deps, REF_STEP),
    )


def compare_graphs(graph: Graph, probes: list[str]) -> None:
    """Both fail alike, or both build and answer every query alike."""
    nat, mod = build_both(graph)
    note(f"native: {nat}")
    if nat.error is not None or mod.error is not None:
        assert_same(nat, mod)
    else:
        assert answers(nat.value, probes) == answers(mod.value, probes)


def answers(graph: AnyGraph, probes: list[str]) -> dict[str, object]:
    """Every query of a graph, out-of-range indices and absent names included."""
    n = len(graph)
    return {
        "len": n,
        "names": graph.names,
        "edge_count": graph.edge_count,
        "index": [outcome(graph.index, name) for name in graph.names + probes],
        "parents": [outcome(graph.parents, i) for i in range(-1, n + 2)],
        "children": [outcome(graph.children, i) for i in range(-1, n + 2)],
        "order": graph.topological_order(),
        "levels": graph.levels(),
        "roots": graph.roots(),
        "leaves": graph.leaves(),
    }


# -- spec ----------------------------------------------------------------------------------------


def test_the_module_embeds_the_repository_spec() -> None:
    """The reference reads the embedded text; that text must be spec/states.toml verbatim."""
    text = SPEC_FILE.read_text(encoding="utf-8")
    assert text == native.SPEC_STATES_TOML
    assert hashlib.sha256(text.encode()).hexdigest() == native.SPEC_DIGEST


# -- state machines ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_machine_tables_agree_everywhere(kind: str) -> None:
    """Exhaustive over every in-range code and a margin of out-of-range ones."""
    nat, mod = NATIVE_MACHINES[kind], REF_MACHINES[kind]
    assert (nat.kind, nat.states, nat.events, nat.initial) == (
        mod.kind,
        mod.states,
        mod.events,
        mod.initial,
    )
    assert nat.transitions() == mod.transitions()
    states = range(len(mod.states) + 3)
    for a in states:
        for query in ("targets", "is_terminal", "satisfies_dependency"):
            assert_same(outcome(getattr(nat, query), a), outcome(getattr(mod, query), a))
        for b in states:
            assert_same(outcome(nat.check, a, b), outcome(mod.check, a, b))
            assert_same(outcome(nat.can, a, b), outcome(mod.can, a, b))
        for e in range(len(mod.events) + 3):
            assert_same(outcome(nat.apply, a, e), outcome(mod.apply, a, e))


@given(
    kind=st.sampled_from(KINDS),
    start=st.integers(0, 9),
    moves=st.lists(
        st.tuples(st.sampled_from(["apply", "check", "can"]), st.integers(0, 9)), max_size=30
    ),
)
def test_transition_sequences_agree(kind: str, start: int, moves: list[tuple[str, int]]) -> None:
    """Walk both machines with the same random moves; a failed move leaves the state alone."""
    nat, mod = NATIVE_MACHINES[kind], REF_MACHINES[kind]
    state = start
    for how, arg in moves:
        nat_out = outcome(getattr(nat, how), state, arg)
        assert_same(nat_out, outcome(getattr(mod, how), state, arg))
        if how == "apply" and nat_out.error is None:
            state = nat_out.value


@given(kind=st.sampled_from(KINDS), data=st.data())
def test_name_lookups_agree(kind: str, data: st.DataObject) -> None:
    nat, mod = NATIVE_MACHINES[kind], REF_MACHINES[kind]
    known = st.sampled_from(mod.states + mod.events)
    name = data.draw(st.one_of(known, st.text(max_size=12), known.map(str.upper)))
    assert_same(outcome(nat.state_code, name), outcome(mod.state_code, name))
    assert_same(outcome(nat.event_code, name), outcome(mod.event_code, name))


# -- graphs --------------------------------------------------------------------------------------


@given(graph=graphs(names=step_names()), probes=st.lists(step_names(), max_size=3))
@settings(suppress_health_check=SLOW)
def test_graphs_agree(graph: Graph, probes: list[str]) -> None:
    """Valid, shaped and defective graphs: same error (type, step, dependency, path) or the
    same answer to every query."""
    compare_graphs(graph, probes)


@given(graph=defective_graphs(max_steps=20, defects=("cycle",)))
@settings(suppress_health_check=SLOW)
def test_cycle_paths_agree(graph: Graph) -> None:
    """Only cycles (often several): the reported path is the one the documented search finds."""
    compare_graphs(graph, [])


@given(graph=big_dags(max_steps=400))
@settings(max_examples=examples(0.25), suppress_health_check=SLOW)
def test_big_graphs_agree(graph: Graph) -> None:
    nat, mod = build_both(graph)
    assert nat.error is None and mod.error is None, (nat, mod)
    assert answers(nat.value, []) == answers(mod.value, [])


@given(graph=big_dags(max_steps=300), data=st.data())
@settings(max_examples=examples(0.25), suppress_health_check=SLOW)
def test_big_graphs_with_a_cycle_agree(graph: Graph, data: st.DataObject) -> None:
    """Close a cycle somewhere in a large graph: both report the same path."""
    names, deps = graph
    child = data.draw(st.sampled_from([i for i in range(len(names)) if deps[i]]))
    deps[child] = [*deps[child]]
    ancestor = names.index(deps[child][0])
    while deps[ancestor]:
        if not data.draw(st.booleans()):
            break
        ancestor = names.index(data.draw(st.sampled_from(deps[ancestor])))
    deps[ancestor] = [*deps[ancestor], names[child]]
    nat, mod = build_both((names, deps))
    assert mod.error is CycleError
    assert_same(nat, mod)


@given(graph=dags(max_steps=24, max_parents=4), data=st.data())
@settings(suppress_health_check=SLOW)
def test_ready_agrees(graph: Graph, data: st.DataObject) -> None:
    nat_graph, ref_graph = native.WorkflowGraph(*graph), ref.RefGraph(*graph, REF_STEP)
    columns = data.draw(readiness_inputs(len(ref_graph), len(REF_STEP.states)))
    assert_same(outcome(nat_graph.ready, *columns), outcome(ref_graph.ready, *columns))


@given(graph=dags(min_steps=1, max_steps=10), data=st.data())
def test_ready_rejects_columns_of_the_wrong_length(graph: Graph, data: st.DataObject) -> None:
    nat_graph, ref_graph = native.WorkflowGraph(*graph), ref.RefGraph(*graph, REF_STEP)
    columns: list[Any] = list(data.draw(readiness_inputs(len(ref_graph), len(REF_STEP.states))))
    broken = data.draw(st.integers(0, 5))
    columns[broken] = columns[broken][: data.draw(st.integers(0, len(ref_graph) - 1))]
    nat_out = outcome(nat_graph.ready, *columns)
    assert nat_out.error is ValueError
    assert_same(nat_out, outcome(ref_graph.ready, *columns))


# -- trackers and a simulated run ----------------------------------------------------------------


class RunComparison(RuleBasedStateMachine):
    """Drive one task's steps through claims, failures, retries, manual resolutions and the clock
    on both implementations; after every rule, readiness and all tracker answers must agree."""

    BASE, MAX_DELAY, JITTER = 1.0, 8.0, 0.5

    @initialize(graph=dags(max_steps=25), data=st.data())
    def setup(self, graph: Graph, data: st.DataObject) -> None:
        n = len(graph[0])
        self.n = n
        self.nat_graph = native.WorkflowGraph(*graph)
        self.ref_graph = ref.RefGraph(*graph, REF_STEP)
        start = data.draw(st.lists(st.integers(0, max(n - 1, 0)), max_size=n)) if n else []
        self.nat_tracker = self.nat_graph.tracker(start)
        self.ref_tracker = self.ref_graph.tracker(start)
        self.states = [REF_STEP.initial] * n
        self.attempts = [0] * n
        self.max_attempts = data.draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
        self.retryable = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
        self.next_retry_at = [0.0] * n
        self.leased = [False] * n
        self.now = 0.0

    def step(self, pick: int) -> int:
        """Mostly a valid index; sometimes one past the end (to compare the errors)."""
        return pick % (self.n + 1)

    def move(self, i: int, event: str) -> bool:
        """Apply ``event`` to step i on both machines; True when it was legal."""
        code = REF_STEP.event_code(event)
        nat_out = outcome(native.STEP_MACHINE.apply, self.states[i], code)
        assert_same(nat_out, outcome(REF_STEP.apply, self.states[i], code))
        if nat_out.error is None:
            self.states[i] = nat_out.value
        return nat_out.error is None

    def satisfy(self, i: int) -> None:
        nat_out = outcome(self.nat_tracker.mark_satisfied, i)
        assert_same(nat_out, outcome(self.ref_tracker.mark_satisfied, i))

    @rule(pick=st.integers(0, 10**6))
    def claim(self, pick: int) -> None:
        i = self.step(pick)
        if i == self.n:
            return
        if self.move(i, "retry" if self.states[i] == REF_STEP.state_code("error") else "enqueue"):
            self.move(i, "start")
            self.attempts[i] += 1
            self.leased[i] = True

    @rule(
        pick=st.integers(0, 10**6),
        succeeded=st.booleans(),
        retry_after=st.none() | st.floats(-1, 5),
    )
    def finish(self, pick: int, succeeded: bool, retry_after: float | None) -> None:
        i = self.step(pick)
        if i == self.n or self.states[i] != REF_STEP.state_code("in_progress"):
            return
        self.leased[i] = False
        if succeeded:
            self.move(i, "complete")
            self.satisfy(i)
            return
        self.move(i, "fail")
        args = (self.attempts[i], self.BASE, self.MAX_DELAY, self.JITTER, i)
        delay = native.backoff_delay(*args, seed=7, retry_after=retry_after)
        assert delay == ref.backoff_delay(*args, seed=7, retry_after=retry_after)
        self.next_retry_at[i] = self.now + delay

    @rule(pick=st.integers(0, 10**6))
    def resolve(self, pick: int) -> None:
        i = self.step(pick)
        if i < self.n and self.move(i, "resolve"):
            self.satisfy(i)

    @rule(pick=st.integers(0, 10**6))
    def mark_out_of_order(self, pick: int) -> None:
        """The tracker alone, in any order (repeats and a bad index included)."""
        self.satisfy(self.step(pick))

    @rule(picks=st.lists(st.integers(0, 10**6), max_size=8))
    def mark_batch(self, picks: list[int]) -> None:
        """Many steps in one call, mid-run (repeats, satisfied steps and a bad index included)."""
        steps = [self.step(pick) for pick in picks]
        nat_out = outcome(self.nat_tracker.mark_satisfied_many, steps)
        assert_same(nat_out, outcome(self.ref_tracker.mark_satisfied_many, steps))

    @rule(seconds=st.sampled_from([0.5, 1.0, 4.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def ready_agrees(self) -> None:
        if not hasattr(self, "n"):
            return
        columns = (
            self.states,
            self.attempts,
            self.max_attempts,
            self.retryable,
            self.next_retry_at,
            self.leased,
            self.now,
        )
        assert_same(
            outcome(self.nat_graph.ready, *columns), outcome(self.ref_graph.ready, *columns)
        )

    @invariant()
    def trackers_agree(self) -> None:
        if not hasattr(self, "n"):
            return
        nat, mod = self.nat_tracker, self.ref_tracker
        assert nat.unblocked() == mod.unblocked()
        assert (nat.satisfied_count, nat.all_satisfied()) == (
            mod.satisfied_count,
            mod.all_satisfied(),
        )
        for i in range(-1, self.n + 1):
            assert_same(outcome(nat.is_satisfied, i), outcome(mod.is_satisfied, i))
            assert_same(outcome(nat.remaining_parents, i), outcome(mod.remaining_parents, i))


RunComparison.TestCase.settings = settings(
    max_examples=examples(0.25), stateful_step_count=40, suppress_health_check=SLOW
)
TestRunComparison = RunComparison.TestCase


@given(graph=dags(max_steps=20), start=st.lists(st.integers(-2, 25), max_size=5))
def test_tracker_start_sets_agree(graph: Graph, start: list[int]) -> None:
    """Out-of-range indices in the start set fail the same way in both."""
    nat = outcome(native.WorkflowGraph(*graph).tracker, start)
    mod = outcome(ref.RefGraph(*graph, REF_STEP).tracker, start)
    assert nat.error is mod.error
    if nat.error is None:
        assert nat.value.unblocked() == mod.value.unblocked()


def tracker_state(tracker: native.DependencyTracker | ref.RefTracker, n: int) -> object:
    """Everything a tracker answers, per step and overall."""
    return (
        [(tracker.is_satisfied(i), tracker.remaining_parents(i)) for i in range(n)],
        tracker.unblocked(),
        tracker.satisfied_count,
        tracker.all_satisfied(),
    )


@settings(max_examples=examples(0.5), suppress_health_check=SLOW)
@given(graph=st.one_of(dags(max_steps=25), big_dags(max_steps=120)), data=st.data())
def test_batched_marking_agrees_with_single_calls(graph: Graph, data: st.DataObject) -> None:
    """Random batches (repeats, satisfied steps, sometimes a bad index) give the reference's
    answer, and on valid batches the same answer as one native call per step; a batch with a
    bad index raises IndexError and changes nothing."""
    n = len(graph[0])
    index = st.integers(0, max(n - 1, 0))
    bad = st.sampled_from([-1, n, n + 5])
    start = data.draw(st.lists(index, max_size=min(n, 10)), label="start")
    nat_graph = native.WorkflowGraph(*graph)
    nat = nat_graph.tracker(start)
    single = nat_graph.tracker(start)
    mod = ref.RefGraph(*graph, REF_STEP).tracker(start)
    for _ in range(data.draw(st.integers(1, 8), label="batch count")):
        batch = data.draw(st.lists(index, max_size=40 if n else 0), label="batch")
        if data.draw(st.integers(0, 3), label="poisoned") == 0:
            at = data.draw(st.integers(0, len(batch)), label="at")
            batch.insert(at, data.draw(bad, label="bad index"))
        before = tracker_state(nat, n)
        nat_out = outcome(nat.mark_satisfied_many, batch)
        assert_same(nat_out, outcome(mod.mark_satisfied_many, batch))
        if nat_out.error is None:
            assert nat_out.value == [
                child for step in batch for child in single.mark_satisfied(step)
            ]
        else:
            assert nat_out.error is IndexError
            assert any(not 0 <= step < n for step in batch)
            assert tracker_state(nat, n) == before
        assert tracker_state(nat, n) == tracker_state(mod, n) == tracker_state(single, n)
    everything = list(range(n))
    assert_same(
        outcome(nat.mark_satisfied_many, everything), outcome(mod.mark_satisfied_many, everything)
    )
    assert nat.all_satisfied() and mod.all_satisfied()


# -- backoff -------------------------------------------------------------------------------------

u64s = st.one_of(st.integers(0, U64), st.sampled_from([0, 1, U64, 2**63]))
maybe_u64s = st.one_of(u64s, st.sampled_from([-1, U64 + 1]))
delays = st.one_of(
    st.floats(min_value=0.0, max_value=1e9),
    st.sampled_from([0.0, -0.0, 5e-324, 1e308, math.inf, -1.0, math.nan]),
)


def same_float(a: Outcome, b: Outcome) -> bool:
    """Outcomes equal, counting NaN equal to NaN (bit patterns aside)."""
    if isinstance(a.value, float) and isinstance(b.value, float):
        return a.error is b.error and (
            a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))
        )
    return a == b


@given(key=maybe_u64s, attempt=maybe_u64s, seed=maybe_u64s)
def test_jitter_fraction_agrees(key: int, attempt: int, seed: int) -> None:
    nat = outcome(native.jitter_fraction, key, attempt, seed)
    assert_same(nat, outcome(ref.jitter_fraction, key, attempt, seed))
    if nat.error is None:
        assert 0.0 <= nat.value < 1.0


@given(
    attempt=st.one_of(st.integers(-2, 70), st.integers(1000, 1100), st.integers(1, 10**6)),
    base=delays,
    max_delay=delays,
    jitter=st.one_of(st.floats(0.0, 1.0), st.sampled_from([0.0, 1.0, -0.01, 1.01, math.nan])),
    key=u64s,
    seed=u64s,
    retry_after=st.none() | delays | st.floats(-10.0, 0.0),
)
def test_backoff_delay_agrees_exactly(
    attempt: int,
    base: float,
    max_delay: float,
    jitter: float,
    key: int,
    seed: int,
    retry_after: float | None,
) -> None:
    args = (attempt, base, max_delay, jitter, key, seed, retry_after)
    nat, mod = outcome(native.backoff_delay, *args), outcome(ref.backoff_delay, *args)
    assert same_float(nat, mod), f"native {nat} != reference {mod}"
