"""A pure-Python reference model of tasker's native core, written to be read as its specification.

Everything here mirrors ``tasker_core._native`` call for call: the same codes, the same answers,
the same exceptions (from ``tasker_core.errors``) with the same attributes, checked in the same
order. It is deliberately naive (plain loops, recomputation instead of bookkeeping) so that a
reader can verify it against the prose of DESIGN.md; hypothesis differential tests then hold the
fast native implementation to it.

The state tables come from spec text (TOML), never from native logic: pass the text explicitly,
or let the model read the text embedded in the installed native module.

Out of scope: integers that do not fit 64 bits where the native binding takes a step index, a
state code or an attempt (it raises OverflowError before any semantics apply).
"""

from __future__ import annotations

import heapq
import math
import tomllib
from collections.abc import Sequence
from functools import cache
from typing import Any

from tasker_core import (
    CycleError,
    DuplicateStepError,
    InvalidTransitionError,
    SelfDependencyError,
    UnknownDependencyError,
    UnknownStateError,
)

__all__ = [
    "RefGraph",
    "RefStateMachine",
    "RefTracker",
    "backoff_delay",
    "jitter_fraction",
    "ref_step_machine",
    "ref_task_machine",
    "states_toml",
]

U64_MAX = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def states_toml() -> str:
    """The spec/states.toml text tasker-core was built from (its text, not its logic)."""
    import tasker_core

    return tasker_core.SPEC_STATES_TOML


# --------------------------------------------------------------------------------------------
# State machines
# --------------------------------------------------------------------------------------------


class RefStateMachine:
    """One entity's transition table, read straight from the ``[kind]`` table of the spec."""

    def __init__(self, kind: str, spec_text: str | None = None) -> None:
        spec: dict[str, Any] = tomllib.loads(states_toml() if spec_text is None else spec_text)
        if kind not in spec:
            raise ValueError(f"the state spec has no [{kind}] table")
        table = spec[kind]
        self.kind = kind
        self.states: list[str] = list(table["states"])
        self.events: list[str] = list(table["events"])
        self.initial = self._spec_state(table["initial"], "initial")
        self._terminal = {self._spec_state(n, "terminal") for n in table["terminal"]}
        self._satisfying = {
            self._spec_state(n, "satisfies_dependency")
            for n in table.get("satisfies_dependency", [])
        }
        # (from, event) -> to: an event may leave several states but always lands in one.
        self._moves: dict[tuple[int, int], int] = {}
        for rule in table["transitions"]:
            if rule["event"] not in self.events:
                raise ValueError(f"[{kind}] transition names unknown event {rule['event']!r}")
            event = self.events.index(rule["event"])
            to = self._spec_state(rule["to"], f"transition {rule['event']!r}")
            for name in rule["from"]:
                self._moves[(self._spec_state(name, f"transition {rule['event']!r}"), event)] = to
        # (from, to) -> the smallest event making that move, so check() is one lookup.
        self._event_for: dict[tuple[int, int], int] = {}
        for (source, event), to in sorted(self._moves.items(), reverse=True):
            self._event_for[(source, to)] = event

    def _spec_state(self, name: str, where: str) -> int:
        if name not in self.states:
            raise ValueError(f"[{self.kind}] {where} names unknown state {name!r}")
        return self.states.index(name)

    def _state(self, code: int) -> int:
        if not 0 <= code < len(self.states):
            raise UnknownStateError(self.kind, "state", code)
        return code

    def _event(self, code: int) -> int:
        if not 0 <= code < len(self.events):
            raise UnknownStateError(self.kind, "event", code)
        return code

    def state_code(self, name: str) -> int:
        """Code of a state name."""
        if name not in self.states:
            raise UnknownStateError(self.kind, "state", name)
        return self.states.index(name)

    def event_code(self, name: str) -> int:
        """Code of an event name."""
        if name not in self.events:
            raise UnknownStateError(self.kind, "event", name)
        return self.events.index(name)

    def check(self, from_state: int, to_state: int) -> int:
        """The (smallest) event code moving ``from_state`` to ``to_state``, else raise."""
        self._state(from_state)
        self._state(to_state)
        if (from_state, to_state) in self._event_for:
            return self._event_for[(from_state, to_state)]
        raise InvalidTransitionError(
            self.kind, self.states[from_state], to_state=self.states[to_state]
        )

    def can(self, from_state: int, to_state: int) -> bool:
        """Whether some event moves ``from_state`` to ``to_state``."""
        self._state(from_state)
        self._state(to_state)
        return (from_state, to_state) in self._event_for

    def apply(self, from_state: int, event: int) -> int:
        """The state ``event`` leads to from ``from_state``, else raise."""
        self._state(from_state)
        self._event(event)
        if (from_state, event) not in self._moves:
            raise InvalidTransitionError(
                self.kind, self.states[from_state], event=self.events[event]
            )
        return self._moves[(from_state, event)]

    def targets(self, from_state: int) -> list[int]:
        """Every state one transition away, ascending."""
        self._state(from_state)
        return sorted({to for (source, _), to in self._moves.items() if source == from_state})

    def transitions(self) -> list[tuple[int, int, int]]:
        """Every (event, from, to) triple, sorted."""
        return sorted((event, source, to) for (source, event), to in self._moves.items())

    def is_terminal(self, state: int) -> bool:
        return self._state(state) in self._terminal

    def satisfies_dependency(self, state: int) -> bool:
        return self._state(state) in self._satisfying


