"""tasker_core.fsm: the name-based machines over the native tables, and the native errors.

The expected transitions are read from the spec with tomllib (via ``spec_tables()``), so these
tests hold the wrappers to the spec text, not to the native table they wrap.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tasker_core._native as native
from tasker_core import fsm
from tasker_core.errors import InvalidTransitionError, UnknownStateError
from tasker_core.fsm import STEP, TASK, Machine, StepState, TaskState

SPEC = fsm.spec_tables()
MACHINES: dict[str, Machine[TaskState] | Machine[StepState]] = {"task": TASK, "step": STEP}


def spec_moves(kind: str) -> dict[tuple[str, str], str]:
    """(from, event) -> to, straight from the spec text."""
    return {(frm, t["event"]): t["to"] for t in SPEC[kind]["transitions"] for frm in t["from"]}


def test_enums_are_the_spec_states_in_order() -> None:
    assert [s.value for s in TaskState] == SPEC["task"]["states"]
    assert [s.value for s in StepState] == SPEC["step"]["states"]
    assert str(TaskState.IN_PROGRESS) == "in_progress"
    assert STEP.state(STEP.code("error")) is StepState.ERROR
    assert TASK.initial is TaskState.PENDING and STEP.initial is StepState.PENDING


def test_state_sets_follow_the_spec() -> None:
    assert {s.value for s in fsm.TERMINAL_TASK_STATES} == set(SPEC["task"]["terminal"])
    assert {s.value for s in fsm.TERMINAL_STEP_STATES} == set(SPEC["step"]["terminal"])
    assert {s.value for s in fsm.SATISFIED_STEP_STATES} == {"complete", "resolved_manually"}


@pytest.mark.parametrize("kind", ["task", "step"])
@given(data=st.data())
def test_apply_follows_the_spec(kind: str, data: st.DataObject) -> None:
    machine = MACHINES[kind]
    moves = spec_moves(kind)
    state = data.draw(st.sampled_from(machine.states))
    event = data.draw(st.sampled_from(machine.events))
    want = moves.get((state, event))
    if want is None:
        with pytest.raises(InvalidTransitionError) as info:
            machine.apply(state, event)
        assert (info.value.kind, info.value.from_state, info.value.event) == (kind, state, event)
        assert info.value.to_state is None
    else:
        got = machine.apply(state, event)
        assert got == want and got in machine.states
        assert machine.check(state, want) == event


@pytest.mark.parametrize("kind", ["task", "step"])
@given(data=st.data())
def test_check_can_and_targets_agree(kind: str, data: st.DataObject) -> None:
    machine = MACHINES[kind]
    frm = data.draw(st.sampled_from(machine.states))
    to = data.draw(st.sampled_from(machine.states))
    legal = {t for (f, _), t in spec_moves(kind).items() if f == frm}
    assert machine.can(frm, to) is (to in legal)
    assert set(machine.targets(frm)) == legal
    if to in legal:
        assert machine.apply(frm, machine.check(frm, to)) == to
    else:
        with pytest.raises(InvalidTransitionError, match=f"illegal {kind} transition from"):
            machine.check(frm, to)


@pytest.mark.parametrize("kind", ["task", "step"])
@given(events=st.lists(st.integers(min_value=0, max_value=6), max_size=12))
def test_event_walks_match_the_spec(kind: str, events: list[int]) -> None:
    machine = MACHINES[kind]
    moves = spec_moves(kind)
    state: str = machine.initial
    for e in events:
        event = machine.events[e % len(machine.events)]
        want = moves.get((state, event))
        if want is None:
            with pytest.raises(InvalidTransitionError):
                machine.apply(state, event)
        else:
            state = machine.apply(state, event)
            assert state == want
        assert machine.is_terminal(state) is (state in SPEC[kind]["terminal"])


def test_terminal_states_have_no_way_out() -> None:
    for machine in MACHINES.values():
        for state in machine.states:
            assert (machine.targets(state) == []) is machine.is_terminal(state)


def test_unknown_names_raise_unknown_state_error_with_facts() -> None:
    with pytest.raises(UnknownStateError) as info:
        TASK.check("pending", "running")
    assert (info.value.kind, info.value.what, info.value.value) == ("task", "state", "running")
    with pytest.raises(UnknownStateError, match="unknown step event 'explode'"):
        STEP.apply("pending", "explode")
    with pytest.raises(UnknownStateError):
        STEP.state(len(StepState))
    with pytest.raises(UnknownStateError):
        STEP.state(-1)


def test_native_codes_out_of_range_raise_unknown_state_error() -> None:
    m = native.STEP_MACHINE
    n = len(m.states)
    for bad in (-1, n, 2**40):
        with pytest.raises(UnknownStateError) as info:
            m.check(bad, 0)
        assert (info.value.kind, info.value.what, info.value.value) == ("step", "state", bad)
    with pytest.raises(UnknownStateError) as info:
        m.apply(0, len(m.events))
    assert info.value.what == "event"
    with pytest.raises(UnknownStateError):
        m.is_terminal(n)
    with pytest.raises(UnknownStateError):
        m.targets(-3)
    with pytest.raises(UnknownStateError, match="unknown task state 'nope'"):
        native.TASK_MACHINE.state_code("nope")


def test_native_tables_are_consistent() -> None:
    for m in (native.TASK_MACHINE, native.STEP_MACHINE):
        triples = m.transitions()
        assert triples == sorted(triples)
        for event, frm, to in triples:
            assert m.apply(frm, event) == to
            assert m.check(frm, to) == event
            assert to in m.targets(frm)
    assert repr(native.STEP_MACHINE) == "<StateMachine step>"


def test_invalid_transition_message_names_both_states() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        STEP.check(StepState.COMPLETE, StepState.PENDING)
    assert str(info.value) == "illegal step transition from 'complete' to 'pending'"
    assert isinstance(info.value, ValueError)


def test_spec_tables_is_a_fresh_parse_of_the_embedded_spec() -> None:
    first = fsm.spec_tables()
    first["task"]["states"].clear()
    assert fsm.spec_tables()["task"]["states"] == [s.value for s in TaskState]
