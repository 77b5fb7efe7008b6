"""Events in every shape the catalogue (spec/events.toml) defines, for sink tests.

``catalogue()`` reads the event names and fields from the spec text tasker-core was built with;
``example_events()`` gives one plausible event per catalogue entry; ``events()`` and
``event_batches()`` draw random ones (unicode, big numbers, nested payloads) for hypothesis.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import cache
from typing import Any

from hypothesis import strategies as st
from tasker_core import SPEC_EVENTS_TOML, Event

__all__ = ["catalogue", "event_batches", "events", "example_events", "field_values"]

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), _floats, _text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=10,
)


@cache
def catalogue() -> Mapping[str, tuple[str, ...]]:
    """Event name -> its own fields (beyond the common ones), from the spec's event catalogue."""
    spec: dict[str, Any] = tomllib.loads(SPEC_EVENTS_TOML)
    return {name: tuple(entry["fields"]) for name, entry in spec["events"].items()}


def field_values(field: str) -> st.SearchStrategy[Any]:
    """Values a field of that name takes on real events."""
    if field == "attempt":
        return st.integers(1, 1000)
    if field in ("duration", "retry_at"):
        return st.floats(0, 1e10, allow_nan=False)
    if field == "steps":
        return st.lists(_text, max_size=5)
    if field == "payload":
        return _json
    return _text


def _event_name(name: str) -> st.SearchStrategy[str]:
    if name == "custom":  # handlers publish "custom.<their name>"
        return st.from_regex(r"custom\.[a-z][a-z0-9_.]{0,20}", fullmatch=True)
    return st.just(name)


@st.composite
def events(draw: st.DrawFn, names: list[str] | None = None) -> Event:
    """One catalogue event with every field the catalogue lists for it."""
    kind = draw(st.sampled_from(sorted(catalogue()) if names is None else names))
    data = {f: draw(field_values(f)) for f in catalogue()[kind]}
    return Event(
        name=draw(_event_name(kind)),
        id=draw(st.uuids()).hex,
        time=draw(st.floats(0, 4e9, allow_nan=False)),
        task_id=draw(_text.filter(bool)),
        namespace=draw(_text),
        workflow=draw(_text),
        version=draw(st.sampled_from(["1.0.0", "2.3.4", "0.1.0rc1"])),
        data=data,
    )


def event_batches(max_size: int = 20) -> st.SearchStrategy[list[Event]]:
    """Batches as the engine's event thread hands them to a sink (possibly empty)."""
    return st.lists(events(), max_size=max_size)


_PLAIN: dict[str, Any] = {
    "step": "charge_card",
    "attempt": 2,
    "duration": 0.125,
    "error_class": "TimeoutError",
    "error_message": "gateway took longer than 30s",
    "retry_at": 1700000060.5,
    "steps": ["reserve", "ship"],
    "state": "error",
    "reason": "operator request",
    "payload": {"progress": 0.5, "note": "half way", "items": [1, 2, None]},
}


def example_events(task_id: str = "task-1") -> list[Event]:
    """One realistic event per catalogue entry, in catalogue order."""
    out = []
    for n, (name, fields) in enumerate(catalogue().items()):
        out.append(
            Event(
                name="custom.progress" if name == "custom" else name,
                id=f"evt-{n}",
                time=1700000000.0 + n,
                task_id=task_id,
                namespace="ecommerce",
                workflow="order_fulfillment",
                version="1.2.0",
                data={f: _PLAIN.get(f, f"value of {f}") for f in fields},
            )
        )
    return out