@cache
def ref_task_machine() -> RefStateMachine:
    """The task machine of the embedded spec (built once)."""
    return RefStateMachine("task")


@cache
def ref_step_machine() -> RefStateMachine:
    """The step machine of the embedded spec (built once)."""
    return RefStateMachine("step")


# --------------------------------------------------------------------------------------------
# Graphs
# --------------------------------------------------------------------------------------------


class RefGraph:
    """A validated DAG of steps: ``names[i]`` is step i, ``dependencies[i]`` its parents' names."""

    def __init__(
        self,
        names: Sequence[str],
        dependencies: Sequence[Sequence[str]],
        step_machine: RefStateMachine | None = None,
    ) -> None:
        self._machine = ref_step_machine() if step_machine is None else step_machine
        names = list(names)
        listed = [list(deps) for deps in dependencies]
        if len(names) != len(listed):
            raise ValueError(
                f"{len(names)} step names but {len(listed)} dependency lists: need one per step"
            )
        self._names = names
        position: dict[str, int] = {}
        for i, name in enumerate(names):
            if name in position:
                raise DuplicateStepError(name)
            position[name] = i
        for name, deps in zip(names, listed, strict=True):
            for dep in deps:
                if dep not in position:
                    raise UnknownDependencyError(name, dep)
        for name, deps in zip(names, listed, strict=True):
            if name in deps:
                raise SelfDependencyError(name)
        self._position = position
        self._listed = [[position[dep] for dep in deps] for deps in listed]
        cycle = self._find_cycle()
        if cycle is not None:
            raise CycleError([names[i] for i in cycle])
        self._parents = [sorted(set(deps)) for deps in self._listed]
        self._children: list[list[int]] = [[] for _ in names]
        for child, parents in enumerate(self._parents):
            for parent in parents:
                self._children[parent].append(child)

    def _find_cycle(self) -> list[int] | None:
        """Depth-first search from each step in position order, dependencies in listed order.

        Returns the path from the re-entered step back to itself, or None for a DAG. An explicit
        stack (step, next dependency to follow) replaces recursion so deep chains are fine.
        """
        finished = [False] * len(self._names)
        on_path = [False] * len(self._names)
        for start in range(len(self._names)):
            if finished[start]:
                continue
            path = [start]
            next_dep = [0]
            on_path[start] = True
            while path:
                step = path[-1]
                deps = self._listed[step]
                if next_dep[-1] == len(deps):
                    finished[step] = True
                    on_path[step] = False
                    path.pop()
                    next_dep.pop()
                    continue
                dep = deps[next_dep[-1]]
                next_dep[-1] += 1
                if on_path[dep]:
                    return [*path[path.index(dep) :], dep]
                if not finished[dep]:
                    path.append(dep)
                    next_dep.append(0)
                    on_path[dep] = True
        return None

    def _step(self, step: int) -> int:
        if not 0 <= step < len(self._names):
            raise IndexError(f"step index {step} out of range for a graph of {len(self)} steps")
        return step

    def __len__(self) -> int:
        return len(self._names)

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @property
    def edge_count(self) -> int:
        """Distinct (step, parent) pairs."""
        return sum(len(parents) for parents in self._parents)

    def index(self, name: str) -> int:
        return self._position[name]

    def parents(self, step: int) -> list[int]:
        return list(self._parents[self._step(step)])

    def children(self, step: int) -> list[int]:
        return list(self._children[self._step(step)])

    def topological_order(self) -> list[int]:
        """Kahn's algorithm, always taking the smallest ready index."""
        waiting = [len(parents) for parents in self._parents]
        ready = [i for i, count in enumerate(waiting) if count == 0]
        heapq.heapify(ready)
        order: list[int] = []
        while ready:
            step = heapq.heappop(ready)
            order.append(step)
            for child in self._children[step]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, child)
        return order

    def levels(self) -> list[int]:
        """0 for a root, else 1 + the largest parent level."""
        level = [0] * len(self._names)
        for step in self.topological_order():
            level[step] = max((level[p] + 1 for p in self._parents[step]), default=0)
        return level

    def roots(self) -> list[int]:
        return [i for i, parents in enumerate(self._parents) if not parents]

    def leaves(self) -> list[int]:
        return [i for i, children in enumerate(self._children) if not children]

    def ready(
        self,
        states: Sequence[int],
        attempts: Sequence[int],
        max_attempts: Sequence[int],
        retryable: Sequence[bool],
        next_retry_at: Sequence[float],
        leased: Sequence[bool],
        now: float,
    ) -> list[int]:
        """The steps that may run now, ascending (see DESIGN.md section 5, "Readiness")."""
        columns = {
            "states": states,
            "attempts": attempts,
            "max_attempts": max_attempts,
            "retryable": retryable,
            "next_retry_at": next_retry_at,
            "leased": leased,
        }
        for column, values in columns.items():
            if len(values) != len(self):
                raise ValueError(
                    f"{column} has {len(values)} entries for a graph of {len(self)} steps"
                )
        machine = self._machine
        for code in states:
            machine._state(code)  # UnknownStateError for a code outside the table
        pending = machine.state_code("pending")
        error = machine.state_code("error")
        found = []
        for i in range(len(self)):
            runnable = states[i] == pending or (
                states[i] == error
                and retryable[i]
                and attempts[i] < max_attempts[i]
                and now >= next_retry_at[i]
            )
            parents_done = all(machine.satisfies_dependency(states[p]) for p in self._parents[i])
            if runnable and parents_done and not leased[i]:
                found.append(i)
        return found

    def tracker(self, satisfied: Sequence[int] = ()) -> RefTracker:
        return RefTracker(self, satisfied)


