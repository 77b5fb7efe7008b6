"""The ``zmq`` event sink: lifecycle events out of an XPUB socket, never blocking the engine.

Two ways to send, the same wire either way (:attr:`ZmqSink.sender` says which is in use):

- **native** (the usual one): the sink is an *inline* sink (see :class:`tasker_core.EventSink`):
  the engine's thread that emits a batch calls :meth:`ZmqSink.publish`, which hands it to the
  native publisher (:mod:`tasker_zmq.sender`) in one call: it skips the events nobody subscribes
  to, encodes the others straight into messages (:func:`tasker_core.encode_event_runs`) while
  they are still in cache, and queues them. The publisher's own thread owns the socket: it sends
  the queue and reads subscriptions without ever taking the GIL, so the engine pays for the
  encoding and little else. Its queue is bounded (``events.zmq.hwm`` events): a message that
  does not fit is dropped and counted, never waited on.
- **pyzmq** (the fallback, when the native publisher is not built or pyzmq's libzmq cannot be
  identified): the event bus gives the sink a delivery thread of its own, which calls
  :meth:`ZmqSink.publish` with batches from the bus's bounded buffer; it filters, encodes and
  sends through pyzmq right there. ZeroMQ sockets are not thread-safe, so the socket then has
  one owner at a time: whichever thread holds the sink's socket lock (the lock's hand-over is the
  full memory barrier ZeroMQ asks for when a socket moves between threads).

Either way the sink's I/O thread opens and closes the socket and logs drops; in pyzmq's mode it
also reads subscriptions while no batch comes (asleep on the socket's ``ZMQ_FD``).

Sends never wait: the socket is an XPUB with ``XPUB_NODROP`` and every send is non-blocking, so
a message that meets a full high-water mark (a slow subscriber, a slow or absent proxy) is
dropped on the spot and its events counted. XPUB rather than PUB because it also receives the
subscriptions: events nobody subscribes to are counted and dropped before they cost an
encoding, "nobody listens" is told apart from "too slow", and
:meth:`ZmqSink.wait_for_subscriptions` answers ZeroMQ's slow-joiner problem.

Consecutive events of a batch that share a name go out as one message (the wire format's
version 2, :mod:`tasker_zmq.wire`): a fan-out's runs of ``step.started`` and ``step.completed``
then cost libzmq, the proxy and every subscriber one message each instead of one per event.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import zmq
from tasker_core import ConfigError, Event, encode_event_payloads, encode_event_runs
from zmq.auth.thread import ThreadAuthenticator

from tasker_zmq.auth import SUBSCRIBERS, start_authenticator
from tasker_zmq.keys import KeyPair, load_public_key, load_secret_key
from tasker_zmq.options import SECTION, ZmqOptions
from tasker_zmq.sender import open_native_publisher
from tasker_zmq.wire import MAX_BYTES

if TYPE_CHECKING:
    from tasker_zmq._sender import Publisher as NativePublisher

__all__ = ["ZmqSink"]

log = logging.getLogger("tasker.zmq")

_DROP_KINDS = ("no_subscriber", "hwm", "unencodable", "closed")
_SUBSCRIPTION_POLL = 0.005  # how often wait_for_subscriptions looks at the native publisher's
_START_TIMEOUT = 30.0  # opening a socket is immediate; this only guards against a wedged thread
_CLOSE_GRACE = 5.0
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
    """Publishes events as ``[name, JSON lines]`` messages; see the module docstring for threading.

    ``stats()`` counts the events sent and dropped, by reason (a message refused at the
    high-water mark counts each of its events), and the messages sent; drops at the high-water
    mark are logged at WARNING every ``events.zmq.log_interval``, drops for want of any
    subscriber at DEBUG (nobody tailing the bus is normal).
    """

    name = "zmq"

    def __init__(self, options: ZmqOptions, *, native_sender: bool = True) -> None:
        """Open the socket on the I/O thread; ``native_sender=False`` forces pyzmq's path."""
        self.options = options
        self._want_native = native_sender
        self._publisher: NativePublisher | None = None  # set at open, kept after close
        self._sender = "pyzmq"  # the path chosen at open
        self._keys = _Keys(options)
        # The socket's owner is whoever holds this lock; None: not open yet, or closed.
        self._socket_lock = threading.Lock()
        self._socket: zmq.Socket[bytes] | None = None
        self._cond = threading.Condition()  # the counters, the flags, subscription waiters
        self._closing = False
        self._stopped = False
        self._subscriptions: frozenset[bytes] = frozenset()
        # pyzmq's path: routing per event name for the current subscriptions (used under the
        # socket lock): the names someone subscribes to, and the names nobody does.
        self._wanted: set[str] = set()
        self._unwanted: set[str] = set()
        self._sent = 0
        self._messages = 0
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
        self.inline = self._publisher is not None
        """Whether the bus calls :meth:`publish` on the emitting thread (the native path)."""

    # -- the bus side ------------------------------------------------------------------------

    def publish(self, events: Sequence[Event]) -> None:
        """Filter, encode and send (or queue, on the native path) the events; never waits.

        Safe to call from several threads at once. Nothing is kept: the caller may reuse its
        sequence once this returns.
        """
        publisher = self._publisher
        if publisher is not None:  # it filters, encodes (natively) and queues in one call
            try:
                publisher.publish(events)
            except _UNENCODABLE:  # nothing was queued: drop just the events that are not JSON
                publisher.publish(self._plain(events))
            return
        if self._shut():
            self._count("closed", len(events))
            return
        batch = events if type(events) is list else list(events)
        if not self._subscriptions:  # a new set is swapped in on a change
            self._count("no_subscriber", len(batch))
            return
        with self._socket_lock:
            socket = self._socket
            if socket is None or self._closing:  # closed meanwhile
                self._count("closed", len(batch))
                return
            try:
                self._send(socket, batch)
                # Sending also takes in the socket's pending commands, subscriptions among
                # them; read them now, since the I/O thread is not woken for those.
                self._read_subscriptions(socket)
            except Exception:
                log.exception("zmq sink: the socket failed; events are dropped from now on")
                self._socket = None
                with self._cond:
                    self._stopped = True
                    self._cond.notify_all()
                self._wake()  # the I/O thread closes the socket

    def close(self) -> None:
        """Stop taking events, then give the socket ``linger`` to flush; idempotent."""
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
        return sum(self._totals()[2].values())

    def stats(self) -> dict[str, int]:
        """Events ``sent``, ``dropped``, drops by reason (no_subscriber, hwm, unencodable,
        closed); ``messages`` sent (each of one or more events); ``native_sender``: 1 when
        the native publisher sends, 0 pyzmq. ``hwm`` counts the events refused at the socket's
        high-water mark and, on the native path, those that did not fit its queue."""
        sent, messages, drops = self._totals()
        return {
            "sent": sent,
            "messages": messages,
            "dropped": sum(drops.values()),
            **drops,
            "native_sender": int(self._sender == "native"),
        }

    def queued(self) -> int:
        """Events waiting in the native publisher's queue (bounded by ``events.zmq.hwm``); 0 on
        pyzmq's path, where the event bus's buffer holds them."""
        publisher = self._publisher
        return 0 if publisher is None else publisher.queued()

    @property
    def sender(self) -> str:
        """``"native"`` (the native publisher's thread sends) or ``"pyzmq"``."""
        return self._sender

    def subscriptions(self) -> frozenset[str]:
        """The topic prefixes someone downstream subscribes to, as this socket last heard."""
        return frozenset(s.decode(errors="replace") for s in self._current_subscriptions())

    def wait_for_subscriptions(self, prefixes: Iterable[str] = (), timeout: float = 5.0) -> bool:
        """Wait until each of ``prefixes`` is subscribed (any subscription if none is given).

        The slow-joiner remedy: ZeroMQ drops what a PUB socket sends before a subscriber's
        subscription has reached it, so a short-lived publisher that must not miss its audience
        waits here first. False when ``timeout`` passes first.
        """
        wanted = {p.encode() for p in prefixes}
        deadline = time.monotonic() + timeout
        if self._publisher is not None:  # its thread reads them; look every few ms
            while True:
                heard = self._current_subscriptions()
                if wanted <= heard if wanted else heard:
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or self._shut():
                    return False
                time.sleep(min(left, _SUBSCRIPTION_POLL))
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
        with contextlib.suppress(BlockingIOError, OSError):
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

    def _totals(self) -> tuple[int, int, dict[str, int]]:
        """Events sent, messages sent, and drops by kind: the sink's own counts plus, on the
        native path, what the publisher counted (refused at the high-water mark or the queue's
        bound, or after a failed send)."""
        with self._cond:
            sent, messages, drops = self._sent, self._messages, dict(self._drops)
        if self._publisher is not None:
            native_sent, native_messages, full, closed, _, unwanted = self._publisher.stats()
            sent += native_sent
            messages += native_messages
            drops["hwm"] += full
            drops["closed"] += closed
            drops["no_subscriber"] += unwanted
        return sent, messages, drops

    def _current_subscriptions(self) -> frozenset[bytes]:
        if self._publisher is not None:
            return frozenset(self._publisher.subscriptions()[1])
        return self._subscriptions

    def _run(self) -> None:
        context = zmq.Context()
        auth: ThreadAuthenticator | None = None
        socket: zmq.Socket[bytes] | None = None
        try:
            try:
                socket, auth = self._open(context)
                if self._want_native:
                    self._publisher = open_native_publisher(
                        socket,
                        max_events=self.options.events_per_message,
                        max_bytes=MAX_BYTES,
                        capacity=self.options.hwm,
                    )
                    self._sender = "pyzmq" if self._publisher is None else "native"
                notify = cast(int, socket.getsockopt(zmq.FD))
                if self._publisher is None:
                    with self._socket_lock:  # published: from now on the lock's holder owns it
                        self._socket = socket
            except BaseException as exc:
                self._start_errors.append(exc)
                return
            finally:
                self._ready.set()
            try:
                self._serve(None if self._publisher is not None else notify)
            except Exception:
                log.exception("zmq sink: the I/O thread failed; events are dropped from now on")
        finally:
            if self._publisher is not None:
                self._publisher.stop()  # sends what is queued; the socket is ours again
            with self._socket_lock:  # waits for a batch being sent
                self._socket = None
                with self._cond:
                    self._stopped = True
                    self._cond.notify_all()
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

    def _serve(self, notify: int | None) -> None:
        """Until closing, or until sending fails: look at the sending side, log drops every
        ``log_interval``, and sleep on the wake pipe (and, on pyzmq's path, on ``ZMQ_FD``)."""
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if notify is not None:
            poller.register(notify, select.POLLIN)
        interval = self.options.log_interval
        next_report = time.monotonic() + interval
        while self._look():
            with self._cond:
                closing = self._closing
            if time.monotonic() >= next_report:
                self._report(interval)
                next_report = time.monotonic() + interval
            if closing:
                return
            # ZMQ_FD is readable while the socket has commands to take in (a subscription
            # arriving, say); a sending thread that takes them in first reads them too.
            poller.poll(int(max(0.0, next_report - time.monotonic()) * 1000) + 1)
            self._drain_wakeups()

    def _look(self) -> bool:
        """One look at the sending side; False once it has failed (events are dropped from then
        on). The native publisher reads subscriptions itself; on pyzmq's path they are read here
        while no batch is being sent."""
        publisher = self._publisher
        if publisher is None:
            with self._socket_lock:
                socket = self._socket
                if socket is None:  # a send failed; publish() gave the socket up
                    return False
                self._read_subscriptions(socket)
            return True
        error = publisher.stats()[4]
        if not error:
            return True
        log.error(
            "zmq sink: sending failed (%s); events are dropped from now on", zmq.strerror(error)
        )
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        return False

    def _drain_wakeups(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass

    def _read_subscriptions(self, socket: zmq.Socket[bytes]) -> None:
        """Apply (un)subscription messages: ``\\x01prefix`` subscribes, ``\\x00prefix`` leaves.

        Only with the socket lock held.
        """
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
        self._wanted.clear()
        self._unwanted.clear()
        with self._cond:  # publish() reads the reference without the lock; waiters with it
            self._subscriptions = frozenset(subscriptions)
            self._cond.notify_all()

    def _send(self, socket: zmq.Socket[bytes], events: list[Event]) -> None:
        """pyzmq's path: skip the unwanted events, encode the rest into messages in one native
        call, send them."""
        counts = [0, 0, 0]  # events sent, events refused at the high-water mark, messages sent
        wanted = _select(events, self._subscriptions, self._wanted, self._unwanted)
        unwanted = len(events) - len(wanted)
        try:
            if wanted:
                self._send_runs(socket, self._runs(wanted), counts)
        finally:  # counts stay exact even when a send fails
            with self._cond:
                self._sent += counts[0]
                self._drops["hwm"] += counts[1]
                self._messages += counts[2]
                self._drops["no_subscriber"] += unwanted

    def _send_runs(
        self, socket: zmq.Socket[bytes], runs: list[tuple[str, int, bytes]], counts: list[int]
    ) -> None:
        """Send each run as a message, adding to ``counts`` as they go."""
        # The backend's send: the pyzmq subclass's override only adds RADIO/SERVER options,
        # and skipping it saves a Python call per frame.
        send = zmq.backend.Socket.send
        more, last = zmq.SNDMORE | zmq.NOBLOCK, zmq.NOBLOCK
        for name, events, payload in runs:
            try:
                send(socket, name.encode(), more)
            except zmq.Again:
                counts[1] += events
                continue
            # libzmq checks the high-water mark per whole message: once the first frame is
            # in, the second cannot meet a full pipe, so this never raises Again.
            send(socket, payload, last)
            counts[0] += events
            counts[2] += 1

    def _runs(self, events: list[Event]) -> list[tuple[str, int, bytes]]:
        """The events' messages, as ``(name, events, payload)`` runs, in one native call.

        Only when that fails is each event encoded alone, to drop (count, log) just the events
        that are not plain JSON.
        """
        limit = self.options.events_per_message
        try:
            return encode_event_runs(events, max_events=limit, max_bytes=MAX_BYTES)
        except _UNENCODABLE:
            return encode_event_runs(self._plain(events), max_events=limit, max_bytes=MAX_BYTES)

    def _plain(self, events: Sequence[Event]) -> list[Event]:
        """The events that encode as JSON; each other one is counted and logged."""
        plain: list[Event] = []
        for event in events:
            try:
                encode_event_payloads((event,))
            except _UNENCODABLE as exc:
                self._count("unencodable", 1)
                log.warning(
                    "zmq sink: dropped %s event %s: not plain JSON (%s)", event.name, event.id, exc
                )
            else:
                plain.append(event)
        return plain

    def _report(self, interval: float) -> None:
        drops = self._totals()[2]
        new = {k: drops[k] - self._reported[k] for k in _DROP_KINDS}
        self._reported = drops
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


def _select(
    events: list[Event],
    subscriptions: frozenset[bytes],
    wanted_names: set[str],
    unwanted: set[str],
) -> list[Event]:
    """The events someone subscribes to (a subscription is a prefix of the name). Each name is
    matched once: the answer is remembered in ``wanted_names`` or ``unwanted``."""
    wanted: list[Event] = []
    for event in events:
        name = event.name
        if name not in wanted_names:
            if name in unwanted:
                continue
            topic = name.encode()
            if not any(topic.startswith(prefix) for prefix in subscriptions):
                unwanted.add(name)
                continue
            wanted_names.add(name)
        wanted.append(event)
    return wanted


def _readable(socket: zmq.Socket[bytes]) -> bool:
    """A message is waiting (a cheap option read, no poll call)."""
    return bool(cast(int, socket.getsockopt(zmq.EVENTS)) & zmq.POLLIN)
