"""The ``zmq`` event sink: lifecycle events out of an XPUB socket, never blocking the engine.

Threads: the engine's event bus calls :meth:`ZmqSink.publish` on the sink's bus thread, which
only hands the batch over: one append to a bounded queue, whatever the batch's size. The sink's
own I/O thread is the only thread that ever touches the ZeroMQ socket (ZeroMQ sockets are not
thread-safe): for each batch it skips the events nobody subscribes to, encodes the others, then
sends them, and between batches it reads subscriptions. The queue holds at most
``events.zmq.hwm`` events, so the sink's memory is bounded on top of the bus's buffer. All the
per-event work on one thread is the cheapest shape in Python: nothing is queued per event, and
only one of the sink's threads competes with the engine for the GIL.

Sends never wait: the socket is an XPUB with ``XPUB_NODROP`` and every send is ``NOBLOCK``, so
an event that meets a full high-water mark (a slow subscriber, a slow or absent proxy) is dropped
on the spot and counted. XPUB rather than PUB because it also receives the subscriptions: events
nobody subscribes to are counted and dropped before they cost an encoding, "nobody listens" is
told apart from "too slow", and :meth:`ZmqSink.wait_for_subscriptions` answers ZeroMQ's
slow-joiner problem.

The I/O thread sends each batch with one call of the native sender (:mod:`tasker_zmq.sender`):
every frame through pyzmq's own libzmq with the GIL released once, instead of once per frame.
Without it (not built, or pyzmq's libzmq not identifiable) the sink sends through pyzmq; the
wire is the same either way, and :attr:`ZmqSink.sender` says which path is in use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import zmq
from tasker_core import ConfigError, Event, encode_event_payloads
from zmq.auth.thread import ThreadAuthenticator

from tasker_zmq.auth import SUBSCRIBERS, start_authenticator
from tasker_zmq.keys import KeyPair, load_public_key, load_secret_key
from tasker_zmq.options import SECTION, ZmqOptions
from tasker_zmq.sender import NativeSender, open_native_sender

__all__ = ["ZmqSink"]

log = logging.getLogger("tasker.zmq")

_DROP_KINDS = ("no_subscriber", "hwm", "unencodable", "closed")
_START_TIMEOUT = 30.0  # opening a socket is immediate; this only guards against a wedged thread
_CLOSE_GRACE = 5.0
_GATHER_MS = 10
# What json raises for data it cannot write (RecursionError: nested too deep).
_UNENCODABLE = (TypeError, ValueError, RecursionError)


class _Keys:
    """The CURVE material a socket needs, loaded (and checked) before the I/O thread starts."""

    def __init__(self, options: ZmqOptions) -> None:
        curve = options.curve
        self.server_public: bytes | None = None
        self.own: KeyPair | None = None
        self.authorized: Path | None = None
        if curve is None:
            return
        try:
            if curve.server_public_key is not None:
                self.server_public = load_public_key(curve.server_public_key)
            if curve.client_secret_key is not None:
                self.own = load_secret_key(curve.client_secret_key)
            if curve.server_secret_key is not None:
                self.own = load_secret_key(curve.server_secret_key)
        except ValueError as exc:
            raise ConfigError(str(exc), key_path=f"{SECTION}.curve") from None
        if curve.authorized_keys is not None:
            self.authorized = curve.authorized_keys


class ZmqSink:
    """Publishes events as ``[name, JSON]`` messages; see the module docstring for threading.

    ``stats()`` counts what was sent and what was dropped, by reason; drops at the high-water
    mark are logged at WARNING every ``events.zmq.log_interval``, drops for want of any
    subscriber at DEBUG (nobody tailing the bus is normal).
    """

    name = "zmq"

    def __init__(self, options: ZmqOptions, *, native_sender: bool = True) -> None:
        """Open the socket on the I/O thread; ``native_sender=False`` forces pyzmq's path."""
        self.options = options
        self._want_native = native_sender
        self._native: NativeSender | None = None
        self._sender = "pyzmq"  # the path chosen at open; _native is dropped at close
        self._keys = _Keys(options)
        self._cond = threading.Condition()
        self._queue: deque[list[Event]] = deque()  # batches, in the order published
        self._queued = 0  # events in self._queue
        self._idle = False
        self._urgent = max(1, options.hwm // 2)
        self._closing = False
        self._stopped = False
        self._subscriptions: frozenset[bytes] = frozenset()
        # The I/O thread's routing, per event name, for the current subscriptions: the topic
        # of names someone subscribes to, and the names nobody does.
        self._topics: dict[str, bytes] = {}
        self._unwanted: set[str] = set()
        self._sent = 0
        self._drops = dict.fromkeys(_DROP_KINDS, 0)
        self._reported = dict(self._drops)
        self._endpoint = options.endpoint
        self._start_errors: list[BaseException] = []
        self._ready = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread = threading.Thread(target=self._run, name="tasker-zmq-io", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError(f"the zmq sink's I/O thread did not start within {_START_TIMEOUT}s")
        if self._start_errors:
            self._close_pipe()
            raise self._start_errors[0]

    # -- the bus side ------------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Hand the events to the I/O thread (one append per batch); never waits."""
        if self._shut():
            self._count("closed", len(events))
            return
        if not self._subscriptions:  # the I/O thread swaps in a new set on a change
            self._count("no_subscriber", len(events))
            return
        batch = list(events)  # the caller may reuse its sequence once this returns
        with self._cond:
            if self._shut():  # closed meanwhile
                self._drops["closed"] += len(batch)
                return
            room = self.options.hwm - self._queued
            if len(batch) > room:
                self._drops["hwm"] += len(batch) - max(room, 0)
                batch = batch[: max(room, 0)]
                if not batch:
                    return
            before = self._queued
            self._queue.append(batch)
            self._queued += len(batch)
            if self._idle or before < self._urgent <= self._queued:
                self._idle = False
                self._wake()

    def close(self) -> None:
        """Send what is queued, then give the socket ``linger`` to flush; idempotent."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._wake()
        self._thread.join(self.options.linger + _CLOSE_GRACE)
        if self._thread.is_alive():
            log.warning("zmq sink: the I/O thread did not stop in time; leaving it behind")
            return
        self._close_pipe()
        stats = self.stats()
        if stats["dropped"]:
            log.info(
                "zmq sink closed: %d events sent, %d dropped %s",
                stats["sent"],
                stats["dropped"],
                {k: stats[k] for k in _DROP_KINDS if stats[k]},
            )

    # -- introspection -----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The address in use (a bound ``*`` port resolved to the port the OS picked)."""
        return self._endpoint

    @property
    def dropped(self) -> int:
        with self._cond:
            return sum(self._drops.values())

    def stats(self) -> dict[str, int]:
        """``sent``, ``dropped``, drops by reason (no_subscriber, hwm, unencodable, closed), and
        ``native_sender``: 1 when batches go out through the native sender, 0 through pyzmq."""
        with self._cond:
            return {
                "sent": self._sent,
                "dropped": sum(self._drops.values()),
                **self._drops,
                "native_sender": int(self._sender == "native"),
            }

    @property
    def sender(self) -> str:
        """``"native"`` (one GIL release per batch) or ``"pyzmq"`` (one per frame)."""
        return self._sender

    def subscriptions(self) -> frozenset[str]:
        """The topic prefixes someone downstream subscribes to, as this socket last heard."""
        return frozenset(s.decode(errors="replace") for s in self._subscriptions)

    def queued(self) -> int:
        """Events waiting for the I/O thread (at most ``events.zmq.hwm``)."""
        with self._cond:
            return self._queued

    def wait_for_subscriptions(self, prefixes: Iterable[str] = (), timeout: float = 5.0) -> bool:
        """Wait until each of ``prefixes`` is subscribed (any subscription if none is given).

        The slow-joiner remedy: ZeroMQ drops what a PUB socket sends before a subscriber's
        subscription has reached it, so a short-lived publisher that must not miss its audience
        waits here first. False when ``timeout`` passes first.
        """
        wanted = {p.encode() for p in prefixes}
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (wanted <= self._subscriptions if wanted else self._subscriptions):
                left = deadline - time.monotonic()
                if left <= 0 or self._stopped:
                    return False
                self._cond.wait(left)
            return True

    # -- the I/O thread ----------------------------------------------------------------------

    def _wake(self) -> None:
        # A full pipe already holds wake-ups: the thread will look anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def _close_pipe(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _shut(self) -> bool:
        return self._closing or self._stopped

    def _count(self, kind: str, n: int) -> None:
        with self._cond:
            self._drops[kind] += n

    def _run(self) -> None:
        context = zmq.Context()
        auth: ThreadAuthenticator | None = None
        socket: zmq.Socket[bytes] | None = None
        try:
            try:
                socket, auth = self._open(context)
                if self._want_native:
                    self._native = open_native_sender(socket)
                    self._sender = "pyzmq" if self._native is None else "native"
            except BaseException as exc:
                self._start_errors.append(exc)
                return
            finally:
                self._ready.set()
            try:
                self._serve(socket)
            except Exception:
                log.exception("zmq sink: the I/O thread failed; events are dropped from now on")
        finally:
            with self._cond:
                self._stopped = True
                self._drops["closed"] += self._queued
                self._queue.clear()
                self._queued = 0
                self._cond.notify_all()
            self._native = None  # never used past the socket's life
            if socket is not None:
                socket.close(linger=int(self.options.linger * 1000))
            if auth is not None:
                auth.stop()
            context.term()  # waits for queued messages, at most `linger`

    def _open(
        self, context: zmq.Context[zmq.Socket[bytes]]
    ) -> tuple[zmq.Socket[bytes], ThreadAuthenticator | None]:
        options, keys = self.options, self._keys
        socket: zmq.Socket[bytes] = context.socket(zmq.XPUB)
        auth: ThreadAuthenticator | None = None
        try:
            socket.setsockopt(zmq.SNDHWM, options.hwm)
            socket.setsockopt(zmq.XPUB_NODROP, 1)
            socket.setsockopt(zmq.LINGER, int(options.linger * 1000))
            if keys.own is not None:
                socket.curve_secretkey = keys.own.secret
                socket.curve_publickey = keys.own.public
            if keys.server_public is not None:
                socket.curve_serverkey = keys.server_public
            elif keys.own is not None:
                socket.curve_server = True
                socket.zap_domain = SUBSCRIBERS.encode()
                if keys.authorized is not None:
                    auth = start_authenticator(context, {SUBSCRIBERS: keys.authorized})
            key = "bind" if options.binds else "publish"
            try:
                if options.binds:
                    socket.bind(options.endpoint)
                else:
                    socket.connect(options.endpoint)
            except zmq.ZMQError as exc:
                verb = "bind" if options.binds else "connect to"
                raise ConfigError(
                    f"cannot {verb} {options.endpoint!r}: {exc}", key_path=f"{SECTION}.{key}"
                ) from None
            if options.binds:
                self._endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            socket.close(linger=0)
            if auth is not None:
                auth.stop()
            raise
        return socket, auth

    def _serve(self, socket: zmq.Socket[bytes]) -> None:
        poller = zmq.Poller()
        poller.register(socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        interval = self.options.log_interval
        next_report = time.monotonic() + interval
        while True:
            self._read_subscriptions(socket)
            with self._cond:
                batch, self._queue = self._queue, deque()
                self._queued = 0
                closing = self._closing
                self._idle = not batch
            if batch:
                self._send(socket, batch)
            if time.monotonic() >= next_report:
                self._report(interval)
                next_report = time.monotonic() + interval
            if closing and not batch:
                return
            if batch:
                # Busy: let events gather for a moment rather than wake per bus batch; a
                # subscription, close() or a queue half full cuts the wait short.
                poller.poll(_GATHER_MS)
            else:
                wait_ms = max(0.0, next_report - time.monotonic()) * 1000
                poller.poll(int(wait_ms) + 1)
            self._drain_wakeups()

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _read_subscriptions(self, socket: zmq.Socket[bytes]) -> None:
        """Apply (un)subscription messages: ``\\x01prefix`` subscribes, ``\\x00prefix`` leaves."""
        if not _readable(socket):
            return
        subscriptions = set(self._subscriptions)
        while _readable(socket):
            message = socket.recv()
            kind, prefix = message[:1], message[1:]
            if kind == b"\x01":
                subscriptions.add(prefix)
            elif kind == b"\x00":
                subscriptions.discard(prefix)
        self._topics.clear()
        self._unwanted.clear()
        with self._cond:  # publish() reads the reference without the lock; waiters with it
            self._subscriptions = frozenset(subscriptions)
            self._cond.notify_all()

    def _send(self, socket: zmq.Socket[bytes], batches: Iterable[list[Event]]) -> None:
        """Per batch: skip the unwanted events, encode the rest in one native call, send them.

        Encoding a whole batch before sending keeps the sends together: the native sender then
        releases the GIL once for the batch (pyzmq's path once per frame, and between
        back-to-back sends the engine's threads rarely take it over), and libzmq's I/O thread
        writes the messages in fewer wake-ups.
        """
        topics = self._topics
        counts = [0, 0]  # sent, refused at the high-water mark
        unwanted = 0
        # Someone subscribes to everything: no event to skip, and the native sender reads each
        # topic from the event's name itself.
        everything = self._native is not None and b"" in self._subscriptions
        try:
            for events in batches:
                if everything and self._native is not None:
                    _add_native(counts, self._native.send_events(events, self._encode(events)))
                    continue
                wanted: list[Event] = []
                wanted_topics: list[bytes] = []
                for event in events:
                    topic = topics.get(event.name)
                    if topic is None:
                        topic = self._route(event.name)
                        if topic is None:
                            unwanted += 1
                            continue
                    wanted.append(event)
                    wanted_topics.append(topic)
                if wanted:
                    self._send_frames(socket, wanted_topics, self._encode(wanted), counts)
        finally:  # counts stay exact even when a send fails
            with self._cond:
                self._sent += counts[0]
                self._drops["hwm"] += counts[1]
                self._drops["no_subscriber"] += unwanted

    def _send_frames(
        self,
        socket: zmq.Socket[bytes],
        topics: list[bytes],
        payloads: list[bytes | None],
        counts: list[int],
    ) -> None:
        """Send ``[topic, payload]`` pairs (None: skipped), adding to ``counts`` as they go."""
        if self._native is not None:
            _add_native(counts, self._native.send(topics, payloads))
            return
        # The backend's send: the pyzmq subclass's override only adds RADIO/SERVER options,
        # and skipping it saves a Python call per frame.
        send = zmq.backend.Socket.send
        more, last = zmq.SNDMORE | zmq.NOBLOCK, zmq.NOBLOCK
        for topic, payload in zip(topics, payloads, strict=True):
            if payload is None:
                continue
            try:
                send(socket, topic, more)
            except zmq.Again:
                counts[1] += 1
                continue
            # libzmq checks the high-water mark per whole message: once the first frame is
            # in, the second cannot meet a full pipe, so this never raises Again.
            send(socket, payload, last)
            counts[0] += 1

    def _encode(self, events: list[Event]) -> list[bytes | None]:
        """The events' payloads; None (counted, logged) for an event that is not plain JSON.

        One native call for the batch; only when it fails is each event encoded alone, to drop
        just the bad ones.
        """
        try:
            # Nones only come from the per-event path below; the list is the callee's, fresh.
            return cast("list[bytes | None]", encode_event_payloads(events))
        except _UNENCODABLE:
            pass
        payloads: list[bytes | None] = []
        for event in events:
            try:
                payloads.append(encode_event_payloads((event,))[0])
            except _UNENCODABLE as exc:
                payloads.append(None)
                self._count("unencodable", 1)
                log.warning(
                    "zmq sink: dropped %s event %s: not plain JSON (%s)", event.name, event.id, exc
                )
        return payloads

    def _route(self, name: str) -> bytes | None:
        """The topic of ``name`` if someone subscribes to it (remembered), else None."""
        if name in self._unwanted:
            return None
        topic = name.encode()
        if any(topic.startswith(prefix) for prefix in self._subscriptions):
            self._topics[name] = topic
            return topic
        self._unwanted.add(name)
        return None

    def _report(self, interval: float) -> None:
        with self._cond:
            new = {k: self._drops[k] - self._reported[k] for k in _DROP_KINDS}
            self._reported = dict(self._drops)
        if new["hwm"]:
            log.warning(
                "zmq sink: dropped %d events in the last %gs at the high-water mark "
                "(events.zmq.hwm=%d) on %s: a subscriber or the proxy is too slow or gone",
                new["hwm"],
                interval,
                self.options.hwm,
                self._endpoint,
            )
        if new["no_subscriber"]:
            log.debug(
                "zmq sink: %d events had no subscriber on %s in the last %gs",
                new["no_subscriber"],
                self._endpoint,
                interval,
            )


def _add_native(counts: list[int], result: tuple[int, int, int]) -> None:
    """Add a native send's ``(sent, full, error)`` to ``counts``; raise its error, if any."""
    sent, full, error = result
    counts[0] += sent
    counts[1] += full
    if error:
        raise zmq.ZMQError(error)


def _readable(socket: zmq.Socket[bytes]) -> bool:
    """A message is waiting (a cheap option read, no poll call)."""
    return bool(cast(int, socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
