"""The wire format: each event is a two-frame message ``[topic, payload]``.

- frame 1, the topic: the event name in UTF-8 (``step.completed``), so a SUB socket filters with
  a plain prefix (``step.``, ``task.failed``);
- frame 2, the payload: one JSON object in ASCII, :meth:`tasker_core.Event.to_dict` (the common
  catalogue fields plus the event's own; see spec/events.toml) as
  :func:`tasker_core.encode_event_payloads` writes it.

docs/events-wire-format.md is the reference for non-Python consumers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tasker_core import Event, encode_event_payloads

__all__ = ["WireError", "decode", "encode", "encode_payload", "reference_payload"]

_reference = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


class WireError(ValueError):
    """A message that is not ``[topic, JSON object]`` with the topic equal to its name."""


def encode(event: Event) -> tuple[bytes, bytes]:
    """``(topic, payload)`` for one event; ValueError if its data is not plain JSON."""
    return event.name.encode(), encode_payload(event)


def encode_payload(event: Event) -> bytes:
    """One event's payload (the sink encodes whole batches with
    :func:`tasker_core.encode_event_payloads`, natively)."""
    return encode_event_payloads((event,))[0]


def reference_payload(event: Event) -> bytes:
    """The payload as the standard library writes it: the definition the native encoder must
    match byte for byte."""
    return _reference(event.to_dict()).encode()


def decode(frames: Sequence[bytes]) -> dict[str, Any]:
    """The event object carried by a received multipart message; WireError if malformed."""
    if len(frames) != 2:
        raise WireError(f"expected 2 frames [topic, payload], got {len(frames)}")
    topic, payload = frames
    try:
        event = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"payload is not UTF-8 JSON: {exc}") from None
    if not isinstance(event, dict):
        raise WireError(f"payload is not a JSON object but {type(event).__name__}")
    name = event.get("name")
    if not isinstance(name, str) or name.encode() != bytes(topic):
        raise WireError(f"topic {bytes(topic)!r} does not match the payload's name {name!r}")
    return event
