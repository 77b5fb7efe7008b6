"""The builtin stores (memory, SQLite file, SQLite in memory) pass the conformance kit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_tasker.suites import StoreSuite

from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.builtin.sqlite_store import SQLiteStore
from tasker_core.protocols import Store


class TestMemoryStore(StoreSuite):
    capabilities = {"atomic_batches", "concurrent_writers"}

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        store = MemoryStore(record_calls=False)
        yield store
        store.close()


class TestSQLiteFileStore(StoreSuite):
    capabilities = {"atomic_batches", "concurrent_writers", "persistence"}

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[Store]:
        store = SQLiteStore(f"sqlite:///{tmp_path / 'tasks.db'}")
        yield store
        store.close()

    def reopen(self, store: Store) -> Store:
        assert isinstance(store, SQLiteStore)
        store.close()
        return SQLiteStore(store.url)


class TestSQLiteMemoryStore(StoreSuite):
    """The private in-memory database: every thread shares one connection."""

    capabilities = {"atomic_batches", "concurrent_writers"}
    machine_examples = 0.2

    @pytest.fixture
    def store(self) -> Iterator[Store]:
        store = SQLiteStore("sqlite://")
        yield store
        store.close()
