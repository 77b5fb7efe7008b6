"""The SQLite store's hot-path statements, built with Core and compiled once to driver SQL.

``apply`` runs a handful of statements per batch with hundreds of parameter rows each. Running
them through ``Connection.execute`` costs several microseconds of parameter processing per row;
compiling each statement once (cached per shape) and handing the driver plain tuples through
``exec_driver_sql`` keeps bound parameters and the driver's prepared-statement cache, without the
per-row overhead. Lookups pad their key lists to a few fixed sizes so the number of distinct SQL
texts (and prepared statements) stays small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from operator import itemgetter
from typing import Any

from attrs import frozen
from sqlalchemy import (
    Integer,
    String,
    and_,
    bindparam,
    column,
    literal_column,
    select,
    table,
    values,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

from tasker_core.builtin.sqlite_schema import steps, tasks, transitions

_DIALECT = sqlite.dialect()

LOOKUP_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
"""Key-list sizes a lookup is padded to; the largest is the chunk size of one lookup."""

MAX_LOOKUP = LOOKUP_SIZES[-1]

Params = tuple[Any, ...]


@frozen
class Prepared:
    """Driver SQL (qmark style) and the parameter names in positional order."""

    sql: str
    order: tuple[str, ...]

    def row(self, params: Mapping[str, Any]) -> Params:
        return tuple(params[name] for name in self.order)

    def rows(self, params: Iterable[Mapping[str, Any]]) -> list[Params]:
        if len(self.order) == 1:
            only = self.order[0]
            return [(p[only],) for p in params]
        getter = itemgetter(*self.order)
        return [getter(p) for p in params]


def prepare(stmt: ClauseElement, keys: Sequence[str] | None = None) -> Prepared:
    """Compile ``stmt`` for the pysqlite dialect; ``keys`` are an INSERT's columns."""
    compiled = stmt.compile(dialect=_DIALECT, column_keys=list(keys) if keys else None)
    assert isinstance(compiled, SQLCompiler)  # qmark dialect: positional parameters
    return Prepared(str(compiled), tuple(compiled.positiontup or ()))


def lookup_size(n: int) -> int:
    """The padded size for ``n`` keys (``n`` <= MAX_LOOKUP)."""
    for size in LOOKUP_SIZES:
        if n <= size:
            return size
    raise ValueError(f"lookup of {n} keys exceeds the chunk size {MAX_LOOKUP}")


def pad(keys: Sequence[Any], size: int) -> list[Any]:
    """``keys`` extended to ``size`` by repeating the last one (duplicates match the same row)."""
    return list(keys) + [keys[-1]] * (size - len(keys))


step_rowid = literal_column("steps.rowid", Integer)
"""SQLite's implicit row id of a steps row: the cheapest way back to a row read in the batch."""


@cache
def step_lookup(size: int) -> Prepared:
    """(rowid, task_id, name, state, attempts, last_transition_id) of ``size`` steps by key.

    A join against a VALUES CTE of (task_id, name) pairs: SQLite probes the (task_id, name)
    index once per key, where a row-value IN would scan the table.
    """
    keys = (
        values(column("task_id", String), column("name", String), name="k")
        .data([(bindparam(f"t{i}"), bindparam(f"n{i}")) for i in range(size)])
        .cte("k")
    )
    stmt = select(
        step_rowid,
        steps.c.task_id,
        steps.c.name,
        steps.c.state,
        steps.c.attempts,
        steps.c.last_transition_id,
    ).select_from(
        keys.join(steps, and_(steps.c.task_id == keys.c.task_id, steps.c.name == keys.c.name))
    )
    return prepare(stmt)


@cache
def task_lookup(size: int) -> Prepared:
    """(id, state, started_at, last_transition_id) of ``size`` tasks by id."""
    ids: list[BindParameter[str]] = [bindparam(f"i{i}") for i in range(size)]
    stmt = select(tasks.c.id, tasks.c.state, tasks.c.started_at, tasks.c.last_transition_id).where(
        tasks.c.id.in_(ids)
    )
    return prepare(stmt)


@cache
def step_update(shape: tuple[str, ...]) -> Prepared:
    """Set the ``shape`` columns (params ``v_<column>``) of the step at ``k_rowid``.

    Guarded by the state and attempts read in the same transaction (``k_state``, ``k_attempts``).
    """
    stmt = (
        steps.update()
        .where(
            step_rowid == bindparam("k_rowid"),
            steps.c.state == bindparam("k_state"),
            steps.c.attempts == bindparam("k_attempts"),
        )
        .values({name: bindparam(f"v_{name}") for name in shape})
    )
    return prepare(stmt)


@cache
def task_update(shape: tuple[str, ...]) -> Prepared:
    """Set the ``shape`` columns (params ``v_<column>``) of task ``k_id``, guarded by its state."""
    stmt = (
        tasks.update()
        .where(tasks.c.id == bindparam("k_id"), tasks.c.state == bindparam("k_state"))
        .values({name: bindparam(f"v_{name}") for name in shape})
    )
    return prepare(stmt)


_sqlite_sequence = table("sqlite_sequence", column("name", String), column("seq", Integer))

LAST_TRANSITION_ID = prepare(
    select(_sqlite_sequence.c.seq).where(_sqlite_sequence.c.name == bindparam("table"))
)
"""The highest transition id ever assigned (no row before the first transition)."""

FLIP = prepare(
    transitions.update()
    .where(transitions.c.id == bindparam("k_id"))
    .values(most_recent=literal_column("0"))
)
"""Mark a transition as no longer its record's most recent."""

TRANSITION_COLUMNS = (
    "id",
    "task_id",
    "step",
    "from_state",
    "to_state",
    "event",
    "reason",
    "metadata",
    "created_at",
    "most_recent",
)
INSERT_TRANSITION = prepare(transitions.insert(), TRANSITION_COLUMNS)

STEP_COLUMNS = tuple(c.name for c in steps.columns if c.name != "last_transition_id")
INSERT_STEP = prepare(steps.insert(), STEP_COLUMNS)

TASK_COLUMNS = tuple(c.name for c in tasks.columns if c.name != "last_transition_id")
INSERT_TASK = prepare(tasks.insert(), TASK_COLUMNS)
