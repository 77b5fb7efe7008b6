"""The wire format: each event is a two-frame message ``[topic, payload]``.

- frame 1, the topic: the event name in UTF-8 (``step.completed``), so a SUB socket filters with
  a plain prefix (``step.``, ``task.failed``);
- frame 2, the payload: one JSON object in UTF-8, :meth:`tasker_core.Event.to_dict` (the common
  catalogue fields plus the event's own; see spec/events.toml).

docs/events-wire-format.md is the reference for non-Python consumers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from tasker_core import Event

__all__ = ["WireError", "decode", "encode", "encode_payload", "reference_payload"]

_reference = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_COMMON = frozenset(("name", "id", "time", "task_id", "namespace", "workflow", "version"))
_CACHE_MAX = 4096
# Encoded fragments, so the hot path mostly concatenates: per task, the fields all its events
# share; per event name, the opening; per data key, its label.
_heads: dict[tuple[str, str, str, str], str] = {}
_openings: dict[str, str] = {}
_labels: dict[str, str] = {}


class WireError(ValueError):
    """A message that is not ``[topic, JSON object]`` with the topic equal to its name."""


def encode(event: Event) -> tuple[bytes, bytes]:
    """``(topic, payload)`` for one event; ValueError if its data is not plain JSON."""
    return event.name.encode(), encode_payload(event)


def reference_payload(event: Event) -> bytes:
    """The payload as the standard library writes it: the definition :func:`encode_payload`
    must match byte for byte."""
    return _reference(event.to_dict()).encode()


def encode_payload(event: Event) -> bytes:
    """Compact ASCII JSON of ``event.to_dict()``, without building the dict.

    The sink encodes every event it sends, so this is its hot path: the fields a task's events
    share are encoded once per task, scalars are written directly, and anything else goes to the
    standard encoder. The output is byte-identical to :func:`reference_payload` (tested).
    """
    data = event.data
    if not _COMMON.isdisjoint(data):
        return reference_payload(event)  # data overrides a common field: let to_dict decide
    key = (event.task_id, event.namespace, event.workflow, event.version)
    head = _heads.get(key)
    if head is None:
        if len(_heads) >= _CACHE_MAX:
            _heads.clear()
        head = _heads[key] = (
            f',"task_id":{_quote(key[0])},"namespace":{_quote(key[1])}'
            f',"workflow":{_quote(key[2])},"version":{_quote(key[3])}'
        )
    opening = _openings.get(event.name)
    if opening is None:
        opening = _remember(_openings, event.name, '{"name":' + _quote(event.name) + ',"id":')
    parts = [opening, _quote(event.id), ',"time":', _scalar(event.time), head]
    for name, value in data.items():
        label = _labels.get(name)
        if label is None:
            if type(name) is not str:
                return reference_payload(event)  # json turns such keys into strings its own way
            label = _remember(_labels, name, "," + encode_basestring_ascii(name) + ":")
        parts += [label, _scalar(value)]
    parts.append("}")
    return "".join(parts).encode()


def _remember(cache: dict[str, str], key: str, value: str) -> str:
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _quote(text: str) -> str:
    if type(text) is not str:
        return _reference(text)  # a str subclass or worse: the reference encoder decides
    return encode_basestring_ascii(text)


def _scalar(value: object) -> str:
    # Exact types only: bool is an int, and subclasses may encode differently; those go to the
    # reference encoder like lists and dicts do.
    if type(value) is str:
        return encode_basestring_ascii(value)
    if type(value) is int:
        return int.__repr__(value)
    if type(value) is float:
        if value != value or value in _INFINITIES:
            raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
        return float.__repr__(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return _reference(value)


_INFINITIES = (float("inf"), float("-inf"))


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
