"""A subscriber: receive events from the bus and print them, one line each.

Used by ``tasker events tail``; also a small library for programs that want the events as
dicts (:class:`Subscriber`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, TextIO

import zmq

from tasker_zmq.keys import KeyPair
from tasker_zmq.wire import WireError, decode

__all__ = ["Subscriber", "format_event", "tail"]

log = logging.getLogger("tasker.zmq")

_POLL_MS = 100
_MAX_BATCH = 1000  # lines written between flushes at most
_NAME_WIDTH = 20  # len("step.retry_scheduled")
_SHOWN_FIRST = ("step", "attempt")
_SKIP = frozenset({"name", "id", "time", "task_id", "namespace", "workflow", "version"})


class Subscriber:
    """A SUB socket on one address with prefix filters (all events when none are given).

    Hands out events one at a time, whatever number a message carries. Not thread-safe, like
    the socket it wraps: use it from the thread that made it.
    """

    def __init__(
        self,
        connect: str,
        filters: Sequence[str] = (),
        *,
        server_key: bytes | None = None,
        client_key: KeyPair | None = None,
        hwm: int = 100_000,
    ) -> None:
        if (server_key is None) != (client_key is None):
            raise ValueError("CURVE needs both the server's public key and a client key pair")
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._socket: zmq.Socket[bytes] = self._context.socket(zmq.SUB)
        self.malformed = 0  # messages skipped (each, however many events it claimed)
        self._pending: deque[dict[str, Any]] = deque()  # the rest of the last message's events
        try:
            self._socket.setsockopt(zmq.RCVHWM, hwm)
            self._socket.setsockopt(zmq.LINGER, 0)
            if server_key is not None and client_key is not None:
                self._socket.curve_serverkey = server_key
                self._socket.curve_publickey = client_key.public
                self._socket.curve_secretkey = client_key.secret
            for prefix in filters or ("",):
                self._socket.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self._socket.connect(connect)
        except BaseException:
            self.close()
            raise

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The next well-formed event, or None if none arrives within ``timeout`` seconds."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            try:  # a message is usually waiting under load: skip the poll call then
                frames = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                left = max(0.0, deadline - time.monotonic())
                if not self._socket.poll(int(left * 1000)):
                    return None
                frames = self._socket.recv_multipart()
            try:
                events = decode(frames)
            except WireError as exc:
                self.malformed += 1
                log.warning("skipped a malformed message: %s", exc)
                continue
            if len(events) > 1:
                self._pending.extend(events[1:])
            return events[0]

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


def format_event(event: dict[str, Any]) -> str:
    """One readable line: time, name, workflow, task, then the event's own fields."""
    stamp = event.get("time")
    if isinstance(stamp, int | float):
        clock = time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
    else:
        clock = "--:--:--.---"
    workflow = f"{event.get('namespace')}/{event.get('workflow')}@{event.get('version')}"
    parts = [
        clock,
        str(event.get("name", "?")).ljust(_NAME_WIDTH),
        workflow,
        f"task={str(event.get('task_id', '?'))[:12]}",
    ]
    keys = [k for k in _SHOWN_FIRST if k in event]
    keys += [k for k in event if k not in _SKIP and k not in _SHOWN_FIRST]
    parts += [f"{key}={_value(key, event[key])}" for key in keys]
    return " ".join(parts)


def _value(key: str, value: Any) -> str:
    if key == "duration" and isinstance(value, int | float):
        return f"{value * 1000:.1f}ms" if value < 1 else f"{value:.3f}s"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, str):
        return json.dumps(value) if not value or any(c.isspace() for c in value) else value
    return json.dumps(value, separators=(",", ":"))


def tail(
    subscriber: Subscriber,
    out: TextIO,
    stop: threading.Event,
    *,
    as_json: bool = False,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    """Print events until ``stop`` is set, ``count`` events were printed or ``timeout`` passed.

    Returns how many events were printed. Output is flushed whenever the socket runs dry, so a
    pipe reader sees events as they come without a flush per line under load.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    printed = 0
    while not stop.is_set() and (count is None or printed < count):
        wait = _POLL_MS / 1000
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
            if wait <= 0:
                break
        event = subscriber.receive(wait)
        if event is None:
            continue
        batch = [event]
        while len(batch) < _MAX_BATCH and (count is None or printed + len(batch) < count):
            more = subscriber.receive(0)
            if more is None:
                break
            batch.append(more)
        for item in batch:
            line = json.dumps(item, separators=(",", ":")) if as_json else format_event(item)
            out.write(line + "\n")
        out.flush()
        printed += len(batch)
    return printed
