"""The wire format: [topic, JSON payload], topic = event name; and the readable tail line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tasker_core import Event, encode_event_payloads

from tasker_zmq import WireError, decode, encode, format_event
from tasker_zmq.wire import encode_payload, reference_payload

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
    assert decode([topic, payload]) == event.to_dict()


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


@pytest.mark.parametrize(
    "frames",
    [
        [b"task.created"],
        [b"task.created", b"{}", b"extra"],
        [b"task.created", b"not json"],
        [b"task.created", b"[1, 2]"],
        [b"task.created", json.dumps({"name": "task.failed"}).encode()],
        [b"task.created", b"\xff\xfe"],
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
