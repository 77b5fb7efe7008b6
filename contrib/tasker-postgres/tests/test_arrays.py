"""Array literals read back by Postgres as exactly the lists they were built from."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasker_postgres.arrays import bool_array, float_array, int_array, text_array
from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database

_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)


@pytest.fixture(scope="module")
def conn(pg_cluster: TempCluster) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(conninfo(fresh_database(pg_cluster, "arrays")), autocommit=True) as c:
        yield c


def _read(conn: psycopg.Connection[Any], literal: str, cast: str) -> Any:
    row = conn.execute(f"SELECT %s::{cast}", (literal,)).fetchone()
    assert row is not None
    return row[0]


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.one_of(st.none(), _text, st.sampled_from(['"', "\\", "NULL", "{,}"]))))
def test_text(conn: psycopg.Connection[Any], values: list[str | None]) -> None:
    assert _read(conn, text_array(values), "text[]") == values


@settings(max_examples=30, deadline=None)
@given(
    ints=st.lists(st.integers(-(2**31), 2**31 - 1)),
    bools=st.lists(st.booleans()),
    floats=st.lists(st.one_of(st.none(), st.floats(allow_nan=False))),
)
def test_numbers(
    conn: psycopg.Connection[Any],
    ints: list[int],
    bools: list[bool],
    floats: list[float | None],
) -> None:
    assert _read(conn, int_array(ints), "int[]") == ints
    assert _read(conn, bool_array(bools), "bool[]") == bools
    assert _read(conn, float_array(floats), "float8[]") == floats


def test_json_text_elements_become_jsonb(conn: psycopg.Connection[Any]) -> None:
    literal = text_array(['{"a": "x,\\"y\\"}"}', None, "null"])
    assert _read(conn, literal, "text[]::jsonb[]") == [{"a": 'x,"y"}'}, None, None]
