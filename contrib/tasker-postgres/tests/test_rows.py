"""The settle's direct encoding of transition metadata is exactly the general encoder's."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasker_postgres import rows

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)


@given(
    attempt=st.one_of(st.integers(), st.booleans()),
    duration=st.one_of(st.floats(allow_nan=True), st.integers()),
)
def test_attempt_and_duration_encode_as_encode_does(attempt: int, duration: float) -> None:
    meta: dict[str, Any] = {"attempt": attempt, "duration": duration}
    try:
        expected: str | None = rows.encode(meta, "metadata")
    except (TypeError, ValueError):  # not JSON (NaN, infinity): refused by the direct path too
        expected = None
    if expected is None:
        with pytest.raises((TypeError, ValueError)):
            rows.encode_metadata(meta)
    else:
        assert rows.encode_metadata(meta) == expected


@given(meta=st.dictionaries(st.sampled_from(["attempt", "duration", "retry_at"]), _scalars))
def test_other_metadata_takes_the_general_path(meta: dict[str, Any]) -> None:
    assert rows.encode_metadata(meta) == (rows.encode(meta, "metadata") or "{}")
