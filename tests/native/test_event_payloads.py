"""tasker_core.encode_event_payloads: the native batch encoder of event payloads.

The definition is the standard library's ``json.dumps(event.to_dict(), separators=(",", ":"),
allow_nan=False).encode()``; every test compares against it. The native function writes plain
JSON itself and hands any other event to its fallback, which these tests watch.
"""

from __future__ import annotations

import enum
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import tasker_core._native as native
from tasker_core import Event, encode_event_payloads, encode_event_runs

_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def reference(event: Event) -> bytes:
    return _dumps(event.to_dict()).encode()


def event_of(data: Any, *, name: str = "custom.x", time: Any = 1.5) -> Event:
    return Event(name, "abc-1", time, "t" * 32, "ns", "wf", "1.0.0", data)


class Recorder:
    """A fallback that writes the reference and remembers whom it wrote."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> bytes:
        self.events.append(event)
        return reference(event)


plain_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=10)
text = st.text(st.characters() | st.characters(categories=["Cs"]), max_size=10)  # surrogates too
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([-0.0, 1e-7, 1e-5, 1e-4, 1e16, 1e17, 123456789012345678.0, 5e-324]),
    st.builds(lambda m, s: m / 2.0**s, st.integers(-(2**60), 2**60), st.integers(0, 12)),
)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | text,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.lists(inner, max_size=3).map(tuple)
            | st.dictionaries(text, inner, max_size=3)
        ),
        max_leaves=10,
    )


values = json_values(text)
events = st.builds(
    Event,
    text,
    text,
    floats | st.integers(),
    text,
    text,
    text,
    text,
    st.dictionaries(text | st.sampled_from(["step", "time", "name"]), values, max_size=4),
)


@given(batch=st.lists(events, max_size=6))
def test_payloads_are_what_json_dumps_writes(batch: list[Event]) -> None:
    assert encode_event_payloads(batch) == [reference(event) for event in batch]


@given(value=json_values(plain_text))
def test_plain_json_is_written_natively(value: Any) -> None:
    fallback = Recorder()
    events = [event_of({"payload": value}), event_of({"k": [value]}, time=-0.0)]
    assert native.encode_event_payloads(events, fallback) == [reference(e) for e in events]
    assert fallback.events == []


def test_every_character_needing_an_escape_is_found_at_every_position() -> None:
    # Plain strings are checked eight bytes at a time: a special character in any lane of a
    # word, or in the tail after the last whole word, must still be escaped.
    specials = [chr(c) for c in [*range(0x20), 0x22, 0x5C, 0x7F, 0x80, 0xE9, 0x2028]] + ["😀"]
    neighbours = [chr(c) for c in (0x20, 0x21, 0x23, 0x5B, 0x5D, 0x7E)]  # " !#[]~"
    batch = []
    for length in range(1, 20):
        for at in range(length):
            for special in specials + neighbours:
                word = "a" * at + special + "b" * (length - at - 1)
                batch.append(event_of({word: word}, name=word))
    fallback = Recorder()
    assert native.encode_event_payloads(batch, fallback) == [reference(e) for e in batch]
    assert fallback.events == []


def test_plain_events_never_reach_the_fallback() -> None:
    fallback = Recorder()
    plain = [
        event_of({"step": 'é😀\x00"\\', "attempt": 2**70, "duration": 1e-7}),
        event_of({"payload": {"a": [1, 2.5, None, True, (3,)], "b": {}}}, name="custom.y"),
        event_of({}, time=1e16),
    ]
    assert native.encode_event_payloads(plain, fallback) == [reference(e) for e in plain]
    assert fallback.events == []


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "event",
    [
        event_of({"payload": Colour.RED}),  # a subclass: json writes int.__repr__, not its repr
        event_of({"payload": Name("n")}),
        event_of({Name("k"): 1}),
        event_of({1: "int key", "1": "str key"}),  # json turns the key into "1": twice
        event_of({"payload": {None: 1, 2.5: 2, True: 3}}),
        event_of({"payload": "\ud800"}),  # a lone surrogate has no UTF-8 form
        event_of({"payload": nested(150)}),  # deeper than the native limit, fine for json
        event_of({"time": 2.5, "step": "s"}),  # data replaces a common field in to_dict
        event_of({"time": 2.5}, time=float("nan")),  # ... even a NaN one
    ],
    ids=lambda event: repr(event.data)[:40],
)
def test_other_events_are_written_by_the_fallback_exactly(event: Event) -> None:
    fallback = Recorder()
    assert native.encode_event_payloads([event], fallback) == [reference(event)]
    assert fallback.events == [event]
    assert encode_event_payloads([event]) == [reference(event)]


def test_an_event_whose_data_is_not_a_dict_goes_to_the_fallback() -> None:
    class Data(dict[str, Any]):
        pass

    event = event_of(Data(k=1))
    fallback = Recorder()
    assert native.encode_event_payloads([event], fallback) == [reference(event)]
    assert fallback.events == [event]


@pytest.mark.parametrize(
    ("event", "where"),
    [
        (event_of({"payload": [1, {"x": float("nan")}]}), 'data["payload"][1]["x"]: float nan'),
        (event_of({"duration": float("-inf")}), 'data["duration"]: float -inf'),
        (event_of({}, time=float("inf")), "time: float inf"),
    ],
)
def test_a_non_finite_float_is_a_value_error_naming_the_event_and_key(
    event: Event, where: str
) -> None:
    with pytest.raises(ValueError):
        reference(event)
    batch = [event_of({}), event]
    with pytest.raises(ValueError, match=r"^event 1 ") as caught:
        encode_event_payloads(batch)
    assert "name='custom.x', id='abc-1'" in str(caught.value)
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("value", "error"),
    [({1, 2}, TypeError), (object(), TypeError), ({(1, 2): 3}, TypeError), (nested(5000), None)],
)
def test_what_json_refuses_fails_with_json_s_error(value: Any, error: type | None) -> None:
    event = event_of({"payload": value})
    with pytest.raises(Exception) as expected:
        reference(event)
    with pytest.raises(error or type(expected.value)):
        encode_event_payloads([event_of({}), event])


def test_a_cycle_fails_like_json() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular reference"):
        encode_event_payloads([event_of({"payload": loop})])


@pytest.mark.parametrize("returned", ["text", None, bytearray(b"{}")])
def test_a_fallback_must_return_bytes(returned: Any) -> None:
    def fallback(event: Event) -> Any:
        return returned

    with pytest.raises(TypeError, match="fallback encoder returned"):
        native.encode_event_payloads([event_of({"payload": {1, 2}})], fallback)


def test_the_fallback_s_errors_propagate() -> None:
    def fallback(event: Event) -> bytes:
        raise LookupError(event.id)

    with pytest.raises(LookupError, match="abc-1"):
        native.encode_event_payloads([event_of({"payload": {1}})], fallback)


@pytest.mark.parametrize("wrap", [list, tuple, iter], ids=["list", "tuple", "iterator"])
def test_any_iterable_of_events(wrap: Callable[[list[Event]], Any]) -> None:
    batch = [event_of({"i": i}) for i in range(3)]
    assert encode_event_payloads(wrap(batch)) == [reference(e) for e in batch]
    assert encode_event_payloads(wrap([])) == []


class _Renamed(Event):
    """An Event subclass whose ``name`` is computed: its instance dict no longer says it."""

    @property
    def name(self) -> str:
        return "custom.renamed"


def test_events_read_from_their_dict_or_by_attribute_agree_with_the_reference() -> None:
    """An exact Event is read in one pass over its ``__dict__`` (attrs' field order); anything
    else, or an Event whose dict is not in that shape, attribute by attribute."""
    plain = event_of({"step": "a", "attempt": 1})
    extra = event_of({"step": "b"})
    object.__setattr__(extra, "cached", 1)  # a ninth entry: read by attribute
    reordered = event_of({"step": "c"})
    fields = dict(reordered.__dict__)
    reordered.__dict__.clear()
    reordered.__dict__.update(reversed(list(fields.items())))  # same fields, other order
    renamed = _Renamed("custom.x", "abc-2", 2.5, "t" * 32, "ns", "wf", "1.0.0", {"k": 1})
    events = [plain, extra, reordered, renamed]
    fallback = Recorder()
    assert native.encode_event_payloads(events, fallback) == [reference(e) for e in events]
    assert fallback.events == []
    assert b'"name":"custom.renamed"' in reference(renamed)


# -- runs: consecutive events of one name, their payloads joined -------------------------------


def reference_runs(
    batch: list[Event], max_events: int, max_bytes: int
) -> list[tuple[str, int, bytes]]:
    """The rule of :func:`tasker_core.encode_event_runs`, stated plainly."""
    runs: list[tuple[str, int, bytes]] = []
    for event in batch:
        payload = reference(event)
        if runs:
            name, count, joined = runs[-1]
            if (
                name == event.name
                and count < max_events
                and len(joined) + 1 + len(payload) <= max_bytes
            ):
                runs[-1] = (name, count + 1, joined + b"\n" + payload)
                continue
        runs.append((event.name, 1, payload))
    return runs


# The engine makes all of a task's events from one Task's objects: batches drawn from a few
# shared field objects exercise the encoder's memory of the last event's task fields.
_TASKS = [
    ("t" * 32, "ns", "wf", "1.0.0"),
    ("u" * 32, "ns", "wf", "1.0.0"),  # equal namespace etc., but other objects
    ("v" * 32, "nś", "wf", "2"),
    ("w" * 32, "ns\n", 3, "1"),  # not all str: never remembered
    ("x" * 32, "ns", [1.5], "1"),  # a list may change: never remembered
]
shared_events = st.builds(
    lambda name, i, task, data: Event(name, f"e-{i}", 1.0 + i / 8, *task, data),
    st.sampled_from(["step.started", "step.completed", "task.failed"]),
    st.integers(0, 10**6),
    st.sampled_from(_TASKS),
    st.dictionaries(st.sampled_from(["step", "attempt", "time"]), values, max_size=2),
)


@given(
    batch=st.lists(shared_events | events, max_size=40),
    max_events=st.integers(1, 5),
    max_bytes=st.integers(1, 1500),
)
def test_runs_are_the_payloads_joined_by_the_rule(
    batch: list[Event], max_events: int, max_bytes: int
) -> None:
    try:
        expected = reference_runs(batch, max_events, max_bytes)
    except ValueError:
        with pytest.raises(ValueError, match="not JSON compliant"):
            encode_event_runs(batch, max_events=max_events, max_bytes=max_bytes)
        return
    assert encode_event_runs(batch, max_events=max_events, max_bytes=max_bytes) == expected
    assert encode_event_payloads(batch) == [reference(event) for event in batch]


def test_the_remembered_task_fields_follow_the_objects_not_their_position() -> None:
    task, other = _TASKS[0], _TASKS[2]
    mutable = ["a"]
    batch = [
        Event("step.started", "e-1", 1.0, *task, {}),
        Event("step.started", "e-2", 1.0, *task, {}),  # the same objects: remembered
        Event("step.started", "e-3", 1.0, *other, {}),
        Event("step.started", "e-4", 1.0, task[0], "".join(["n", "s"]), task[2], task[3], {}),
        Event("step.started", "e-5", 1.0, task[0], mutable, task[2], task[3], {}),
    ]
    before = encode_event_payloads(batch)
    assert before == [reference(event) for event in batch]
    mutable.append("b")  # not remembered, so written as it is now
    after = encode_event_runs(batch, max_events=16, max_bytes=1 << 20)
    assert after == reference_runs(batch, 16, 1 << 20)
    assert b'"namespace":["a","b"]' in after[0][2]


def test_runs_go_through_the_fallback_and_name_what_is_wrong() -> None:
    fallback = Recorder()
    odd = event_of({"k": enum.IntEnum("E", "A").A}, name="x")  # an int subclass: the fallback's
    batch = [event_of({"i": 1}, name="x"), odd, event_of({"i": 2}, name="x")]
    assert native.encode_event_runs(batch, 16, 1 << 20, fallback) == reference_runs(
        batch, 16, 1 << 20
    )
    assert fallback.events == [odd]
    nameless = event_of({})
    object.__setattr__(nameless, "name", 3)
    with pytest.raises(TypeError, match="event 1: its name is not a str"):
        encode_event_runs([batch[0], nameless], max_events=4, max_bytes=100)
    with pytest.raises(ValueError, match=r"event 1 \(name='x', id='abc-1'\): data\[\"f\"\]"):
        encode_event_runs(
            [batch[0], event_of({"f": math.inf}, name="x")], max_events=4, max_bytes=100
        )
    for limits in ((0, 100), (4, 0)):
        with pytest.raises(ValueError, match="at least 1"):
            encode_event_runs(batch, max_events=limits[0], max_bytes=limits[1])
    assert encode_event_runs([], max_events=1, max_bytes=1) == []
