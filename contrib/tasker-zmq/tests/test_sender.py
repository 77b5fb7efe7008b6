"""The native publisher against pyzmq's path: same bytes on the wire (the same messages,
coalesced by the same rule), same counts; its queue's bound, and its own checks."""

from __future__ import annotations

import itertools
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from tasker_core import Event, encode_event_payloads, encode_event_runs

from tasker_zmq import ZmqOptions, ZmqSink
from tasker_zmq import sender as sender_module
from tasker_zmq.sender import loaded_libzmq, open_native_publisher
from tasker_zmq.wire import MAX_BYTES, MAX_EVENTS, decode, encode, encode_messages, group

if TYPE_CHECKING:
    from tasker_zmq._sender import Publisher as NativePublisher

ANY_PORT = "tcp://127.0.0.1:*"
LIBZMQ = loaded_libzmq()
needs_native = pytest.mark.skipif(
    LIBZMQ is None, reason="pyzmq's libzmq cannot be identified on this platform"
)


NAMES = ("step.enqueued", "step.started", "step.completed", "task.failed")
# Runs of one name, 1 to 80 events long: lone events, coalesced ones, runs cut at MAX_EVENTS.
RUNS = (1, 4, 80, 2, 1, 1, 7, 30, 3)


def events(n: int) -> list[Event]:
    """Step events in runs of one name, with varied payloads: non-ASCII text, floats, nesting."""
    names = [NAMES[i % len(NAMES)] for i, length in enumerate(RUNS) for _ in range(length)]
    made = []
    for i in range(n):
        name = names[i % len(names)]
        data: dict[str, Any] = {"step": f"w{i}", "attempt": i % 3 + 1, "note": "é ✓ \u2028"}
        if i % 5 == 0:
            data["duration"] = i / 7
            data["nested"] = {"list": [1, 2.5, None, True], "big": 2**70}
        made.append(Event(name, f"id-{i}", 1700000000.0 + i / 3, "t" * 32, "ns", "wf", "1", data))
    return made


def subscriber(
    context: zmq.Context[zmq.Socket[bytes]], endpoint: str, prefix: bytes = b""
) -> zmq.Socket[bytes]:
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SUBSCRIBE, prefix)
    socket.setsockopt(zmq.RCVTIMEO, 10_000)
    socket.connect(endpoint)
    return socket


CHUNK = 150  # events per publish() call: coalescing works within one


def expected_messages(batch: list[Event], prefix: bytes, bad: int) -> list[list[bytes]]:
    """The messages of ``batch`` a ``prefix`` subscriber gets, published in CHUNKs, without
    the unencodable event at ``bad``."""
    messages = []
    for start in range(0, len(batch), CHUNK):
        chunk = [
            event
            for i, event in enumerate(batch[start : start + CHUNK], start)
            if i != bad and event.name.startswith(prefix.decode())
        ]
        messages += [[topic, payload] for topic, payload in encode_messages(chunk)]
    return messages


def frames_through(
    native: bool, batch: list[Event], prefix: bytes, expected: int, per_message: int = MAX_EVENTS
) -> tuple[str, list[list[bytes]], dict[str, int]]:
    """The raw multipart messages (``expected`` of them) a subscriber receives when one sink
    publishes ``batch``."""
    options = ZmqOptions.from_mapping({"bind": ANY_PORT, "events_per_message": per_message})
    sink = ZmqSink(options, native_sender=native)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = subscriber(context, sink.endpoint, prefix)
    try:
        assert sink.wait_for_subscriptions([prefix.decode()], timeout=10)
        for i in range(0, len(batch), CHUNK):
            sink.publish(batch[i : i + CHUNK])
        got = [sub.recv_multipart() for _ in range(expected)]
        sink.close()
        return sink.sender, got, sink.stats()
    finally:
        sub.close(linger=0)
        context.term()


