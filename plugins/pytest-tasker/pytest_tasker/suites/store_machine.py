"""The store state machine: a Store and the contract's model, driven side by side by hypothesis.

Every example uses task ids of its own (a store is shared by all examples of one test), so a
backend needs no way to be emptied. After every rule, every task the example made must match the
model field by field and its transition history must be a legal path of the spec.
"""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, Self

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tasker_core import InvalidTransitionError, StepChange, StepError, Store, TaskChange

from pytest_tasker.history import assert_legal_history
from pytest_tasker.reference import RefStateMachine, ref_step_machine, ref_task_machine
from pytest_tasker.store_model import ModelStore, is_legal, make_steps, make_task

__all__ = ["StoreMachine"]

Change = StepChange | TaskChange

_STEP = ref_step_machine()
_TASK = ref_task_machine()
_OWNERS = ("w1", "w2", "w3")
# Progress first; ending states weigh less, so that histories (retries, re-runs) grow long.
_PREFERENCE = ("enqueued", "in_progress", "complete", "error", "pending")
_RARE = ("cancelled", "resolved_manually")

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    _json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
"""JSON payloads as a handler may return them (results, metadata values)."""


def _targets(machine: RefStateMachine, current: str) -> list[str]:
    code = machine.state_code(current)
    reachable = {machine.states[t] for t in machine.targets(code)}
    weighted = [t for t in _PREFERENCE if t in reachable for _ in range(4)]
    return weighted + [t for t in _RARE if t in reachable]


