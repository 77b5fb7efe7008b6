"""The queue state machine: a Queue and a model of protocols.Queue, driven side by side.

The model knows, for every key, when it becomes visible and which claim (token) holds it. Where
the contract leaves a choice open -- acking, nacking or extending a claim whose lease expired but
that nobody re-claimed yet -- the model accepts either answer and follows the queue's.
"""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Callable
from typing import ClassVar, Self

import attrs
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from tasker_core import Claim, Queue, WorkItem

__all__ = ["QueueMachine", "drain"]

FAR_FUTURE = 1e12
"""A time later than any the suites use: everything is visible then."""


def drain(queue: Queue, now: float = FAR_FUTURE) -> list[Claim]:
    """Claim and ack everything a queue holds (best effort); the claims it took."""
    taken: list[Claim] = []
    for _ in range(100):
        batch = queue.claim("kit-drain", 1000, 1.0, now)
        if not batch:
            break
        queue.ack(batch)
        taken.extend(batch)
    return taken


@attrs.define
class Entry:
    """What the model knows of one key: when it is visible, and the claim holding it."""

    item: WorkItem
    visible_at: float
    token: int | None = None
    expires_at: float | None = None

    def visible_time(self, now: float) -> float | None:
        """When it became visible, if it is visible at ``now``; else None."""
        if self.token is None:
            return self.visible_at if self.visible_at <= now else None
        assert self.expires_at is not None
        return self.expires_at if self.expires_at < now else None


def _key(item: WorkItem) -> tuple[str, str]:
    return (item.task_id, item.step)


