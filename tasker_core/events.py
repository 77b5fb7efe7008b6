"""Event delivery: bounded per-sink buffers drained by one thread per sink.

Orchestration only ever appends to buffers (never waits on a sink). When a sink is slower than
the engine, its buffer drops the oldest events and counts them; when a sink raises, the batch is
logged, counted and skipped. So a slow or broken sink can neither block nor break a run.
``subscribe("step.*", fn)`` adds in-process subscribers, served by their own sink.

An *inline* sink (``inline = True``) is called on the emitting thread instead, with no buffer or
thread here: it promises that ``publish`` only hands the events to a bounded queue of its own
(dropping and counting what does not fit) and returns, so it cannot block a run either. That is
for sinks whose real work runs outside the GIL (the ``zmq`` sink's native publisher): a Python
delivery thread would take the GIL from the engine for every batch it handles.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence

from attrs import define

from tasker_core.models import JSON, Event, Task
from tasker_core.protocols import EventSink

log = logging.getLogger("tasker.events")

Subscriber = Callable[[Event], None]


class EventIds:
    """Unique event ids without a uuid4 per event: a per-process random prefix and a counter."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().hex[:12]
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


@define
class SinkStats:
    delivered: int = 0
    dropped: int = 0
    failures: int = 0


class _SinkWorker:
    def __init__(self, sink: EventSink, buffer_size: int, batch_size: int, interval: float) -> None:
        self.sink = sink
        self.stats = SinkStats()
        self._buffer: deque[Event] = deque()
        self._capacity = buffer_size
        self._batch_size = batch_size
        self._interval = interval
        self._cond = threading.Condition()
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(
            target=self._run, name=f"tasker-sink-{sink.name}", daemon=True
        )
        self._thread.start()

    def offer(self, events: Sequence[Event]) -> None:
        with self._cond:
            overflow = len(self._buffer) + len(events) - self._capacity
            if overflow > 0:
                for _ in range(min(overflow, len(self._buffer))):
                    self._buffer.popleft()
                self.stats.dropped += overflow
                events = events[max(0, len(events) - self._capacity) :]
            self._buffer.extend(events)
            if len(self._buffer) >= self._batch_size:
                self._cond.notify()  # a full batch is worth a wake-up; else the timed wait gets it

    def pending(self) -> int:
        with self._cond:
            return len(self._buffer) + (1 if self._busy else 0)

    def buffered(self) -> int:
        with self._cond:
            return len(self._buffer)

    def flush(self, deadline: float) -> bool:
        with self._cond:
            while self._buffer or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
            return True

    def close(self, timeout: float) -> None:
        self.flush(time.monotonic() + timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        try:
            self.sink.close()
        except Exception:
            log.exception("event sink %r failed to close", self.sink.name)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._buffer and not self._closing:
                    self._cond.wait(self._interval)
                if not self._buffer and self._closing:
                    return
                n = min(self._batch_size, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(n)]
                self._busy = True
            try:
                self.sink.publish(batch)
                self.stats.delivered += len(batch)
            except Exception:
                self.stats.failures += 1
                log.exception("event sink %r failed on a batch of %d events", self.sink.name, n)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()


class _InlineSink:
    """A sink called on the emitting thread (see the module docstring); a raise is logged and
    counted, never passed to the engine."""

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.stats = SinkStats()

    def offer(self, events: Sequence[Event]) -> None:
        try:
            self.sink.publish(events)
            self.stats.delivered += len(events)
        except Exception:
            self.stats.failures += 1
            log.exception(
                "event sink %r failed on a batch of %d events", self.sink.name, len(events)
            )

    def pending(self) -> int:
        return 0

    def buffered(self) -> int:
        return 0

    def flush(self, deadline: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        try:
            self.sink.close()
        except Exception:
            log.exception("event sink %r failed to close", self.sink.name)


def is_inline(sink: EventSink) -> bool:
    """Whether ``sink`` asks to be called on the emitting thread (``inline = True``)."""
    return getattr(sink, "inline", False) is True


class SubscriberSink:
    """Calls in-process subscribers whose glob pattern matches the event name."""

    name = "subscribers"

    def __init__(self) -> None:
        self._subs: list[tuple[str, Subscriber]] = []
        self._lock = threading.Lock()

    def add(self, pattern: str, fn: Subscriber) -> Callable[[], None]:
        entry = (pattern, fn)
        with self._lock:
            self._subs.append(entry)

        def unsubscribe() -> None:
            with self._lock:
                if entry in self._subs:
                    self._subs.remove(entry)

        return unsubscribe

    def publish(self, events: Sequence[Event]) -> None:
        with self._lock:
            subs = list(self._subs)
        for event in events:
            for pattern, fn in subs:
                if fnmatch.fnmatchcase(event.name, pattern):
                    try:
                        fn(event)
                    except Exception:
                        log.exception("subscriber %r failed on %s", pattern, event.name)

    def close(self) -> None:
        with self._lock:
            self._subs.clear()


class EventBus:
    """Fans events out to every sink's buffer; the engine's only door to event delivery."""

    def __init__(
        self,
        sinks: Sequence[EventSink],
        *,
        buffer_size: int,
        batch_size: int,
        flush_interval: float,
    ) -> None:
        self._settings = (buffer_size, batch_size, flush_interval)
        self._workers: list[_SinkWorker | _InlineSink] = [
            _InlineSink(s) if is_inline(s) else _SinkWorker(s, *self._settings) for s in sinks
        ]
        self._subscribers: SubscriberSink | None = None
        self._lock = threading.Lock()
        self.ids = EventIds()

    @property
    def listening(self) -> bool:
        """Whether any sink or subscriber would receive an event (else building one is waste)."""
        return bool(self._workers)

    def make(
        self,
        name: str,
        *,
        task_id: str,
        namespace: str,
        workflow: str,
        version: str,
        time: float,
        **data: JSON,
    ) -> Event:
        return Event(name, self.ids.next(), time, task_id, namespace, workflow, version, data)

    def task_event(
        self, task: Task, name: str, time: float, data: dict[str, JSON] | None = None
    ) -> Event:
        """:meth:`make` for ``task``, positionally: engines make several events a step, and a
        call collecting keyword arguments into ``**data`` takes CPython's slowest call path
        (``data`` is kept as given, not copied)."""
        return Event(
            name,
            self.ids.next(),
            time,
            task.id,
            task.namespace,
            task.name,
            task.version,
            {} if data is None else data,
        )

    def emit(self, events: Sequence[Event]) -> None:
        if events:
            for worker in self._workers:
                worker.offer(events)

    def subscribe(self, pattern: str, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(event)`` for events whose name matches the glob ``pattern`` ("step.*")."""
        with self._lock:
            if self._subscribers is None:
                self._subscribers = SubscriberSink()
                self._workers.append(_SinkWorker(self._subscribers, *self._settings))
            return self._subscribers.add(pattern, fn)

    def stats(self) -> dict[str, SinkStats]:
        return {w.sink.name: w.stats for w in self._workers}

    def buffered(self) -> int:
        """Events waiting in all buffers (bounded by buffer_size per sink)."""
        return sum(w.buffered() for w in self._workers)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every buffered event was handed to its sink; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(w.flush(deadline) for w in self._workers)

    def close(self, timeout: float = 5.0) -> None:
        for worker in self._workers:
            worker.close(timeout)
