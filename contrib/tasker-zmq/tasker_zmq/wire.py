"""The wire format: each event is a two-frame message ``[topic, payload]``.

- frame 1, the topic: the event name in UTF-8 (``step.completed``), so a SUB socket filters with
  a plain prefix (``step.``, ``task.failed``);
- frame 2, the payload: one JSON object in UTF-8, :meth:`tasker_core.Event.to_dict` (the common
  catalogue fields plus the event's own; see spec/events.toml).

docs/events-wire-format.md is the reference for non-Python consumers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any, TypeVar

from tasker_core import Event

__all__ = ["WireError", "decode", "encode", "encode_payload", "reference_payload"]

_reference = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_COMMON = frozenset(("name", "id", "time", "task_id", "namespace", "workflow", "version"))
_CACHE_MAX = 4096
_K = TypeVar("_K")
_V = TypeVar("_V")

_Encoder = Callable[[Event, str], bytes]
_Bound = tuple[_Encoder, str]
# Compiled encoders per (event name, data keys), and per (event name, task, data keys) that
# encoder with the text the task's events share, so the hot path is one lookup and one format.
_plans: dict[tuple[Any, ...], _Encoder] = {}
_bound: dict[tuple[Any, ...], _Bound] = {}
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
    """Compact ASCII JSON of ``event.to_dict()``, byte-identical to :func:`reference_payload`.

    The sink encodes every event it sends, so this is its hot path. Events of one name carry the
    same data keys with values of the same types, so the first event of each (name, keys) shape
    compiles an encoder for it: one f-string holding the constant text, with type checks that
    send any event it does not fit to the general encoder. The fields a task's events share are
    encoded once per task and shape.
    """
    key = (event.name, event.task_id, event.namespace, event.workflow, event.version, *event.data)
    bound = _bound.get(key)
    if bound is None:
        bound = _bind(event, key)
    return bound[0](event, bound[1])


def _bind(event: Event, key: tuple[Any, ...]) -> _Bound:
    """The encoder and task text for events shaped like ``event``, remembered."""
    keys = key[5:]
    plan = _plans.get((event.name, *keys))
    if plan is None:
        plain = type(event.name) is str and all(type(k) is str for k in keys)
        compiled = plain and _COMMON.isdisjoint(keys)
        plan = _compile(event.name, keys, event.data) if compiled else _general_bound
        _remember(_plans, (event.name, *keys), plan)
    head = _heads.get(key[1:5])  # (task_id, namespace, workflow, version)
    return _remember(_bound, key, (plan, _head(event) if head is None else head))


def _compile(name: str, keys: tuple[str, ...], sample: dict[str, Any]) -> _Encoder:
    """Generate ``encode(event, head)`` for one shape, specialised to the value types of
    ``sample``.

    str, int and float values are formatted directly (after an exact-type check, and a
    finiteness check for floats, ``x - x == 0.0``); other values go through the standard
    encoder. Generated source (as attrs and dataclasses do) because a loop over the fields
    costs about as much as the formatting itself. Only generated names appear in the source:
    keys and text reach it as values in its namespace.
    """
    namespace: dict[str, Any] = {
        "_q": encode_basestring_ascii,
        "_ref": _reference,
        "_general": _general,
        "_c0": '{"name":' + encode_basestring_ascii(name) + ',"id":',
        "_c1": ',"time":',
    }
    parts = ["{_c0}{_q(i)}{_c1}{t!r}{head}"]
    checks = ["type(i) is str", "type(t) is float", "t - t == 0.0"]
    fetch = ""
    for n, key in enumerate(keys):
        v, kind = f"v{n}", type(sample[key])
        namespace[f"_k{n}"] = key
        namespace[f"_l{n}"] = "," + encode_basestring_ascii(key) + ":"
        fetch += f"    {v} = data[_k{n}]\n"
        if kind is str:
            parts.append(f"{{_l{n}}}{{_q({v})}}")
            checks.append(f"type({v}) is str")
        elif kind is int:
            parts.append(f"{{_l{n}}}{{{v}}}")
            checks.append(f"type({v}) is int")
        elif kind is float:
            parts.append(f"{{_l{n}}}{{{v}!r}}")
            checks += [f"type({v}) is float", f"{v} - {v} == 0.0"]
        else:
            parts.append(f"{{_l{n}}}{{_ref({v})}}")
    source = (
        "def encode(event, head):\n"
        "    data = event.data\n"
        "    i = event.id\n"
        "    t = event.time\n"
        f"{fetch}"
        f"    if {' and '.join(checks)}:\n"
        "        return f'" + "".join(parts) + "}}'.encode()\n"
        "    return _general(event)\n"
    )
    exec(compile(source, f"<tasker_zmq encoder for {name!r}>", "exec"), namespace)
    encoder: _Encoder = namespace["encode"]
    return encoder


def _general_bound(event: Event, head: str) -> bytes:
    return _general(event)


def _head(event: Event) -> str:
    """The encoded fields every event of a task shares, remembered per task."""
    key = (event.task_id, event.namespace, event.workflow, event.version)
    if len(_heads) >= _CACHE_MAX:
        _heads.clear()
    _heads[key] = head = (
        f',"task_id":{_reference(key[0])},"namespace":{_reference(key[1])}'
        f',"workflow":{_reference(key[2])},"version":{_reference(key[3])}'
    )
    return head


def _general(event: Event) -> bytes:
    """Any event: cached fragments and scalars written directly, the rest by the standard
    encoder. The path for shapes a compiled encoder does not fit."""
    data = event.data
    if not _COMMON.isdisjoint(data):
        return reference_payload(event)  # data overrides a common field: let to_dict decide
    head = _heads.get((event.task_id, event.namespace, event.workflow, event.version))
    if head is None:
        head = _head(event)
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


def _remember(cache: dict[_K, _V], key: _K, value: _V) -> _V:
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