class QueueMachine(RuleBasedStateMachine):
    """Drives one queue; ``ordered`` checks visibility order of every claim batch."""

    make_queue: ClassVar[Callable[[], Queue]]
    ordered: ClassVar[bool] = False

    @classmethod
    def bound(cls, make_queue: Callable[[], Queue], ordered: bool) -> type[Self]:
        """A subclass that runs on queues from ``make_queue`` (hypothesis wants a class)."""
        attrs_ = {"make_queue": staticmethod(make_queue), "ordered": ordered}
        return type(cls.__name__, (cls,), attrs_)

    def __init__(self) -> None:
        super().__init__()
        queue = type(self).make_queue()
        drain(queue)  # a previous (failed) example may have left items behind
        self.queue = queue
        self.prefix = uuid.uuid4().hex[:8]
        self.now = 1000.0
        self.entries: dict[tuple[str, str], Entry] = {}
        self.claims: list[Claim] = []
        self.counter = itertools.count()

    def teardown(self) -> None:
        # Best effort: the failure that matters was already reported by a rule.
        with contextlib.suppress(Exception):
            drain(self.queue)

    def _current(self, claim: Claim) -> bool | None:
        """True/False when the contract decides; None when either answer is allowed."""
        entry = self.entries.get(_key(claim.item))
        if entry is None or entry.token != claim.token:
            return False
        assert entry.expires_at is not None
        return True if entry.expires_at >= self.now else None

    def _check(self, op: str, claims: list[Claim], got: list[bool]) -> list[bool]:
        assert len(got) == len(claims), f"{op} returned {len(got)} answers for {len(claims)}"
        out = []
        for claim, answer in zip(claims, got, strict=True):
            want = self._current(claim)
            assert want is None or answer == want, (
                f"{op} of {claim.item.step!r} (token {claim.token}, lease to {claim.expires_at}, "
                f"now {self.now}) said {answer}; the claim is "
                + ("current" if want else "no longer current (acked, released or re-claimed)")
            )
            out.append(answer)
        return out

    # -- rules ---------------------------------------------------------------------------------

    @rule(
        count=st.integers(1, 4),
        delays=st.lists(st.sampled_from([0.0, 0.0, 1.0, 3.0, 8.0]), min_size=4, max_size=4),
        repeat=st.booleans(),
    )
    def enqueue(self, count: int, delays: list[float], repeat: bool) -> None:
        items = []
        for i in range(count):
            if repeat and self.entries and i == 0:
                key = sorted(self.entries)[0]
                items.append(WorkItem(key[0], key[1], self.now))  # a duplicate: a no-op
                continue
            n = next(self.counter)
            items.append(WorkItem(f"{self.prefix}-t{n % 3}", f"s{n}", self.now + delays[i]))
        for item in items:
            if _key(item) not in self.entries:
                self.entries[_key(item)] = Entry(item, item.available_at)
        self.queue.enqueue(items)

    @rule(
        owner=st.sampled_from(["w1", "w2"]),
        limit=st.integers(1, 4),
        lease=st.sampled_from([2.0, 5.0]),
    )
    def claim(self, owner: str, limit: int, lease: float) -> None:
        visible = {
            k: t for k, e in self.entries.items() if (t := e.visible_time(self.now)) is not None
        }
        got = self.queue.claim(owner, limit, lease, self.now)
        keys = [_key(c.item) for c in got]
        assert len(set(keys)) == len(keys), f"one claim batch holds a key twice: {keys}"
        unexpected = [k for k in keys if k not in visible]
        assert not unexpected, (
            f"claim(now={self.now}) handed out {unexpected}, which are not visible: waiting for "
            "their available_at, or held by a live claim (double claim)"
        )
        assert len(got) == min(limit, len(visible)), (
            f"claim(limit={limit}) returned {len(got)} items while {len(visible)} were visible"
        )
        if got:
            latest_taken = max(visible[k] for k in keys)
            passed_over = [k for k, t in visible.items() if k not in keys and t < latest_taken]
            assert not passed_over, (
                f"claim took an item visible since {latest_taken} but left {passed_over}, "
                "visible earlier: the one that became visible first is claimed first"
            )
            if self.ordered:
                times = [visible[k] for k in keys]
                assert times == sorted(times), f"claim returned items out of order: {times}"
        for c in got:
            assert (c.owner, c.expires_at) == (owner, self.now + lease), (
                f"claim of {c.item.step!r}: owner/expiry {(c.owner, c.expires_at)}, expected "
                f"{(owner, self.now + lease)}"
            )
            entry = self.entries[_key(c.item)]
            stale = [old for old in self.claims if _key(old.item) == _key(c.item)]
            assert all(old.token != c.token for old in stale), "a re-claim reused a token"
            entry.token, entry.expires_at = c.token, c.expires_at
        self.claims.extend(got)

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        chosen = data.draw(
            st.lists(
                st.sampled_from(self.claims),
                min_size=1,
                max_size=3,
                unique_by=lambda c: (_key(c.item), c.token),
            )
        )
        answers = self._check("ack", chosen, self.queue.ack(chosen))
        for claim, ok in zip(chosen, answers, strict=True):
            if ok:
                del self.entries[_key(claim.item)]

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data(), delay=st.sampled_from([0.0, 2.0, 6.0]))
    def nack(self, data: st.DataObject, delay: float) -> None:
        chosen = data.draw(
            st.lists(
                st.sampled_from(self.claims),
                min_size=1,
                max_size=2,
                unique_by=lambda c: (_key(c.item), c.token),
            )
        )
        answers = self._check("nack", chosen, self.queue.nack(chosen, delay, self.now))
        for claim, ok in zip(chosen, answers, strict=True):
            if ok:
                entry = self.entries[_key(claim.item)]
                entry.token = entry.expires_at = None
                entry.visible_at = self.now + delay

    @precondition(lambda self: bool(self.claims))
    @rule(data=st.data(), lease=st.sampled_from([1.0, 10.0]))
    def extend(self, data: st.DataObject, lease: float) -> None:
        claim = data.draw(st.sampled_from(self.claims))
        want = self._current(claim)
        got = self.queue.extend([claim], lease, self.now)
        assert len(got) == 1, f"extend returned {len(got)} answers for 1 claim"
        renewed = got[0]
        assert want is None or (renewed is not None) == want, (
            f"extend of {claim.item.step!r} (token {claim.token}) returned {renewed}; the claim "
            + ("is current" if want else "is no longer current")
        )
        if renewed is not None:
            assert _key(renewed.item) == _key(claim.item)
            assert renewed.expires_at == self.now + lease, (
                f"extend renewed to {renewed.expires_at}, expected now + lease = {self.now + lease}"
            )
            entry = self.entries[_key(claim.item)]
            entry.token, entry.expires_at = renewed.token, renewed.expires_at
            self.claims.append(renewed)

    @rule(step=st.sampled_from([0.5, 1.0, 2.0, 5.0]))
    def advance(self, step: float) -> None:
        self.now += step

    @rule()
    def drain_delivers_everything_once(self) -> None:
        """At-least-once: far in the future, every key not acked is delivered, each once."""
        self.now += 1000.0
        got = self.queue.claim("drainer", 10_000, 1.0, self.now)
        keys = sorted(_key(c.item) for c in got)
        assert len(keys) == len(set(keys)), f"one claim delivered a key twice: {keys}"
        assert keys == sorted(self.entries), (
            f"every enqueued, un-acked item must be delivered again once leases and delays "
            f"pass; delivered {keys}, expected {sorted(self.entries)}"
        )
        assert self.queue.ack(got) == [True] * len(got)
        self.entries.clear()
        self.claims.clear()

    @invariant()
    def length_matches(self) -> None:
        held = len(self.queue)
        assert held == len(self.entries), (
            f"len(queue) is {held}, but {len(self.entries)} items are waiting or claimed "
            f"({sorted(self.entries)})"
        )
