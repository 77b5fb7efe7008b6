"""tasker_core._native.copy_flat_dict (and is_flat_dict): the stores' one-call copy of flat JSON
objects.

The definition it must keep: a new, equal dict (same key order) exactly when the value is an
exact dict of exact-str keys to exact str/int/bool/None values or finite floats; None for
anything else, so that callers take the general path (which names what is wrong).
"""

from __future__ import annotations

import enum
import math
from collections import OrderedDict
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tasker_core._native import copy_flat_dict, is_flat_dict
from tasker_core.serialization import copy_json, dumps_json


class _Str(str):
    pass


class _Color(enum.IntEnum):
    RED = 1


_FLAT_TYPES = (str, int, bool, type(None))


def reference(value: Any) -> dict[str, Any] | None:
    if type(value) is not dict:
        return None
    for key, item in value.items():
        if type(key) is not str:
            return None
        kind = type(item)
        if kind is float:
            if not math.isfinite(item):
                return None
        elif kind not in _FLAT_TYPES:
            return None
    return dict(value)


_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**64),  # beyond 64 bits: still an int
    st.floats(),  # NaN and infinities included
    st.text(),
)
_odd = st.one_of(
    st.builds(_Str, st.text()),
    st.just(_Color.RED),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(), st.integers(), max_size=2),
    st.tuples(st.integers()),
)
_keys = st.one_of(st.text(), st.text(), st.integers(), st.builds(_Str, st.text()))


@given(st.dictionaries(_keys, st.one_of(_scalars, _scalars, _odd), max_size=6))
def test_a_dict_is_copied_exactly_when_it_is_flat_plain_json(value: dict[Any, Any]) -> None:
    got = copy_flat_dict(value)
    want = reference(value)
    if want is None:
        assert got is None
        return
    assert got is not None and got is not value
    assert list(got.items()) == list(want.items())
    assert [type(v) for v in got.values()] == [type(v) for v in want.values()]


@given(st.one_of(_scalars, _odd, st.builds(OrderedDict, st.dictionaries(st.text(), _scalars))))
def test_anything_but_an_exact_dict_is_left_to_the_general_path(value: Any) -> None:
    if type(value) is dict:
        return  # the dict case is the test above's
    assert copy_flat_dict(value) is None


@given(st.one_of(st.dictionaries(_keys, st.one_of(_scalars, _odd), max_size=6), _scalars, _odd))
def test_is_flat_dict_answers_whether_copy_flat_dict_copies(value: Any) -> None:
    assert is_flat_dict(value) == (copy_flat_dict(value) is not None)


def test_the_stores_copy_and_encode_flat_and_nested_values_alike() -> None:
    flat = {"attempt": 2, "owner": "w1", "duration": 0.25, "ok": True, "none": None}
    copied = copy_json(flat)
    assert copied == flat and copied is not flat
    assert dumps_json(flat) == '{"attempt":2,"owner":"w1","duration":0.25,"ok":true,"none":null}'
    nested = {"items": [1, {"a": _Str("x")}]}
    assert copy_json(nested) == {"items": [1, {"a": "x"}]}
    assert type(copy_json(nested)["items"][1]["a"]) is str
