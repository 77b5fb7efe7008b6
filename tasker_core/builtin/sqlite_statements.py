"""The SQLite store's hot-path statements, built with Core and compiled once to driver SQL.

``apply`` runs a handful of statements per batch. Compiling each statement once (cached per shape
or size) and handing the driver plain tuples keeps bound parameters and the driver's
prepared-statement cache without SQLAlchemy's per-execution work. Lookups pad their key lists to a
few fixed sizes, and INSERTs take at most MAX_INSERT_ROWS rows, so the number of distinct SQL
texts (and prepared statements) stays small.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from attrs import frozen
from sqlalchemy import Integer, bindparam, func, literal_column, select
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
    """(rowid, name, state, attempts) of up to ``size`` steps of one task (``task``, ``n0``...).

    ``name IN (...)`` on the (task_id, name) unique index: one index probe per name, and padding
    with a repeated name adds no row.
    """
    names: list[BindParameter[str]] = [bindparam(f"n{i}") for i in range(size)]
    stmt = select(step_rowid, steps.c.name, steps.c.state, steps.c.attempts).where(
        steps.c.task_id == bindparam("task"), steps.c.name.in_(names)
    )
    return prepare(stmt)


@cache
def task_lookup(size: int) -> Prepared:
    """(id, state, started_at) of ``size`` tasks by id."""
    ids: list[BindParameter[str]] = [bindparam(f"i{i}") for i in range(size)]
    stmt = select(tasks.c.id, tasks.c.state, tasks.c.started_at).where(tasks.c.id.in_(ids))
    return prepare(stmt)


@frozen
class StepUpdate:
    """A guarded UPDATE of one shape of step fields, taking plain tuples.

    A row is ``columns``' values in order, then the new last_transition_id, then the guard: the
    step's rowid, and the state and attempts read in the same transaction.
    """

    sql: str
    columns: tuple[str, ...]


_STEP_GUARD = ("v_last_transition_id", "k_rowid", "k_state", "k_attempts")


@cache
def step_update(shape: tuple[str, ...]) -> StepUpdate:
    """The guarded UPDATE that sets the ``shape`` columns (and last_transition_id) of a step."""
    stmt = (
        steps.update()
        .where(
            step_rowid == bindparam("k_rowid"),
            steps.c.state == bindparam("k_state"),
            steps.c.attempts == bindparam("k_attempts"),
        )
        .values(
            {name: bindparam(f"v_{name}") for name in (*shape, "last_transition_id")},
        )
    )
    prepared = prepare(stmt)
    # SET follows the table's column order (last_transition_id is the last column), then WHERE.
    if prepared.order[-len(_STEP_GUARD) :] != _STEP_GUARD:
        raise AssertionError(f"unexpected parameter order {prepared.order}")
    columns = tuple(name[2:] for name in prepared.order[: -len(_STEP_GUARD)])
    return StepUpdate(prepared.sql, columns)


@cache
def task_update(shape: tuple[str, ...]) -> Prepared:
    """Set the ``shape`` columns (params ``v_<column>``) of task ``k_id``, guarded by its state."""
    stmt = (
        tasks.update()
        .where(tasks.c.id == bindparam("k_id"), tasks.c.state == bindparam("k_state"))
        .values({name: bindparam(f"v_{name}") for name in shape})
    )
    return prepare(stmt)


LAST_TRANSITION_ID = prepare(select(func.max(transitions.c.id)))
"""The highest transition id (NULL before the first): one seek to the end of the rowid tree."""

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
)

MAX_INSERT_ROWS = 64
"""Transitions per INSERT statement: 576 parameters, below SQLite's oldest limit (999)."""


@cache
def insert_transitions(rows: int) -> str:
    """One INSERT of ``rows`` transitions (parameters row by row in TRANSITION_COLUMNS order).

    One statement per tick instead of one execution per row: SQLite runs its insert loop in C.
    """
    if not 0 < rows <= MAX_INSERT_ROWS:
        raise ValueError(f"{rows} rows per INSERT: expected 1 to {MAX_INSERT_ROWS}")
    stmt = transitions.insert().values(
        [{name: bindparam(f"{name}_{i}") for name in TRANSITION_COLUMNS} for i in range(rows)]
    )
    prepared = prepare(stmt)
    expected = tuple(f"{name}_{i}" for i in range(rows) for name in TRANSITION_COLUMNS)
    if prepared.order != expected:
        raise AssertionError(f"unexpected parameter order {prepared.order}")
    return prepared.sql


STEP_COLUMNS = tuple(c.name for c in steps.columns if c.name != "last_transition_id")
INSERT_STEP = prepare(steps.insert(), STEP_COLUMNS)

TASK_COLUMNS = tuple(c.name for c in tasks.columns if c.name != "last_transition_id")
INSERT_TASK = prepare(tasks.insert(), TASK_COLUMNS)
