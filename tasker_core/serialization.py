"""The one cattrs converter, and strict JSON helpers.

Every record that leaves a process or lands in a database goes through here: domain objects become
JSON-safe dicts through :data:`converter`, and payloads (contexts, results, metadata) are checked
to be plain JSON before they are stored, so that what a backend returns is exactly what it was
given. Results and contexts are JSON; never pickle.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cattrs import Converter
from cattrs.preconf.json import make_converter as _make_json_converter

from tasker_core import _native
from tasker_core._native import copy_flat_dict, is_flat_dict

if TYPE_CHECKING:
    from tasker_core.models import Event

__all__ = [
    "check_json",
    "configure_converter",
    "converter",
    "copy_json",
    "dumps_json",
    "encode_event_payloads",
    "encode_event_runs",
    "loads_json",
    "make_converter",
]


class _NotJSON(Exception):
    """Internal: carries the reason and the path (built leaf to root) of a non-JSON value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []


def _type_name(value: object) -> str:
    return type(value).__name__


def _walk(value: object, active: set[int]) -> None:
    """Raise _NotJSON for the first value (depth first) that JSON cannot hold exactly."""
    if value is None or isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _NotJSON(f"float {value!r} is not JSON-serializable (JSON has no NaN/Infinity)")
        return
    if isinstance(value, dict):
        marker = id(value)
        if marker in active:
            raise _NotJSON("circular reference is not JSON-serializable")
        active.add(marker)
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(
                    f"dict key {key!r} ({_type_name(key)}) is not a string, as JSON object "
                    "keys must be"
                )
            try:
                _walk(item, active)
            except _NotJSON as exc:
                exc.path.append(f"[{key!r}]")
                raise
        active.discard(marker)
        return
    if isinstance(value, (list, tuple)):
        marker = id(value)
        if marker in active:
            raise _NotJSON("circular reference is not JSON-serializable")
        active.add(marker)
        for index, item in enumerate(value):
            try:
                _walk(item, active)
            except _NotJSON as exc:
                exc.path.append(f"[{index}]")
                raise
        active.discard(marker)
        return
    raise _NotJSON(f"{_type_name(value)} is not JSON-serializable")


