"""The one assertion every store and engine test shares: recorded histories are legal paths.

A record's transitions, in ``sort_key`` order, must start at the spec's initial state, move only
along the state table, chain (each ``from_state`` is where the previous one landed), end in the
state the record says it is in now, and carry exactly one ``most_recent`` flag, on the last one.
The tables come from the spec text (through the reference model), never from the code under test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

from tasker_core import Transition

from pytest_tasker.reference import RefStateMachine, ref_step_machine, ref_task_machine

__all__ = ["assert_legal_history", "history_problems"]


def _machine(kind: str) -> RefStateMachine:
    return ref_task_machine() if kind == "task" else ref_step_machine()


def _label(record: str | None) -> str:
    return "task" if record is None else f"step {record!r}"


def history_problems(
    transitions: Sequence[Transition], final_states: Mapping[str | None, str]
) -> list[str]:
    """Every way ``transitions`` break the rules above, as readable lines (empty when legal).

    ``final_states`` maps a step name (None for the task itself) to the state it is in now.
    """
    problems: list[str] = []
    keys = [t.sort_key for t in transitions]
    if len(set(keys)) != len(keys):
        problems.append(f"sort keys are not unique: {keys}")
    by_record: dict[str | None, list[Transition]] = defaultdict(list)
    for t in sorted(transitions, key=lambda t: t.sort_key):
        by_record[t.step].append(t)
    for record in by_record.keys() - final_states.keys():
        problems.append(f"transitions recorded for unknown {_label(record)}")
    for record, current in final_states.items():
        machine = _machine("task" if record is None else "step")
        state = machine.states[machine.initial]
        history = by_record.get(record, [])
        for n, t in enumerate(history, 1):
            where = f"{_label(record)}, transition {n} (sort_key {t.sort_key})"
            if t.from_state != state:
                problems.append(f"{where}: starts from {t.from_state!r}, but it was in {state!r}")
            if t.from_state not in machine.states or t.to_state not in machine.states:
                problems.append(f"{where}: unknown state in {t.from_state!r}->{t.to_state!r}")
            elif not machine.can(machine.state_code(t.from_state), machine.state_code(t.to_state)):
                problems.append(f"{where}: illegal move {t.from_state!r}->{t.to_state!r}")
            state = t.to_state
        if state != current:
            path = " -> ".join([machine.states[machine.initial], *(t.to_state for t in history)])
            problems.append(
                f"{_label(record)}: history ({path}) ends in {state!r}, the record says {current!r}"
            )
        flags = [t.most_recent for t in history]
        if history and flags != [False] * (len(flags) - 1) + [True]:
            problems.append(
                f"{_label(record)}: most_recent flags are {flags}, expected only the last True"
            )
    return problems


def assert_legal_history(
    transitions: Sequence[Transition], final_states: Mapping[str | None, str]
) -> None:
    """Fail with every problem :func:`history_problems` finds (one per line)."""
    problems = history_problems(transitions, final_states)
    if problems:
        raise AssertionError("illegal transition history:\n  " + "\n  ".join(problems))
