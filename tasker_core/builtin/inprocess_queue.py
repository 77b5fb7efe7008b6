"""The in-process queue (scheme ``memory``): the embedded engine's work queue.

Waiting entries ``(visible_at, seq, key)`` live in a FIFO while they arrive in that order (the
engine enqueues at "now", so nearly always: O(1) each) and in a heap otherwise; a claim takes the
smaller head of the two, which keeps the (visible_at, enqueue order) order exactly. A claims table,
one lock and a condition for ``wait`` complete it.
It keeps nothing across processes: after a crash the store's ``enqueued`` steps are enqueued
again by the engine on start.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

from tasker_core.models import Claim, WorkItem
from tasker_core.plugin import hookimpl

Key = tuple[str, str]


class InProcessQueue:
    scheme = "memory"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._sleepers = 0  # threads in wait(): with none, enqueue and nack skip the notify
        self._ready: deque[tuple[float, int, Key]] = deque()  # (visible_at, seq, key), sorted
        self._heap: list[tuple[float, int, Key]] = []  # entries that arrived out of order
        self._items: dict[Key, WorkItem] = {}
        self._waiting: dict[Key, int] = {}  # key -> seq of its live heap entry
        self._claims: dict[Key, Claim] = {}
        self._seq = itertools.count()
        self._tokens = itertools.count(1)

    def enqueue(self, items: Sequence[WorkItem]) -> None:
        with self._cond:
            known = self._items
            push = self._push
            for item in items:
                key = (item.task_id, item.step)
                if key in known:
                    continue
                known[key] = item
                push(key, item.available_at)
            if self._sleepers:
                self._cond.notify_all()

    def _push(self, key: Key, at: float) -> None:
        seq = next(self._seq)
        self._waiting[key] = seq
        ready = self._ready
        if not ready or ready[-1][0] <= at:  # seq grows: the FIFO stays sorted
            ready.append((at, seq, key))
        else:
            heapq.heappush(self._heap, (at, seq, key))

    def claim(self, owner: str, limit: int, lease: float, now: float) -> list[Claim]:
        out: list[Claim] = []
        with self._lock:
            self._reclaim_expired(now)
            ready = self._ready
            heap = self._heap
            waiting = self._waiting
            items = self._items
            claims = self._claims
            tokens = self._tokens
            expires = now + lease
            while len(out) < limit:
                if ready and (not heap or ready[0] < heap[0]):
                    at, seq, key = ready[0]
                    if at > now:
                        break
                    ready.popleft()
                elif heap:
                    at, seq, key = heap[0]
                    if at > now:
                        break
                    heapq.heappop(heap)
                else:
                    break
                if waiting.get(key) != seq:
                    continue  # stale entry: acked, or re-pushed later
                del waiting[key]
                claim = claims[key] = Claim(items[key], owner, next(tokens), expires)
                out.append(claim)
        return out

    def _reclaim_expired(self, now: float) -> None:
        if not self._claims:
            return
        expired = [k for k, c in self._claims.items() if c.expires_at < now]
        for key in expired:
            claim = self._claims.pop(key)
            self._push(key, claim.expires_at)

    def _current(self, claim: Claim) -> bool:
        key = (claim.item.task_id, claim.item.step)
        held = self._claims.get(key)
        return held is not None and held.token == claim.token

    def ack(self, claims: Sequence[Claim]) -> list[bool]:
        out = []
        with self._lock:
            held = self._claims
            items = self._items
            for claim in claims:
                item = claim.item
                key = (item.task_id, item.step)
                current = held.get(key)
                ok = current is not None and current.token == claim.token
                if ok:
                    del held[key]
                    del items[key]
                out.append(ok)
        return out

    def nack(self, claims: Sequence[Claim], delay: float, now: float) -> list[bool]:
        out = []
        with self._cond:
            for claim in claims:
                ok = self._current(claim)
                if ok:
                    key = (claim.item.task_id, claim.item.step)
                    del self._claims[key]
                    self._push(key, now + delay)
                out.append(ok)
            if self._sleepers:
                self._cond.notify_all()
        return out

    def extend(self, claims: Sequence[Claim], lease: float, now: float) -> list[Claim | None]:
        out: list[Claim | None] = []
        with self._lock:
            for claim in claims:
                if self._current(claim):
                    renewed = Claim(claim.item, claim.owner, claim.token, now + lease)
                    self._claims[(claim.item.task_id, claim.item.step)] = renewed
                    out.append(renewed)
                else:
                    out.append(None)
        return out

    def wait(self, timeout: float) -> bool:
        with self._cond:
            self._sleepers += 1
            try:
                return self._cond.wait(timeout)
            finally:
                self._sleepers -= 1

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._ready.clear()
            self._heap.clear()
            self._items.clear()
            self._waiting.clear()
            self._claims.clear()
            self._cond.notify_all()


def _make_queue(url: str, config: Any) -> InProcessQueue:
    return InProcessQueue()


@hookimpl
def tasker_register_queues(register: Any) -> None:
    register("memory", _make_queue)