class StoreMachine(RuleBasedStateMachine):
    """Drives one store; ``capabilities`` gates atomic batches and thread races."""

    make_store: ClassVar[Callable[[], Store]]
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def bound(cls, make_store: Callable[[], Store], capabilities: frozenset[str]) -> type[Self]:
        """A subclass that runs on stores from ``make_store`` (hypothesis wants a class)."""
        attrs_ = {"make_store": staticmethod(make_store), "capabilities": capabilities}
        return type(cls.__name__, (cls,), attrs_)

    def __init__(self) -> None:
        super().__init__()
        self.store = type(self).make_store()
        self.caps = self.capabilities
        self.model = ModelStore()
        self.prefix = uuid.uuid4().hex[:10]
        self.counter = itertools.count()
        self.now = 1000.0
        self.task_ids: list[str] = []
        self.keys = [f"{self.prefix}-key{i}" for i in range(2)]

    # -- helpers -------------------------------------------------------------------------------

    def _draw_change(self, data: st.DataObject, model: ModelStore) -> Change:
        """A change to one of this example's records, as ``model`` has them now."""
        task_id = data.draw(st.sampled_from(self.task_ids), label="task")
        task = model.tasks[task_id]
        if data.draw(st.integers(0, 3), label="kind") == 0:
            machine, current = _TASK, task.state
            change: Change = TaskChange(
                task_id,
                current,
                current,
                reason=data.draw(st.sampled_from(["", "why"])),
                wake_at=data.draw(st.sampled_from([None, self.now + 3.0])),
            )
        else:
            name = data.draw(st.sampled_from(sorted(task.steps)), label="step")
            machine, current = _STEP, task.steps[name].state
            change = StepChange(
                task_id,
                name,
                current,
                current,
                reason=data.draw(st.sampled_from(["", "why"])),
                metadata=data.draw(st.sampled_from([{}, {"k": [1, None]}])),
                lease_owner=data.draw(st.sampled_from(_OWNERS)),
                lease_expires_at=self.now + data.draw(st.sampled_from([1.0, 5.0, 50.0])),
                results=data.draw(json_values, label="results"),
                error=data.draw(
                    st.sampled_from([None, StepError("E", "m"), StepError("P", "no", False)])
                ),
                next_retry_at=data.draw(st.sampled_from([None, self.now + 7.5])),
                max_attempts=data.draw(st.sampled_from([None, None, None, 5])),
            )
            if data.draw(st.booleans(), label="fence"):
                held = task.steps[name].attempts
                fence = data.draw(st.sampled_from([held, held, held + 1]))
                change = attrs.evolve(change, expect_attempt=fence)
        roll = data.draw(st.integers(0, 19), label="roll")
        if roll == 0:  # illegal on purpose: any pair the table does not allow
            pairs = [
                (f, t)
                for f in machine.states
                for t in machine.states
                if not machine.can(machine.state_code(f), machine.state_code(t))
            ]
            bad_from, bad_to = data.draw(st.sampled_from(pairs), label="illegal")
            return attrs.evolve(change, from_state=bad_from, to_state=bad_to)
        if roll == 1:  # stale: a legal move from a state the record is not in
            legal = [
                (machine.states[f], machine.states[t])
                for _, f, t in machine.transitions()
                if machine.states[f] != current
            ]
            old_from, old_to = data.draw(st.sampled_from(legal), label="stale")
            return attrs.evolve(change, from_state=old_from, to_state=old_to)
        targets = _targets(machine, current)
        if not targets:  # terminal: nothing legal leaves it, try a stale move instead
            _, f, t = machine.transitions()[0]
            return attrs.evolve(change, from_state=machine.states[f], to_state=machine.states[t])
        return attrs.evolve(change, to_state=data.draw(st.sampled_from(targets), label="to"))

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        steps=st.integers(1, 4),
        keyed=st.integers(0, 2),
        context=st.dictionaries(st.text(max_size=6), json_values, max_size=3),
    )
    def create_task(self, steps: int, keyed: int, context: dict[str, Any]) -> None:
        if len(self.task_ids) >= 4:
            return
        task_id = f"{self.prefix}-t{next(self.counter)}"
        key = self.keys[keyed] if keyed < len(self.keys) else None
        task = make_task(task_id, key=key, created_at=self.now, context=context)
        step_list = make_steps(task_id, steps, created_at=self.now)
        expected_id, expected_new = self.model.create(task, step_list)
        got, is_new = self.store.create_task(task, step_list)
        assert (got.id, is_new) == (expected_id, expected_new), (
            f"create_task(key={key!r}) returned ({got.id!r}, {is_new}), "
            f"expected ({expected_id!r}, {expected_new})"
        )
        if is_new:
            self.task_ids.append(task_id)
            assert got == task

    @precondition(lambda self: bool(self.task_ids))
    @rule(data=st.data(), size=st.integers(1, 5), atomic=st.booleans())
    def apply_batch(self, data: st.DataObject, size: int, atomic: bool) -> None:
        atomic = atomic and "atomic_batches" in self.caps
        changes: list[Change] = []
        trial = copy.deepcopy(self.model)
        for _ in range(size):
            # Later changes build on earlier ones, as an engine's tick does.
            change = self._draw_change(data, trial)
            changes.append(change)
            if is_legal(change):
                trial.apply([change], self.now, atomic=False)
        self.now += 1.0
        if not all(is_legal(c) for c in changes):
            bad = next(c for c in changes if not is_legal(c))
            try:
                self.store.apply(changes, now=self.now, atomic=atomic)
            except InvalidTransitionError:
                return
            raise AssertionError(
                f"apply() accepted an illegal change {bad.from_state!r}->{bad.to_state!r} "
                f"({type(bad).__name__}); it must raise InvalidTransitionError and write nothing"
            )
        expected = self.model.apply(changes, self.now, atomic)
        got = self.store.apply(changes, now=self.now, atomic=atomic)
        assert got == expected, (
            f"apply(atomic={atomic}) said {got}, the contract says {expected} for "
            + "; ".join(_describe(c) for c in changes)
        )

    @precondition(lambda self: "concurrent_writers" in self.caps and bool(self.task_ids))
    @rule(data=st.data(), racers=st.integers(2, 4))
    def race_for_a_claim(self, data: st.DataObject, racers: int) -> None:
        """Threads race to move one enqueued step to in_progress: exactly one may win."""
        candidates = [
            (tid, name)
            for tid in self.task_ids
            for name, s in self.model.tasks[tid].steps.items()
            if s.state == "enqueued"
        ]
        if not candidates:
            return
        tid, name = data.draw(st.sampled_from(candidates), label="raced step")
        attempts = self.model.tasks[tid].steps[name].attempts
        self.now += 1.0
        barrier = threading.Barrier(racers)
        wins: dict[str, list[bool]] = {}
        errors: list[BaseException] = []

        def racer(owner: str) -> None:
            change = StepChange(
                tid,
                name,
                "enqueued",
                "in_progress",
                lease_owner=owner,
                lease_expires_at=self.now + 10.0,
                expect_attempt=attempts,
            )
            try:
                barrier.wait()
                wins[owner] = self.store.apply([change], now=self.now)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=racer, args=(f"r{i}",)) for i in range(racers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, f"racing apply() calls raised {errors!r}"
        winners = [owner for owner, won in wins.items() if won == [True]]
        assert len(winners) == 1, (
            f"{racers} threads raced enqueued->in_progress on step {name!r}: "
            f"{len(winners)} won ({sorted(winners)}); compare-and-set must let exactly one win"
        )
        change = StepChange(
            tid,
            name,
            "enqueued",
            "in_progress",
            lease_owner=winners[0],
            lease_expires_at=self.now + 10.0,
        )
        self.model.apply([change], self.now, atomic=False)

    @precondition(lambda self: bool(self.task_ids))
    @rule(data=st.data(), owner=st.sampled_from(_OWNERS), extra=st.sampled_from([1.0, 30.0]))
    def heartbeat(self, data: st.DataObject, owner: str, extra: float) -> None:
        tid = data.draw(st.sampled_from(self.task_ids), label="task")
        names = data.draw(
            st.lists(st.sampled_from([*self.model.tasks[tid].steps, "ghost"]), max_size=4),
            label="steps",
        )
        expected = self.model.heartbeat(tid, names, owner, self.now + extra)
        got = self.store.heartbeat(tid, names, owner, self.now + extra)
        assert got == expected, f"heartbeat({names}, owner={owner!r}) said {got}, not {expected}"

    @precondition(lambda self: bool(self.task_ids))
    @rule(ahead=st.sampled_from([0.0, 2.0, 6.0, 60.0]), limit=st.integers(1, 20))
    def scan_expired_leases(self, ahead: float, limit: int) -> None:
        at = self.now + ahead
        mine = set(self.task_ids)
        found = self.store.expired_leases(now=at, limit=limit)
        assert len(found) <= limit, f"expired_leases(limit={limit}) returned {len(found)}"
        got = {(s.task_id, s.name) for s in found if s.task_id in mine}
        for step in found:
            assert step.state == "in_progress" and step.lease_expires_at is not None
            assert step.lease_expires_at < at, f"{step.name!r} expires at {step.lease_expires_at}"
        expected = self.model.expired(at)
        assert got <= expected, f"expired_leases returned live leases {sorted(got - expected)}"
        if len(found) < limit:
            # Only this example's leases can be checked for completeness on a shared store.
            missing = {k for k in expected if k[0] in mine} - got
            assert not missing, f"expired_leases(now={at}) missed {sorted(missing)}"

    @rule()
    def tick(self) -> None:
        self.now += 5.0

    # -- invariants ----------------------------------------------------------------------------

    @invariant()
    def store_matches_model(self) -> None:
        for tid in self.task_ids:
            mt = self.model.tasks[tid]
            task = self.store.get_task(tid)
            got = (task.state, task.started_at, task.completed_at, task.wake_at, task.updated_at)
            want = (mt.state, mt.started_at, mt.completed_at, mt.wake_at, mt.updated_at)
            assert got == want, (
                f"task {tid}: (state, started_at, completed_at, wake_at, updated_at) is {got}, "
                f"the contract says {want}"
            )
            steps = self.store.get_steps(tid)
            assert [s.name for s in steps] == list(mt.steps), f"task {tid}: steps out of order"
            for step in steps:
                view = ModelStore.step_view(step)
                want_step = mt.steps[step.name]
                if view != want_step:
                    diffs = {
                        f: (getattr(view, f), getattr(want_step, f))
                        for f in attrs.fields_dict(type(view))
                        if getattr(view, f) != getattr(want_step, f)
                    }
                    raise AssertionError(
                        f"task {tid} step {step.name!r} differs from the contract "
                        f"(field: (stored, expected)): {diffs}"
                    )
            log = self.store.get_transitions(tid)
            history = [(t.step, t.from_state, t.to_state) for t in log]
            assert history == mt.history, (
                f"task {tid}: recorded transitions {history} differ from the applied changes "
                f"{mt.history}"
            )
            finals: dict[str | None, str] = {None: task.state}
            finals.update({s.name: s.state for s in steps})
            assert_legal_history(log, finals)


def _describe(c: Change) -> str:
    what = f"step {c.step!r}" if isinstance(c, StepChange) else "task"
    fence = (
        f" expect_attempt={c.expect_attempt}"
        if isinstance(c, StepChange) and c.expect_attempt is not None
        else ""
    )
    return f"{c.task_id} {what} {c.from_state}->{c.to_state}{fence}"