class RefTracker:
    """Which steps are satisfied; every answer is recomputed from scratch (slow and obvious)."""

    def __init__(self, graph: RefGraph, satisfied: Sequence[int] = ()) -> None:
        self._graph = graph
        self._satisfied = [False] * len(graph)
        for step in satisfied:
            self._satisfied[graph._step(step)] = True

    def mark_satisfied(self, step: int) -> list[int]:
        """Satisfy ``step``; return the unsatisfied children it left with no unsatisfied parent."""
        if self._satisfied[self._graph._step(step)]:
            return []
        self._satisfied[step] = True
        return [
            child
            for child in self._graph.children(step)
            if not self._satisfied[child] and self.remaining_parents(child) == 0
        ]

    def mark_satisfied_many(self, steps: Sequence[int]) -> list[int]:
        """``mark_satisfied`` of each step in turn, answers concatenated; every index is checked
        first, so a bad one changes nothing."""
        checked = [self._graph._step(step) for step in steps]
        unblocked: list[int] = []
        for step in checked:
            unblocked.extend(self.mark_satisfied(step))
        return unblocked

    def is_satisfied(self, step: int) -> bool:
        return self._satisfied[self._graph._step(step)]

    def remaining_parents(self, step: int) -> int:
        return sum(not self._satisfied[p] for p in self._graph.parents(step))

    def unblocked(self) -> list[int]:
        return [
            i
            for i in range(len(self._graph))
            if not self._satisfied[i] and self.remaining_parents(i) == 0
        ]

    @property
    def satisfied_count(self) -> int:
        return sum(self._satisfied)

    def all_satisfied(self) -> bool:
        return all(self._satisfied)


# --------------------------------------------------------------------------------------------
# Backoff
# --------------------------------------------------------------------------------------------


def _u64(what: str, value: int) -> int:
    if not 0 <= value <= U64_MAX:
        raise OverflowError(f"{what} {value} does not fit an unsigned 64-bit integer")
    return value


def jitter_fraction(key: int, attempt: int, seed: int) -> float:
    """splitmix64 of (key, attempt, seed), scaled to [0, 1) from its top 53 bits."""
    key, attempt, seed = _u64("key", key), _u64("attempt", attempt), _u64("seed", seed)
    x = key ^ ((attempt * GOLDEN) & U64_MAX) ^ ((seed * MIX1) & U64_MAX)
    z = (x + GOLDEN) & U64_MAX
    z = ((z ^ (z >> 30)) * MIX1) & U64_MAX
    z = ((z ^ (z >> 27)) * MIX2) & U64_MAX
    z = z ^ (z >> 31)
    return (z >> 11) * 2.0**-53


def backoff_delay(
    attempt: int,
    base: float,
    max_delay: float,
    jitter: float,
    key: int,
    seed: int = 0,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt number ``attempt``: capped exponential with jitter."""
    _u64("key", key)
    _u64("seed", seed)
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    if not base >= 0.0:  # written this way round so that NaN is rejected too
        raise ValueError(f"base must be >= 0, got {base}")
    if not max_delay >= 0.0:
        raise ValueError(f"max_delay must be >= 0, got {max_delay}")
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be within [0, 1], got {jitter}")
    if retry_after is not None:
        return retry_after if retry_after > 0.0 else 0.0
    growth = 2.0 ** (attempt - 1) if attempt - 1 <= 1023 else math.inf
    grown = 0.0 if base == 0.0 else base * growth  # a zero base never waits, even times infinity
    delay = min(grown, max_delay)
    return delay * (1.0 - jitter * jitter_fraction(key, attempt, seed))
