"""The tasker plugin (entry point ``postgres``): store and queue for ``postgresql://`` URLs, and
the ``tasker worker`` and ``tasker db`` commands.

Both ``postgresql`` and ``postgresql+psycopg`` are registered (the psycopg 3 driver serves both).
Import-light: the heavy modules load when a factory or command runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tasker_core import Config
from tasker_core.plugin import RegisterQueue, RegisterStore, hookimpl

if TYPE_CHECKING:
    from tasker_postgres.queue import PostgresQueue
    from tasker_postgres.store import PostgresStore

__all__ = [
    "make_queue",
    "make_store",
    "tasker_add_cli_commands",
    "tasker_register_queues",
    "tasker_register_stores",
]

SCHEMES = ("postgresql", "postgresql+psycopg")


def make_store(url: str, config: Config) -> PostgresStore:
    from tasker_postgres.store import make_postgres_store

    return make_postgres_store(url, config)


def make_queue(url: str, config: Config) -> PostgresQueue:
    from tasker_postgres.queue import make_postgres_queue

    return make_postgres_queue(url, config)


@hookimpl
def tasker_register_stores(register: RegisterStore) -> None:
    for scheme in SCHEMES:
        register(scheme, make_store)


@hookimpl
def tasker_register_queues(register: RegisterQueue) -> None:
    for scheme in SCHEMES:
        register(scheme, make_queue)


@hookimpl
def tasker_add_cli_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``tasker worker`` and ``tasker db upgrade|status``."""
    from tasker_postgres.cli import add_commands

    add_commands(subparsers)
