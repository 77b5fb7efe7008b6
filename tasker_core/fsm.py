"""The task and step state machines, by name.

The tables come from spec/states.toml, compiled into the native module at build time; this module
gives them names: :class:`TaskState` and :class:`StepState` (string enums whose values are the
spec's state names, in spec order) and :class:`Machine`, which answers transition questions in
names while the native table does the work in integer codes.
"""

from __future__ import annotations

import enum
import tomllib
from typing import Any, Generic, TypeVar

from tasker_core import _native
from tasker_core.errors import UnknownStateError

__all__ = [
    "SATISFIED_STEP_STATES",
    "SPEC_EVENTS_TOML",
    "SPEC_STATES_TOML",
    "STEP",
    "STEP_MACHINE",
    "TASK",
    "TASK_MACHINE",
    "TERMINAL_STEP_STATES",
    "TERMINAL_TASK_STATES",
    "Machine",
    "StepState",
    "TaskState",
    "spec_tables",
]


SPEC_STATES_TOML: str = _native.SPEC_STATES_TOML
"""The spec/states.toml this build was made from (public, so plugins need not touch _native)."""
SPEC_EVENTS_TOML: str = _native.SPEC_EVENTS_TOML
"""The event catalogue, spec/events.toml, this build was made from."""


class TaskState(enum.StrEnum):
    """A task's state (values and order are the spec's ``task.states``)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    RESOLVED_MANUALLY = "resolved_manually"


class StepState(enum.StrEnum):
    """A step's state (values and order are the spec's ``step.states``)."""

    PENDING = "pending"
    ENQUEUED = "enqueued"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    ERROR = "error"
    CANCELLED = "cancelled"
    RESOLVED_MANUALLY = "resolved_manually"


S = TypeVar("S", TaskState, StepState)


class Machine(Generic[S]):
    """Name-based view of one native state machine.

    Names are translated through dicts built once, so a call costs a dict lookup or two plus one
    native call. Plain strings and enum members are accepted alike (they hash equally).
    """

    __slots__ = ("_event_codes", "_events", "_native", "_state_codes", "_states", "kind")

    def __init__(self, native: _native.StateMachine, states: type[S]) -> None:
        members = tuple(states)
        if [m.value for m in members] != native.states:
            raise RuntimeError(
                f"{states.__name__} {[m.value for m in members]} does not match the native "
                f"{native.kind} states {native.states}: rebuild the extension (pip install -e .)"
            )
        self.kind: str = native.kind
        self._native = native
        self._states: tuple[S, ...] = members
        self._events: tuple[str, ...] = tuple(native.events)
        self._state_codes: dict[str, int] = {m.value: i for i, m in enumerate(members)}
        self._event_codes: dict[str, int] = {e: i for i, e in enumerate(self._events)}

    def __repr__(self) -> str:
        return f"Machine({self.kind!r})"

    @property
    def native(self) -> _native.StateMachine:
        """The native table (integer codes), for hot paths that keep codes."""
        return self._native

    @property
    def states(self) -> tuple[S, ...]:
        return self._states

    @property
    def events(self) -> tuple[str, ...]:
        return self._events

    @property
    def initial(self) -> S:
        return self._states[self._native.initial]

    def code(self, state: str) -> int:
        """The integer code of a state name; UnknownStateError if the table has no such state."""
        try:
            return self._state_codes[state]
        except KeyError:
            raise UnknownStateError(self.kind, "state", state) from None

    def state(self, code: int) -> S:
        """The state with integer ``code``; UnknownStateError if out of range."""
        if 0 <= code < len(self._states):
            return self._states[code]
        raise UnknownStateError(self.kind, "state", code)

    def event_code(self, event: str) -> int:
        try:
            return self._event_codes[event]
        except KeyError:
            raise UnknownStateError(self.kind, "event", event) from None

    def check(self, from_state: str, to_state: str) -> str:
        """The event that moves ``from_state`` to ``to_state``; InvalidTransitionError if none."""
        return self._events[self._native.check(self.code(from_state), self.code(to_state))]

    def can(self, from_state: str, to_state: str) -> bool:
        return self._native.can(self.code(from_state), self.code(to_state))

    def apply(self, from_state: str, event: str) -> S:
        """The state ``event`` leads to from ``from_state``; InvalidTransitionError if it does
        not apply there."""
        return self._states[self._native.apply(self.code(from_state), self.event_code(event))]

    def targets(self, from_state: str) -> list[S]:
        """Every state one transition away, in spec order."""
        return [self._states[c] for c in self._native.targets(self.code(from_state))]

    def is_terminal(self, state: str) -> bool:
        return self._native.is_terminal(self.code(state))

    def satisfies_dependency(self, state: str) -> bool:
        return self._native.satisfies_dependency(self.code(state))


TASK: Machine[TaskState] = Machine(_native.TASK_MACHINE, TaskState)
STEP: Machine[StepState] = Machine(_native.STEP_MACHINE, StepState)
TASK_MACHINE = TASK
"""The task state machine by name (public alias, exported by tasker_core)."""
STEP_MACHINE = STEP
"""The step state machine by name (public alias, exported by tasker_core)."""

TERMINAL_TASK_STATES: frozenset[TaskState] = frozenset(s for s in TaskState if TASK.is_terminal(s))
TERMINAL_STEP_STATES: frozenset[StepState] = frozenset(s for s in StepState if STEP.is_terminal(s))
SATISFIED_STEP_STATES: frozenset[StepState] = frozenset(
    s for s in StepState if STEP.satisfies_dependency(s)
)


def spec_tables() -> dict[str, Any]:
    """The spec the native module was built from, parsed (a fresh dict on every call)."""
    return tomllib.loads(_native.SPEC_STATES_TOML)
