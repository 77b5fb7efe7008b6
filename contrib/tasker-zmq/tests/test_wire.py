"""The wire format: [topic, JSON lines], topic = the events' name; and the readable tail line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tasker_core import Event, encode_event_payloads

from tasker_zmq import WireError, decode, encode, format_event
from tasker_zmq.wire import (
    MAX_BYTES,
    MAX_EVENTS,
    encode_messages,
    encode_payload,
    group,
    reference_payload,
)

names = st.from_regex(r"(task|step|workflow|custom)\.[a-z_]{1,20}", fullmatch=True)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
data = st.dictionaries(
    st.sampled_from(["step", "attempt", "payload", "reason", "steps"]), json_values, max_size=4
)


def event_of(name: str, extra: dict[str, Any]) -> Event:
    return Event(name, "abc-1", 1700000000.25, "t" * 32, "ns", "wf", "1.0.0", extra)


@given(name=names, extra=data)
def test_messages_decode_to_the_event_dict(name: str, extra: dict[str, Any]) -> None:
    event = event_of(name, extra)
    topic, payload = encode(event)
    assert topic == name.encode()
    assert payload.isascii()  # plain ASCII JSON: any client's decoder reads it
    assert decode([topic, payload]) == [event.to_dict()]
    assert encode_messages([event]) == [(topic, payload)]  # a lone event: version 1's bytes


# Runs of equal names, so that coalescing has something to do.
runs = st.lists(
    st.tuples(
        st.sampled_from(["step.started", "step.completed", "task.failed"]), st.integers(1, 9)
    ),
    max_size=8,
)


def events_of(run_list: list[tuple[str, int]], extra: dict[str, Any]) -> list[Event]:
    return [event_of(name, extra) for name, length in run_list for _ in range(length)]


@given(run_list=runs, extra=data, max_events=st.integers(1, 6), max_bytes=st.integers(1, 900))
def test_messages_carry_every_event_in_order_under_its_name(
    run_list: list[tuple[str, int]], extra: dict[str, Any], max_events: int, max_bytes: int
) -> None:
    events = events_of(run_list, extra)
    messages = encode_messages(events, max_events, max_bytes)
    decoded = [decode([topic, payload]) for topic, payload in messages]
    assert [e for message in decoded for e in message] == [e.to_dict() for e in events]
    for (topic, payload), carried in zip(messages, decoded, strict=True):
        assert {e["name"].encode() for e in carried} == {topic}
        assert len(carried) <= max_events
        assert len(payload) <= max_bytes or len(carried) == 1
        assert payload.count(b"\n") == len(carried) - 1
    # Only consecutive events are joined, and a run is cut only where a limit says so.
    for (topic, payload), (next_topic, next_payload), carried in zip(
        messages, messages[1:], decoded, strict=False
    ):
        first = next_payload.split(b"\n", 1)[0]
        assert (
            topic != next_topic
            or len(carried) == max_events
            or len(payload) + 1 + len(first) > max_bytes
        )


@given(
    items=st.lists(
        st.tuples(st.sampled_from([b"a", b"b"]), st.none() | st.binary(max_size=5)), max_size=30
    )
)
def test_grouping_skips_refused_events_and_keeps_the_rest_in_order(
    items: list[tuple[bytes, bytes | None]],
) -> None:
    topics = [topic for topic, _ in items]
    payloads = [payload for _, payload in items]
    groups = list(group(topics, payloads, max_events=3, max_bytes=MAX_BYTES))
    assert [p for _, parts in groups for p in parts] == [p for p in payloads if p is not None]
    assert all(1 <= len(parts) <= 3 for _, parts in groups)
    kept = [topic for topic, payload in items if payload is not None]
    assert [topic for topic, parts in groups for _ in parts] == kept


def test_the_default_limits_keep_messages_modest() -> None:
    small = [event_of("step.started", {"step": f"s{i}"}) for i in range(2 * MAX_EVENTS + 3)]
    assert [len(decode(m)) for m in encode_messages(small)] == [MAX_EVENTS, MAX_EVENTS, 3]
    # Two of these fit in MAX_BYTES, three do not.
    half = [event_of("custom.blob", {"payload": "x" * (MAX_BYTES // 2 - 400)}) for _ in range(5)]
    assert [len(decode(m)) for m in encode_messages(half)] == [2, 2, 1]
    huge = [event_of("custom.blob", {"payload": "x" * (MAX_BYTES + 1)}) for _ in range(2)]
    assert [len(decode(m)) for m in encode_messages(huge)] == [1, 1]  # alone, whatever its size


# Any str, lone surrogates included (those the native encoder hands to the standard library).
any_text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=12)
any_keys = st.one_of(any_text, st.integers(-5, 5), st.booleans(), st.none(), st.floats(0, 2))
# Floats where repr's layout changes (1e-05 vs 0.0001, 1e+16 vs 1000000000000000.0), and floats
# with few fraction bits, where two shortest decimals can tie (repr takes the even one).
any_floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 0.0, 1e-7, 1e-5, 1e-4, 1e15, 1e16, 9999999999999998.0, 5e-324]),
    st.builds(lambda m, s: m / 2.0**s, st.integers(-(2**60), 2**60), st.integers(0, 12)),
)
any_json = st.recursive(
    st.none() | st.booleans() | st.integers() | any_text | any_floats,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(any_text, inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    name=any_text,
    event_id=any_text,
    when=st.one_of(any_floats, st.integers()),
    common=st.tuples(any_text, any_text, any_text, any_text),
    extra=st.dictionaries(any_keys, any_json, max_size=5),
)
def test_the_native_encoder_writes_what_the_standard_library_writes(
    name: str,
    event_id: str,
    when: float,
    common: tuple[str, str, str, str],
    extra: dict[Any, Any],
) -> None:
    event = Event(name, event_id, when, *common, extra)
    assert encode_payload(event) == reference_payload(event)


@given(
    batch=st.lists(
        st.builds(event_of, names, st.dictionaries(st.text(max_size=6), any_json, max_size=3)),
        max_size=8,
    )
)
def test_a_batch_is_each_event_encoded_in_order(batch: list[Event]) -> None:
    assert encode_event_payloads(batch) == [reference_payload(event) for event in batch]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=8),
    st.floats(),  # NaN and infinities included: refused like the standard library refuses them
    st.lists(st.integers(), max_size=2),
    st.sampled_from([{1, 2}, object(), b"bytes"]),  # not JSON at all: TypeError, as json
)


@given(first=scalars, second=scalars, when=st.floats())
def test_it_fails_where_the_standard_library_fails(first: Any, second: Any, when: float) -> None:
    event = Event("custom.x", "id", when, "t", "ns", "wf", "1", {"a": first, "b": second})
    try:
        expected = reference_payload(event)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            encode_payload(event)
        return
    assert encode_payload(event) == expected


@pytest.mark.parametrize(
    "key",
    ['x"); import os; ("', "{x}", "%s%d%%", "back\\slash\n", "é\u2028", "\x7f\x00", "😀\ud800"],
)
def test_awkward_names_and_keys_are_escaped_like_the_standard_library(key: str) -> None:
    for value in ("text", 7, 2.5, None, [key], {key: (key,)}):
        event = Event(key, key, 1.5, key, key, key, key, {key: value, "k" + key: key})
        assert encode_payload(event) == reference_payload(event)


@given(field=st.sampled_from(["name", "id", "time", "task_id", "version"]), value=json_values)
def test_data_that_overrides_a_common_field_encodes_like_to_dict(field: str, value: Any) -> None:
    event = event_of("custom.x", {field: value})
    assert encode_payload(event) == reference_payload(event)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), [float("-inf")]])
def test_non_finite_numbers_are_refused_like_the_standard_library(bad: Any) -> None:
    event = event_of("custom.x", {"payload": bad})
    for encoder in (encode_payload, reference_payload):
        with pytest.raises(ValueError):
            encoder(event)


@given(name=names, prefix_length=st.integers(0, 30))
def test_a_name_prefix_is_a_topic_prefix(name: str, prefix_length: int) -> None:
    topic, _ = encode(event_of(name, {}))
    assert topic.startswith(name[:prefix_length].encode())


_ONE = json.dumps(event_of("task.created", {}).to_dict(), separators=(",", ":")).encode()
_OTHER = json.dumps(event_of("task.failed", {}).to_dict(), separators=(",", ":")).encode()


@pytest.mark.parametrize(
    "frames",
    [
        [b"task.created"],
        [b"task.created", b"{}", b"extra"],
        [b"task.created", b"not json"],
        [b"task.created", b"[1, 2]"],
        [b"task.created", json.dumps({"name": "task.failed"}).encode()],
        [b"task.created", b"\xff\xfe"],
        [b"task.created", b""],
        [b"task.created", _ONE + b"\n"],  # a trailing newline: an empty last event
        [b"task.created", _ONE + b"\n\n" + _ONE],  # an empty line
        [b"task.created", _ONE + _ONE],  # no separator
        [b"task.created", _ONE + b" \n" + _ONE],  # anything else between events
        [b"task.created", _ONE + b"\r\n" + _ONE],
        [b"task.created", b" " + _ONE],
        [b"task.created", _ONE + b"\n" + _OTHER],  # an event of another name
        [b"task.created", _ONE + b"\n[1]"],
        [b"task.created", _ONE + b"\n" + _ONE[:-1]],  # cut short
        [b"task.created", _ONE.replace(b",", b",\n", 1)],  # one event over two lines
    ],
)
def test_malformed_messages_are_refused(frames: list[bytes]) -> None:
    with pytest.raises(WireError):
        decode(frames)


def test_nan_is_not_json() -> None:
    with pytest.raises(ValueError):
        encode(event_of("custom.x", {"payload": float("nan")}))


def test_the_readable_line_shows_what_happened() -> None:
    line = format_event(
        event_of(
            "step.failed",
            {
                "step": "charge",
                "attempt": 2,
                "duration": 0.0125,
                "error_class": "TimeoutError",
                "error_message": "card service timed out",
            },
        ).to_dict()
    )
    assert "step.failed" in line and "ns/wf@1.0.0" in line and "task=tttttttttttt" in line
    assert "step=charge attempt=2 duration=12.5ms error_class=TimeoutError" in line
    assert 'error_message="card service timed out"' in line
    assert "\n" not in line