@needs_native
@pytest.mark.parametrize("prefix", [b"", b"step."], ids=["every event", "filtered"])
def test_the_native_path_puts_the_same_bytes_on_the_wire_as_pyzmq(prefix: bytes) -> None:
    batch = events(600)
    batch[17] = Event("step.started", "bad", 1.0, "t", "ns", "wf", "1", {"x": {1, 2}})
    # Big events in a row: two fit in a message, the third does not, the last is too big for
    # any company.
    blobs = ["z" * (MAX_BYTES * 2 // 5)] * 3 + ["z" * (MAX_BYTES + 10)]
    batch[300:304] = [
        Event("step.started", f"blob{i}", 1.0, "t", "ns", "wf", "1", {"blob": blob})
        for i, blob in enumerate(blobs)
    ]
    expected = expected_messages(batch, prefix, bad=17)
    carried = [len(decode(message)) for message in expected]
    assert max(carried) == MAX_EVENTS and carried.count(1) < len(carried) / 2
    sizes = [len(payload) for _, payload in expected]
    assert max(sizes) > MAX_BYTES  # a lone big event
    assert any(n > 1 and size > MAX_BYTES * 3 / 4 for n, size in zip(carried, sizes, strict=True))
    kind, native, native_stats = frames_through(True, batch, prefix, len(expected))
    assert kind == "native"
    fallback_kind, pyzmq, pyzmq_stats = frames_through(False, batch, prefix, len(expected))
    assert fallback_kind == "pyzmq"
    assert native == pyzmq == expected
    for stats, flag in ((native_stats, 1), (pyzmq_stats, 0)):
        assert stats["sent"] == sum(carried)
        assert stats["messages"] == len(expected)
        assert stats["unencodable"] == 1
        assert stats["dropped"] == 600 - sum(carried)
        assert stats["native_sender"] == flag


@pytest.mark.parametrize("native", [True, False], ids=["native", "pyzmq"])
def test_one_event_per_message_is_the_first_wire_format(native: bool) -> None:
    if native and LIBZMQ is None:
        pytest.skip("pyzmq's libzmq cannot be identified on this platform")
    batch = events(200)
    expected = [list(encode(event)) for event in batch]
    kind, got, stats = frames_through(native, batch, b"", len(expected), per_message=1)
    assert kind == ("native" if native else "pyzmq")
    assert got == expected
    assert stats["sent"] == stats["messages"] == len(batch)


_PAIRS = itertools.count()


def heard(publisher: NativePublisher, want: set[bytes]) -> bool:
    """Whether the publisher's subscriptions become exactly ``want`` within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if set(publisher.subscriptions()[1]) == want:
            return True
        time.sleep(0.005)
    return False


@contextmanager
def publisher_pair(
    max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES, capacity: int = 1_000_000
) -> Iterator[tuple[NativePublisher, zmq.Socket[bytes]]]:
    """A PAIR socket pair over inproc, the sending end taken over by a started publisher;
    the publisher is stopped before the sockets close."""
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    out, into = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    for socket in (out, into):
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.RCVHWM, 0)
    address = f"inproc://native-publisher-{next(_PAIRS)}"
    out.bind(address)
    into.connect(address)
    publisher = open_native_publisher(
        out, max_events=max_events, max_bytes=max_bytes, capacity=capacity
    )
    assert publisher is not None
    try:
        yield publisher, into
    finally:
        publisher.stop()
        out.close(linger=0)
        into.close(linger=0)
        context.term()


@needs_native
@settings(max_examples=60)
@given(
    items=st.lists(
        st.tuples(st.sampled_from(["a", "a.b", "b"]), st.text("xyz", max_size=9)), max_size=40
    ),
    max_events=st.integers(1, 5),
    max_bytes=st.integers(1, 300),
)
def test_the_native_publisher_coalesces_by_the_same_rule_as_wire_group(
    items: list[tuple[str, str]], max_events: int, max_bytes: int
) -> None:
    batch = [Event(name, "i", 1.0, "t", "ns", "wf", "1", {"s": text}) for name, text in items]
    topics = [event.name.encode() for event in batch]
    payloads: list[bytes | None] = list(encode_event_payloads(batch))
    expected = [
        [topic, b"\n".join(parts)]
        for topic, parts in group(topics, payloads, max_events, max_bytes)
    ]
    runs = encode_event_runs(batch, max_events=max_events, max_bytes=max_bytes)
    with publisher_pair(max_events, max_bytes) as (publisher, into):
        assert publisher.push_runs(runs) == len(batch)
        publisher.stop()  # sends what is queued first
        assert publisher.stats() == (len(batch), len(expected), 0, 0, 0, 0)
        assert [into.recv_multipart() for _ in expected] == expected
        assert not into.poll(0)


@needs_native
def test_the_native_publisher_sends_each_run_as_one_message() -> None:
    batch = events(200)
    runs = encode_event_runs(batch, max_events=MAX_EVENTS, max_bytes=MAX_BYTES)
    big = ("step.big", 1, b"x" * (MAX_BYTES + 1))  # one event may pass the byte limit alone
    with publisher_pair() as (publisher, into):
        assert publisher.push_runs([*runs, big]) == len(batch) + 1
        publisher.stop()
        assert publisher.stats() == (len(batch) + 1, len(runs) + 1, 0, 0, 0, 0)
        received = [into.recv_multipart() for _ in range(len(runs) + 1)]
    assert received == [[name.encode(), payload] for name, _, payload in [*runs, big]]
    assert received[:-1] == [list(message) for message in encode_messages(batch)]


@needs_native
def test_native_publish_filters_by_prefix_encodes_and_queues_in_one_call() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    out = context.socket(zmq.XPUB)
    port = out.bind_to_random_port("tcp://127.0.0.1")
    subscribers = [subscriber(context, f"tcp://127.0.0.1:{port}", p) for p in (b"step.s", b"task.")]
    publisher = open_native_publisher(
        out, max_events=MAX_EVENTS, max_bytes=MAX_BYTES, capacity=1_000_000
    )
    assert publisher is not None
    try:
        assert heard(publisher, {b"step.s", b"task."})
        batch = events(300)
        wanted = [e for e in batch if e.name.startswith(("step.s", "task."))]
        assert 0 < len(wanted) < len(batch)
        assert publisher.publish(tuple(batch)) == len(wanted)  # any sequence
        assert publisher.stats()[5] == len(batch) - len(wanted)  # counted, never encoded
        nameless = Event("step.started", "x", 1.0, "t", "ns", "wf", "1", {})
        object.__setattr__(nameless, "name", 3)
        with pytest.raises(TypeError, match="name must be a str"):
            publisher.publish([batch[0], nameless])
        with pytest.raises(TypeError, match="not JSON serializable"):  # the encoder's error
            publisher.publish([Event("task.x", "y", 1.0, "t", "ns", "wf", "1", {"s": {1}})])
        publisher.stop()
        assert publisher.publish(batch) == 0
        sent, messages, full, closed, error, unwanted = publisher.stats()
        assert (sent, full, closed, error) == (len(wanted), 0, len(batch), 0)
        assert unwanted == len(batch) - len(wanted)  # a failed call counts nothing
        expected = [list(message) for message in encode_messages(wanted)]
        assert messages == len(expected)
        received: list[list[bytes]] = []
        for sub in subscribers:
            while sub.poll(1000):
                received.append(sub.recv_multipart())
        assert sorted(received) == sorted(expected)
    finally:
        publisher.stop()
        for socket in (out, *subscribers):
            socket.close(linger=0)
        context.term()


@needs_native
def test_the_native_queue_is_bounded_drops_whole_messages_and_counts_them() -> None:
    """Before the thread starts nothing leaves the queue: what passes its capacity is refused
    at once (whole messages), and the rest goes out in order once it runs."""
    from tasker_zmq._sender import Publisher

    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    out, into = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    out.bind("inproc://native-queue")
    into.connect("inproc://native-queue")
    assert LIBZMQ is not None
    publisher = Publisher(str(LIBZMQ), out.underlying, 4, MAX_BYTES, 10)
    try:
        # Runs of 3, 4 (a full message) and 5 (messages of 4 and 1) events.
        runs = [("a", 3, b"0\n1\n2"), ("b", 4, b"3\n4\n5\n6"), ("c", 4, b"7\n8\n9\n10")]
        runs.append(("c", 1, b"11"))
        # a(3) and b(4) fit; c's first message (4) would make 11 > 10; its last (1) fits.
        assert publisher.push_runs(runs) == 8
        assert publisher.queued() == 8
        assert publisher.stats()[2] == 4
        publisher.start()
        received = [into.recv_multipart() for _ in range(3)]
        assert received == [[b"a", b"0\n1\n2"], [b"b", b"3\n4\n5\n6"], [b"c", b"11"]]
        publisher.stop()
        assert publisher.push_runs([("a", 1, b"late")]) == 0
        assert publisher.stats() == (8, 3, 4, 1, 0, 0)
        assert publisher.queued() == 0
        with pytest.raises(RuntimeError, match="already started"):
            publisher.start()
    finally:
        publisher.stop()
        out.close(linger=0)
        into.close(linger=0)
        context.term()


@needs_native
def test_the_native_publisher_hears_subscriptions_and_their_end() -> None:
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    xpub = context.socket(zmq.XPUB)
    port = xpub.bind_to_random_port("tcp://127.0.0.1")
    publisher = open_native_publisher(
        xpub, max_events=MAX_EVENTS, max_bytes=MAX_BYTES, capacity=100
    )
    assert publisher is not None

    sub = context.socket(zmq.SUB)
    try:
        start = publisher.generation
        sub.connect(f"tcp://127.0.0.1:{port}")
        sub.setsockopt(zmq.SUBSCRIBE, b"step.")
        sub.setsockopt(zmq.SUBSCRIBE, b"task.failed")
        assert heard(publisher, {b"step.", b"task.failed"})
        assert publisher.generation > start
        sub.setsockopt(zmq.UNSUBSCRIBE, b"step.")
        assert heard(publisher, {b"task.failed"})
        assert publisher.subscriptions()[0] == publisher.generation
    finally:
        publisher.stop()
        sub.close(linger=0)
        xpub.close(linger=0)
        context.term()


@needs_native
def test_the_native_path_counts_high_water_mark_drops_and_never_tears_a_message() -> None:
    sink = ZmqSink(ZmqOptions.from_mapping({"bind": ANY_PORT, "hwm": 100, "linger": "0s"}))
    assert sink.sender == "native" and sink.inline
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sleeper = context.socket(zmq.SUB)  # reads nothing until the sink is done
    sleeper.setsockopt(zmq.RCVHWM, 10)
    sleeper.setsockopt(zmq.RCVBUF, 4096)
    sleeper.setsockopt(zmq.SUBSCRIBE, b"")
    sleeper.connect(sink.endpoint)
    batch = events(50)
    published = 0
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        deadline = time.monotonic() + 30
        while sink.stats()["hwm"] == 0 and time.monotonic() < deadline:
            sink.publish(batch)
            published += len(batch)
            assert sink.queued() <= 100  # the queue's bound: events.zmq.hwm events
            time.sleep(0.001)
        sink.close()
        received: list[list[bytes]] = []
        while sleeper.poll(500):
            received.append(sleeper.recv_multipart())
    finally:
        sleeper.close(linger=0)
        context.term()
    stats = sink.stats()
    assert stats["hwm"] > 0, "the socket never refused a message"
    assert stats["sent"] + stats["dropped"] == published
    assert 0 < len(received) <= stats["messages"]
    for message in received:  # whole [topic, payload] messages only, every event named as topic
        assert len(message) == 2
        assert {event["name"] for event in decode(message)} == {message[0].decode()}


def test_without_an_identifiable_libzmq_the_sink_falls_back_to_pyzmq(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sender_module, "loaded_libzmq", lambda: None)
    monkeypatch.setattr(sender_module, "_logged_fallback", False)
    with caplog.at_level(logging.INFO, logger="tasker.zmq"):
        sinks = [ZmqSink(ZmqOptions.from_mapping({"bind": ANY_PORT})) for _ in range(2)]
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = subscriber(context, sinks[0].endpoint)
    try:
        assert [sink.sender for sink in sinks] == ["pyzmq", "pyzmq"]
        assert sinks[0].stats()["native_sender"] == 0
        assert sinks[0].wait_for_subscriptions([""], timeout=10)
        event = events(1)[0]
        sinks[0].publish([event])
        assert sub.recv_multipart() == [event.name.encode(), encode_event_payloads([event])[0]]
    finally:
        sub.close(linger=0)
        context.term()
        for sink in sinks:
            sink.close()
    notes = [r.getMessage() for r in caplog.records if "sending through pyzmq" in r.getMessage()]
    assert len(notes) == 1  # once per process, however many sinks
    assert "cannot tell which libzmq" in notes[0]


def test_without_the_extension_built_the_sink_sends_through_pyzmq(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "tasker_zmq._sender", None)  # import raises ImportError
    monkeypatch.setattr(sender_module, "_logged_fallback", False)
    with caplog.at_level(logging.INFO, logger="tasker.zmq"):
        sink = ZmqSink(ZmqOptions.from_mapping({"bind": ANY_PORT}))
    sink.close()
    assert sink.sender == "pyzmq"
    assert any("native publisher is not built" in r.getMessage() for r in caplog.records)


def test_a_library_that_is_not_loaded_is_refused_not_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "_logged_fallback", False)
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    socket = context.socket(zmq.PUB)
    try:
        missing = tmp_path / "libzmq.so.5"
        limits = {"max_events": MAX_EVENTS, "max_bytes": MAX_BYTES, "capacity": 10}
        assert open_native_publisher(socket, library=missing, **limits) is None
    finally:
        socket.close(linger=0)
        context.term()


def test_the_bundled_libzmq_wins_and_an_ambiguous_process_gets_none(tmp_path: Path) -> None:
    def maps(*paths: str) -> Path:
        file = tmp_path / "maps"
        lines = [f"7f00-7f01 r-xp 00000000 08:01 {i} {p}" for i, p in enumerate(paths)]
        file.write_text("\n".join([*lines, "7f02-7f03 rw-p 00000000 00:00 0 [heap]"]) + "\n")
        return file

    one, other = str(tmp_path / "libzmq.so.5"), str(tmp_path / "x" / "libzmq.so.5.2")
    assert loaded_libzmq(maps(one)) == Path(one)
    assert loaded_libzmq(maps(one, other)) is None
    assert loaded_libzmq(maps("/usr/lib/libc.so.6")) is None
    if LIBZMQ is not None and "pyzmq.libs" in LIBZMQ.parts:
        assert loaded_libzmq(maps(one, str(LIBZMQ))) == LIBZMQ


@needs_native
def test_the_native_publisher_checks_its_arguments() -> None:
    with publisher_pair() as (publisher, into):
        good = ("a", 1, b"1")
        for bad in (("a", 1), (b"a", 1, b"1"), ("a", 1, "1"), ["a", 1, b"1"], ("a", -1, b"1")):
            with pytest.raises(TypeError, match=r"run must be a \(str, int, bytes\) tuple"):
                publisher.push_runs([good, bad])  # type: ignore[list-item]
        # publisher_pair's limits: MAX_EVENTS events, MAX_BYTES bytes (one event may pass it).
        for bad in (("a", 0, b""), ("a", MAX_EVENTS + 1, b"1"), ("a", 2, b"x" * (MAX_BYTES + 1))):
            with pytest.raises(ValueError, match="outside the limits"):
                publisher.push_runs([good, bad])
        publisher.stop()
        assert publisher.stats() == (0, 0, 0, 0, 0, 0)  # a bad batch queues nothing
        assert not into.poll(0)
    from tasker_zmq._sender import Publisher

    with pytest.raises(OSError, match="NULL"):
        Publisher(str(LIBZMQ), 0, MAX_EVENTS, MAX_BYTES, 10)