def _copy(value: Any, active: set[int]) -> Any:
    """A normalized deep copy (what a JSON round trip gives back); _NotJSON like :func:`_walk`."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is dict:
        marker = id(value)
        if marker in active:
            raise _NotJSON("circular reference is not JSON-serializable")
        active.add(marker)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotJSON(
                    f"dict key {key!r} ({_type_name(key)}) is not a string, as JSON object "
                    "keys must be"
                )
            try:
                out[str(key)] = _copy(item, active)
            except _NotJSON as exc:
                exc.path.append(f"[{key!r}]")
                raise
        active.discard(marker)
        return out
    if kind is list or kind is tuple:
        marker = id(value)
        if marker in active:
            raise _NotJSON("circular reference is not JSON-serializable")
        active.add(marker)
        items: list[Any] = []
        for index, item in enumerate(value):
            try:
                items.append(_copy(item, active))
            except _NotJSON as exc:
                exc.path.append(f"[{index}]")
                raise
        active.discard(marker)
        return items
    # Subclasses (StrEnum, IntEnum, ...) and floats: check, then reduce to the plain JSON type.
    _walk(value, active)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return _copy(dict(value) if isinstance(value, dict) else list(value), active)


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
"""One encoder for the process: json.dumps with non-default options builds a new one per call."""


def copy_json(value: Any, where: str = "value") -> Any:
    """A deep copy of a plain-JSON value, equal to what a JSON round trip would return.

    Tuples become lists and str/int/float subclasses their base type; TypeError as
    :func:`check_json` for anything that is not plain JSON. Cheaper than dumps + loads.
    """
    if value is None:
        return None
    if type(value) is dict:
        copied = copy_flat_dict(value)  # flat and plain: a shallow copy is a deep one
        if copied is not None:
            return copied
    try:
        return _copy(value, set())
    except _NotJSON as exc:
        path = where + "".join(reversed(exc.path))
        raise TypeError(f"{path}: {exc.reason}") from None


def check_json(value: Any, where: str = "value") -> Any:
    """Return ``value`` unchanged if it is plain JSON; else TypeError naming the offending path.

    Plain JSON: None, bool, int, finite float, str, lists/tuples and dicts with string keys (no
    cycles). The message reads like ``results['items'][2]: set is not JSON-serializable``.
    """
    try:
        _walk(value, set())
    except _NotJSON as exc:
        path = where + "".join(reversed(exc.path))
        raise TypeError(f"{path}: {exc.reason}") from None
    return value


def dumps_json(value: Any, where: str = "value") -> str:
    """Compact JSON text of a plain-JSON value (checked first; see :func:`check_json`).

    Flat dicts of scalars with string keys (transition metadata, most contexts) skip the
    recursive walk: one native call checks everything they could hold wrongly.
    """
    if is_flat_dict(value):
        return _ENCODE(value)
    check_json(value, where)
    return _ENCODE(value)


def loads_json(text: str | bytes) -> Any:
    """Parse JSON text (the inverse of :func:`dumps_json`)."""
    return json.loads(text)


_EVENT_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _event_payload(event: Event) -> bytes:
    """The definition of an event's payload, and the native encoder's fallback."""
    return _EVENT_ENCODE(event.to_dict()).encode()


def encode_event_payloads(events: Iterable[Event]) -> list[bytes]:
    """Each event's payload for the wire, in order, in one native call.

    A payload is ``json.dumps(event.to_dict(), separators=(",", ":"), allow_nan=False)
    .encode()``, byte for byte: compact JSON, ASCII only (``\\uXXXX`` escapes, surrogate pairs
    beyond the BMP), floats as ``repr`` writes them. Event sinks that ship events elsewhere use
    it: plain JSON values are written natively, anything else (subclasses of str or int, say) by
    the standard library. Errors are json's: ValueError for a NaN or infinity (naming the event
    and the key), TypeError for a value JSON cannot hold; one bad event fails the call.
    """
    return _native.encode_event_payloads(events, _event_payload)


def encode_event_runs(
    events: Iterable[Event], *, max_events: int, max_bytes: int
) -> list[tuple[str, int, bytes]]:
    """The events as runs, for sinks that ship one message per run of a topic (the ZeroMQ sink).

    A run is consecutive events of one name: ``(name, count, payload)``, the payload being their
    :func:`encode_event_payloads` payloads joined by ``b"\\n"`` (JSON Lines). A run is cut
    before the event that would take it past ``max_events`` events or ``max_bytes`` bytes,
    separators counted; it always holds at least one event. Written into one buffer, with no
    bytes object per event. Errors as :func:`encode_event_payloads`; TypeError for an event
    whose name is not a str, ValueError when a limit is below 1.
    """
    return _native.encode_event_runs(events, max_events, max_bytes, _event_payload)


def _is_any(tp: Any) -> bool:
    return tp is Any


def configure_converter(conv: Converter) -> None:
    """Teach ``conv`` tasker's rules: ``JSON``-typed (Any) fields hold plain JSON, never coerced.

    cattrs would otherwise unstructure a set inside a result into a list silently; here it fails
    with the path of the offending value instead, and structuring passes JSON through untouched.
    """
    conv.register_unstructure_hook_func(_is_any, check_json)
    conv.register_structure_hook_func(_is_any, lambda value, _type: value)


def make_converter() -> Converter:
    """A fresh JSON-preconfigured converter with :func:`configure_converter` applied."""
    conv = _make_json_converter()
    configure_converter(conv)
    return conv


converter: Converter = make_converter()
"""The converter the kernel and builtin backends share (rows and messages to models and back)."""
