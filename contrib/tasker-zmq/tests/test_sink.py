"""The sink in one process: bound directly (the single-process setup), real sockets."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import zmq
from tasker_core import Config, ConfigError, Engine, Event, TaskRequest
from tasker_core.plugin import PluginHost

from tasker_zmq import Subscriber, ZmqOptions, ZmqSink, encode, encode_messages

ANY_PORT = "tcp://127.0.0.1:*"


def bound_sink(**options: Any) -> ZmqSink:
    return ZmqSink(ZmqOptions.from_mapping({"bind": ANY_PORT, **options}))


def receive_all(subscriber: Subscriber, n: int, timeout: float = 20) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        event = subscriber.receive(0.2)
        if event is not None:
            got.append(event)
    return got


def test_a_bound_sink_delivers_every_event_in_order(
    make_engine: Callable[..., Engine], check_fields: Callable[[Mapping[str, Any]], None]
) -> None:
    sink = bound_sink()
    subscriber = Subscriber(sink.endpoint)
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        engine = make_engine([sink], width=20)
        recorded: list[Event] = []
        engine.subscribe("*", recorded.append)
        task = engine.run(TaskRequest("zmq", "fan"), timeout=60)
        assert task.state == "complete"
        engine.close()  # flushes the bus, then the socket within its linger
        got = receive_all(subscriber, len(recorded))
    finally:
        subscriber.close()
    assert got == [event.to_dict() for event in recorded]
    for event in got:
        check_fields(event)
    assert sink.stats()["sent"] == len(recorded)
    assert sink.dropped == 0


def test_events_nobody_subscribes_to_are_dropped_and_counted(
    make_engine: Callable[..., Engine],
) -> None:
    sink = bound_sink()
    subscriber = Subscriber(sink.endpoint, ["task.completed"])
    try:
        assert sink.wait_for_subscriptions(["task.completed"], timeout=10)
        assert sink.subscriptions() == {"task.completed"}
        engine = make_engine([sink], width=5)
        recorded: list[Event] = []
        engine.subscribe("*", recorded.append)
        engine.run(TaskRequest("zmq", "fan"), timeout=60)
        engine.close()
        got = receive_all(subscriber, 1)
        assert subscriber.receive(0.2) is None
    finally:
        subscriber.close()
    assert [e["name"] for e in got] == ["task.completed"]
    stats = sink.stats()
    assert stats["sent"] == 1
    assert stats["no_subscriber"] == stats["dropped"] == len(recorded) - 1


def test_a_subscriber_that_never_reads_cannot_hold_up_a_10000_step_run(
    make_engine: Callable[..., Engine], caplog: pytest.LogCaptureFixture
) -> None:
    buffer_size = 2000
    sink = bound_sink(hwm=50, log_interval="100ms")
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sleeper = context.socket(zmq.SUB)  # subscribes, then never reads
    sleeper.setsockopt(zmq.RCVHWM, 10)
    sleeper.setsockopt(zmq.RCVBUF, 4096)
    sleeper.setsockopt(zmq.SUBSCRIBE, b"")
    sleeper.connect(sink.endpoint)
    highest = 0
    running = threading.Event()
    running.set()
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        engine = make_engine([sink], width=10_000, events={"buffer_size": buffer_size})

        def watch() -> None:
            nonlocal highest
            while running.is_set():
                # The bus's buffer on pyzmq's path, the native publisher's queue otherwise.
                highest = max(highest, engine.bus.buffered() + sink.queued())
                time.sleep(0.001)

        watcher = threading.Thread(target=watch)
        watcher.start()
        with caplog.at_level(logging.WARNING, logger="tasker.zmq"):
            task = engine.run(TaskRequest("zmq", "fan"), timeout=300)
            running.clear()
            watcher.join()
            engine.close()
    finally:
        running.clear()
        sleeper.close(linger=0)
        context.term()
    assert task.state == "complete"
    assert highest <= (50 if sink.inline else buffer_size)
    assert sink.inline or highest > 0  # the native queue is drained too fast to be seen full
    stats = sink.stats()
    assert stats["hwm"] > 0
    assert stats["sent"] + stats["dropped"] + engine.event_stats()["zmq"].dropped >= 30_000
    assert any("high-water mark" in r.getMessage() for r in caplog.records)


def test_the_plugin_builds_the_sink_from_events_zmq() -> None:
    config = Config.from_mapping(
        {"events": {"sinks": ["zmq"], "zmq": {"bind": ANY_PORT, "hwm": 123}}}
    )
    sinks = PluginHost.create().make_sinks(["zmq"], config)
    try:
        assert len(sinks) == 1
        sink = sinks[0]
        assert isinstance(sink, ZmqSink)
        assert sink.options.hwm == 123
        assert sink.endpoint.startswith("tcp://127.0.0.1:")
        assert not sink.endpoint.endswith("*")
    finally:
        for sink in sinks:
            sink.close()


def test_the_plugin_names_the_bad_key() -> None:
    config = Config.from_mapping({"events": {"sinks": ["zmq"], "zmq": {"hwm": 0}}})
    with pytest.raises(ConfigError) as caught:
        PluginHost.create().make_sinks(["zmq"], config)
    assert caught.value.key_path == "events.zmq.hwm"


def test_an_address_in_use_fails_at_start_naming_the_key() -> None:
    first = bound_sink()
    try:
        with pytest.raises(ConfigError) as caught:
            ZmqSink(ZmqOptions.from_mapping({"bind": first.endpoint}))
        assert caught.value.key_path == "events.zmq.bind"
        assert first.endpoint in str(caught.value)
    finally:
        first.close()


def test_publishing_after_close_counts_drops_and_close_is_idempotent(
    make_engine: Callable[..., Engine],
) -> None:
    sink = bound_sink(linger="0s")
    engine = make_engine([], width=1)
    event = engine.bus.make(
        "task.created", task_id="t", namespace="n", workflow="w", version="1", time=1.0
    )
    sink.close()
    sink.close()
    sink.publish([event, event])
    assert sink.stats()["closed"] == 2


def deeply_nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "bad",
    [float("nan"), {1, 2}, deeply_nested(5000)],
    ids=["nan", "set", "nested-too-deep"],
)
def test_an_event_that_is_not_json_is_dropped_alone(
    make_engine: Callable[..., Engine], bad: Any
) -> None:
    sink = bound_sink()
    subscriber = Subscriber(sink.endpoint)
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        engine = make_engine([], width=1)
        good = engine.bus.make(
            "custom.ok",
            task_id="t",
            namespace="n",
            workflow="w",
            version="1",
            time=1.0,
            payload=[1, 2],
        )
        bad = engine.bus.make(
            "custom.bad",
            task_id="t",
            namespace="n",
            workflow="w",
            version="1",
            time=1.0,
            payload=bad,
        )
        sink.publish([bad, good])
        got = receive_all(subscriber, 1)
    finally:
        subscriber.close()
        sink.close()
    assert [e["name"] for e in got] == ["custom.ok"]
    assert sink.stats()["unencodable"] == 1


def test_wait_for_subscriptions_times_out_without_subscribers() -> None:
    sink = bound_sink()
    try:
        started = time.monotonic()
        assert not sink.wait_for_subscriptions(["step."], timeout=0.2)
        assert 0.2 <= time.monotonic() - started < 5
    finally:
        sink.close()


def test_without_any_subscriber_nothing_is_sent_and_all_is_counted(
    make_engine: Callable[..., Engine],
) -> None:
    sink = bound_sink()
    try:
        engine = make_engine([], width=1)
        events = [
            engine.bus.make(
                "task.created", task_id="t", namespace="n", workflow="w", version="1", time=1.0
            )
        ] * 5
        sink.publish(events)
        stats = sink.stats()
        assert stats["sent"] == 0
        assert stats["no_subscriber"] == sink.dropped == 5
    finally:
        sink.close()


def test_the_publisher_may_reuse_its_list_once_publish_returns(
    make_engine: Callable[..., Engine],
) -> None:
    sink = bound_sink()
    subscriber = Subscriber(sink.endpoint)
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        engine = make_engine([], width=1)
        batch = [
            engine.bus.make(
                "custom.n",
                task_id="t",
                namespace="n",
                workflow="w",
                version="1",
                time=1.0,
                payload=i,
            )
            for i in range(50)
        ]
        sink.publish(batch)
        batch.clear()  # the bus builds a new list per batch; other callers might not
        got = receive_all(subscriber, 50)
    finally:
        subscriber.close()
        sink.close()
    assert [e["payload"] for e in got] == list(range(50))


def custom_events(engine: Engine, name: str, n: int) -> list[Event]:
    return [
        engine.bus.make(
            name, task_id="t", namespace="n", workflow="w", version="1", time=1.0, payload=i
        )
        for i in range(n)
    ]


def test_threads_publishing_at_once_each_get_every_event_out_in_order(
    make_engine: Callable[..., Engine],
) -> None:
    # publish() sends on the calling thread: the socket lock must keep one owner at a time.
    sink = bound_sink()
    subscriber = Subscriber(sink.endpoint)
    names = [f"custom.t{i}" for i in range(4)]
    try:
        assert sink.wait_for_subscriptions([""], timeout=10)
        engine = make_engine([], width=1)
        batches = {name: custom_events(engine, name, 200) for name in names}

        def publish(name: str) -> None:
            for i in range(0, 200, 20):
                sink.publish(batches[name][i : i + 20])

        workers = [threading.Thread(target=publish, args=(name,)) for name in names]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        got = receive_all(subscriber, 800)
    finally:
        subscriber.close()
        sink.close()
    assert len(got) == 800
    for name in names:
        assert [e["payload"] for e in got if e["name"] == name] == list(range(200))
    assert sink.stats()["sent"] == 800


def test_a_subscription_made_while_batches_flow_is_heard(
    make_engine: Callable[..., Engine],
) -> None:
    # While a thread keeps sending, its sends take in the socket's commands, so it must read
    # the subscriptions they bring; when it pauses, the I/O thread must.
    sink = bound_sink()
    first = Subscriber(sink.endpoint, ["custom.a"])
    second: Subscriber | None = None
    running = threading.Event()
    running.set()
    try:
        assert sink.wait_for_subscriptions(["custom.a"], timeout=10)
        engine = make_engine([], width=1)
        batch = custom_events(engine, "custom.a", 50) + custom_events(engine, "custom.b", 50)

        def keep_publishing() -> None:
            while running.is_set():
                sink.publish(batch)

        publisher = threading.Thread(target=keep_publishing)
        publisher.start()
        try:
            time.sleep(0.05)
            second = Subscriber(sink.endpoint, ["custom.b"])
            assert sink.wait_for_subscriptions(["custom.a", "custom.b"], timeout=10)
            got = receive_all(second, 10)
        finally:
            running.clear()
            publisher.join()
    finally:
        first.close()
        if second is not None:
            second.close()
        sink.close()
    assert len(got) == 10
    assert {e["name"] for e in got} == {"custom.b"}
    assert sink.stats()["no_subscriber"] > 0  # custom.b before anyone wanted it


def test_the_subscriber_hands_out_each_event_of_a_message_and_skips_malformed_ones() -> None:
    """A raw publisher: coalesced, malformed and one-event messages, in that order."""
    first, second, third = (
        Event("step.started", f"e{i}", 1.0 + i, "t" * 32, "ns", "wf", "1", {"step": f"s{i}"})
        for i in range(3)
    )
    messages = [
        *encode_messages([first, second]),
        [b"step.started", encode(first)[1] + b"\n"],  # a trailing newline: refused whole
        list(encode(third)),
    ]
    context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    publisher = context.socket(zmq.XPUB)
    port = publisher.bind_to_random_port("tcp://127.0.0.1")
    subscriber = Subscriber(f"tcp://127.0.0.1:{port}")
    try:
        assert publisher.poll(10_000) and publisher.recv() == b"\x01"  # subscribed to all
        assert len(messages[0][1].split(b"\n")) == 2
        for message in messages:
            publisher.send_multipart(message)
        got = receive_all(subscriber, 3, timeout=10)
        assert [e["id"] for e in got] == ["e0", "e1", "e2"]
        assert got == [e.to_dict() for e in (first, second, third)]
        assert subscriber.malformed == 1
        assert subscriber.receive(0.1) is None
    finally:
        subscriber.close()
        publisher.close(linger=0)
        context.term()
