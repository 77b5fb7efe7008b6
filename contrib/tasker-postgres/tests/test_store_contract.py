"""The kernel's Store contract tests (tests/unit/test_stores.py), run against Postgres.

The kernel's file is the written-down contract both builtin stores pass; loading its test
functions here with a Postgres ``store`` fixture holds this store to exactly the same text,
including the rule-based machine that compares a store with an independent model.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tasker_core.protocols import Store

from tasker_postgres.store import PostgresStore
from tasker_postgres.testing import TempCluster, fresh_database

KERNEL_TESTS = Path(__file__).resolve().parents[3] / "tests" / "unit" / "test_stores.py"
SKIP = {
    "test_factories_accept_no_config",
    "test_memory_factory_reads_its_options",
    "test_memory_hook_registers_the_memory_scheme",
    "test_memory_store_records_calls_and_resets",
}


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("_kernel_store_contract", KERNEL_TESTS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


if not KERNEL_TESTS.is_file():  # pragma: no cover - installed without the kernel's tests
    pytest.skip(f"kernel contract tests not found at {KERNEL_TESTS}", allow_module_level=True)
_kernel = _load()
for _name in dir(_kernel):
    if _name.startswith("test_") and _name not in SKIP:
        globals()[_name] = getattr(_kernel, _name)

_names = itertools.count()


@pytest.fixture
def make_store(pg_cluster: TempCluster) -> Iterator[Callable[[], Store]]:
    made: list[Store] = []

    def factory() -> Store:
        store = PostgresStore(fresh_database(pg_cluster, f"c{next(_names)}"), pool_size=4)
        made.append(store)
        return store

    yield factory
    for store in made:
        store.close()


@pytest.fixture
def store(make_store: Callable[[], Store]) -> Store:
    return make_store()


@pytest.fixture(scope="module")
def machine_url(pg_cluster: TempCluster) -> str:
    return fresh_database(pg_cluster, f"m{next(_names)}")


def test_store_against_model(machine_url: str) -> None:
    """The kernel's rule-based machine, on one database truncated before every example."""

    def make() -> Store:
        store = PostgresStore(machine_url, pool_size=2)
        with store.pool.connect() as conn:
            raw = conn.connection.driver_connection
            assert raw is not None
            raw.execute("TRUNCATE tasker_tasks, tasker_steps, tasker_transitions CASCADE")
            raw.commit()
        return store

    _kernel._machine_test(make)().runTest()
