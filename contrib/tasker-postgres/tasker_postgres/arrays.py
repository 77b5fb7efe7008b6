"""Postgres array literals (``{...}``), built directly for the settle's ten array parameters.

psycopg adapts a Python list by inspecting its elements and building a dumper per call (about
11 µs a list here, over 0.1 ms per settle); a literal is one string, which the statement casts
(``%s::text[]``, ``%s::int[]``, ...). Text elements are always quoted, so nothing in them
(commas, braces, spaces, the word NULL) can change the array's shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast

__all__ = ["bool_array", "float_array", "int_array", "text_array"]


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def text_array(values: Iterable[str | None]) -> str:
    """``{"a","b",NULL}`` for ``text[]`` (and ``text[]::jsonb[]``).

    Values with nothing to escape (no NULL, backslash or double quote: the usual case of ids,
    names and reasons) are joined at once instead of quoted one by one, which is most of the
    cost of a settle's parameters.
    """
    items = list(values)
    if items and None not in items:
        plain = cast("list[str]", items)
        whole = "".join(plain)
        if '"' not in whole and "\\" not in whole:
            return '{"' + '","'.join(plain) + '"}'
    return "{" + ",".join("NULL" if v is None else _quote(v) for v in items) + "}"


def int_array(values: Iterable[int]) -> str:
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def bool_array(values: Iterable[bool]) -> str:
    return "{" + ",".join("t" if v else "f" for v in values) + "}"


def float_array(values: Iterable[float | None]) -> str:
    """``repr`` is the shortest text that reads back as the same double, which Postgres's
    float8 input honours exactly."""
    return "{" + ",".join("NULL" if v is None else repr(float(v)) for v in values) + "}"
