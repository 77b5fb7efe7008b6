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
from sqlalchemy import String, and_, bindparam, column, literal_column, select, values
from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

from tasker_core.builtin.sqlite_schema import steps, tasks, transitions

_DIALECT = sqlite.dialect()

LOOKUP_SIZES = (1, 4, 16, 64, 128, 256, 512)
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


@cache
def step_lookup(size: int) -> Prepared:
    """Current (task_id, name, state, attempts) of ``size`` steps given as (task_id, name) pairs.

    A join against a VALUES CTE: SQLite probes the (task_id, name) index once per key, where a
    row-value IN would scan the table.
    """
    keys = (
        values(column("task_id", String), column("name", String), name="k")
        .data([(bindparam(f"t{i}"), bindparam(f"n{i}")) for i in range(size)])
        .cte("k")
    )
    stmt = select(steps.c.task_id, steps.c.name, steps.c.state, steps.c.attempts).select_from(
        keys.join(steps, and_(steps.c.task_id == keys.c.task_id, steps.c.name == keys.c.name))
    )
    return prepare(stmt)


@cache
def task_lookup(size: int) -> Prepared:
    """Current (id, state, started_at) of ``size`` tasks by id."""
    ids = [bindparam(f"i{i}") for i in range(size)]
    stmt = select(tasks.c.id, tasks.c.state, tasks.c.started_at).where(tasks.c.id.in_(ids))
    return prepare(stmt)


@cache
def step_update(shape: tuple[str, ...]) -> Prepared:
    """Set the ``shape`` fields (params ``v_<field>``) of one step, guarded by its prior state."""
    stmt = (
        steps.update()
        .where(
            steps.c.task_id == bindparam("k_task"),
            steps.c.name == bindparam("k_name"),
            steps.c.state == bindparam("k_state"),
            steps.c.attempts == bindparam("k_attempts"),
        )
        .values({name: bindparam(f"v_{name}") for name in shape})
    )
    return prepare(stmt)


@cache
def task_update(shape: tuple[str, ...]) -> Prepared:
    """Set the ``shape`` fields (params ``v_<field>``) of one task, guarded by its prior state."""
    stmt = (
        tasks.update()
        .where(tasks.c.id == bindparam("k_id"), tasks.c.state == bindparam("k_state"))
        .values({name: bindparam(f"v_{name}") for name in shape})
    )
    return prepare(stmt)


# The literal 1 (not a parameter) lets SQLite use the partial index ix_transitions_recent.
_CURRENT = transitions.c.most_recent == literal_column("1")

FLIP_STEP = prepare(
    transitions.update()
    .where(
        transitions.c.task_id == bindparam("k_task"),
        transitions.c.step == bindparam("k_step"),
        _CURRENT,
    )
    .values(most_recent=literal_column("0"))
)
"""Mark a step's current transition as no longer the most recent."""

FLIP_TASK = prepare(
    transitions.update()
    .where(transitions.c.task_id == bindparam("k_task"), transitions.c.step.is_(None), _CURRENT)
    .values(most_recent=literal_column("0"))
)
"""Mark a task's own current transition as no longer the most recent."""

TRANSITION_COLUMNS = (
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

STEP_COLUMNS = tuple(c.name for c in steps.columns)
INSERT_STEP = prepare(steps.insert(), STEP_COLUMNS)

TASK_COLUMNS = tuple(c.name for c in tasks.columns)
INSERT_TASK = prepare(tasks.insert(), TASK_COLUMNS)
