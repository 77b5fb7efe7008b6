"""The wire format (version 2): two-frame messages ``[topic, payload]``, each carrying one or
more events of the same name.

- frame 1, the topic: the event name in UTF-8 (``step.completed``), so a SUB socket filters with
  a plain prefix (``step.``, ``task.failed``);
- frame 2, the payload: one or more JSON objects separated by a single ``b"\\n"``, each
  :meth:`tasker_core.Event.to_dict` (the common catalogue fields plus the event's own; see
  spec/events.toml) exactly as :func:`tasker_core.encode_event_payloads` writes it: compact
  ASCII JSON, which never holds a raw newline. Every object's ``name`` equals the topic.

A publisher coalesces only *consecutive* events of a batch that share a name, at most
:data:`MAX_EVENTS` events and :data:`MAX_BYTES` bytes of payload per message (a single larger
event goes alone), so one message per event name run keeps every order the bus promises and
every subscriber's prefix filter exact. A one-event message is byte-identical to version 1.

docs/events-wire-format.md is the reference for non-Python consumers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from tasker_core import Event, encode_event_payloads, encode_event_runs

__all__ = [
    "MAX_BYTES",
    "MAX_EVENTS",
    "SEPARATOR",
    "WireError",
    "decode",
    "encode",
    "encode_messages",
    "encode_payload",
    "group",
    "reference_payload",
]

MAX_EVENTS = 16
"""Events per message at most, by default (``events.zmq.events_per_message``; a publisher's
choice that consumers must not rely on). Coalescing gains little beyond it, and a queue of
``events.zmq.hwm`` messages then holds at most this many times as many events."""
MAX_BYTES = 16 * 1024
"""Payload bytes per message at most, separators included, unless one event alone is larger."""
SEPARATOR = b"\n"
"""Between two events' JSON in one payload frame."""

_reference = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_raw_decode = json.JSONDecoder().raw_decode


class WireError(ValueError):
    """A message that is not ``[topic, JSON objects]`` with every object named as the topic."""


def encode(event: Event) -> tuple[bytes, bytes]:
    """``(topic, payload)``: the one-event message; ValueError if its data is not plain JSON."""
    return event.name.encode(), encode_payload(event)


def encode_messages(
    events: Sequence[Event], max_events: int = MAX_EVENTS, max_bytes: int = MAX_BYTES
) -> list[tuple[bytes, bytes]]:
    """The messages a publisher sends for ``events``, in order (ValueError as :func:`encode`):
    the runs of :func:`tasker_core.encode_event_runs`, which cuts them as :func:`group` does."""
    runs = encode_event_runs(events, max_events=max_events, max_bytes=max_bytes)
    return [(name.encode(), payload) for name, _, payload in runs]


def group(
    topics: Sequence[bytes],
    payloads: Sequence[bytes | None],
    max_events: int = MAX_EVENTS,
    max_bytes: int = MAX_BYTES,
) -> Iterator[tuple[bytes, list[bytes]]]:
    """Each message's topic and payloads: runs of consecutive equal topics, None skipped.

    A run is cut where adding the next payload would pass ``max_events`` events or
    ``max_bytes`` bytes (with the separators); every message holds at least one event. The
    native sender (``tasker_zmq._sender``) cuts runs by the same rule.
    """
    topic: bytes | None = None
    parts: list[bytes] = []
    size = 0
    for next_topic, payload in zip(topics, payloads, strict=True):
        if payload is None:
            continue
        if (
            next_topic == topic
            and len(parts) < max_events
            and size + len(SEPARATOR) + len(payload) <= max_bytes
        ):
            parts.append(payload)
            size += len(SEPARATOR) + len(payload)
            continue
        if topic is not None:
            yield topic, parts
        topic, parts, size = next_topic, [payload], len(payload)
    if topic is not None:
        yield topic, parts


def encode_payload(event: Event) -> bytes:
    """One event's JSON (the sink encodes whole batches with
    :func:`tasker_core.encode_event_payloads`, natively)."""
    return encode_event_payloads((event,))[0]


def reference_payload(event: Event) -> bytes:
    """The event's JSON as the standard library writes it: the definition the native encoder
    must match byte for byte."""
    return _reference(event.to_dict()).encode()


def decode(frames: Sequence[bytes]) -> list[dict[str, Any]]:
    """The events a received multipart message carries, in order; WireError if malformed.

    Strict: the payload must be JSON objects without newlines, joined by single newlines, with
    nothing before, between or after them, each named as the topic; a malformed message yields
    no event at all.
    """
    if len(frames) != 2:
        raise WireError(f"expected 2 frames [topic, payload], got {len(frames)}")
    topic, payload = bytes(frames[0]), frames[1]
    try:
        text = bytes(payload).decode()
    except UnicodeDecodeError as exc:
        raise WireError(f"payload is not UTF-8: {exc}") from None
    events: list[dict[str, Any]] = []
    start, end = 0, len(text)
    while True:
        try:
            event, stop = _raw_decode(text, start)
        except json.JSONDecodeError as exc:
            raise WireError(f"event {len(events) + 1} of the payload is not JSON: {exc}") from None
        if not isinstance(event, dict):
            raise WireError(
                f"event {len(events) + 1} is not a JSON object but {type(event).__name__}"
            )
        name = event.get("name")
        if not isinstance(name, str) or name.encode() != topic:
            raise WireError(
                f"topic {topic!r} does not match event {len(events) + 1}'s name {name!r}"
            )
        if text.find("\n", start, stop) != -1:
            raise WireError(f"event {len(events) + 1} spans lines")
        events.append(event)
        if stop == end:
            return events
        if text[stop] != "\n":
            raise WireError(
                f"event {len(events)} is followed by {text[stop]!r}, not a newline or the end"
            )
        start = stop + 1
