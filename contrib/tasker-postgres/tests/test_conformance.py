"""The conformance kit's Store and Queue suites (pytest-tasker), run against Postgres."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from pytest_tasker.suites import QueueSuite, StoreSuite
from tasker_core import Store

from tasker_postgres.queue import PostgresQueue
from tasker_postgres.store import PostgresStore
from tasker_postgres.testing import TempCluster, fresh_database

_names = itertools.count()


class TestPostgresStore(StoreSuite):
    capabilities = {"atomic_batches", "concurrent_writers", "persistence"}

    @pytest.fixture
    def store(self, pg_cluster: TempCluster) -> Iterator[PostgresStore]:
        store = PostgresStore(fresh_database(pg_cluster, f"s{next(_names)}"), pool_size=8)
        yield store
        store.close()

    def reopen(self, store: Store) -> Store:
        assert isinstance(store, PostgresStore)
        store.close()
        return PostgresStore(store.url, pool_size=4, migrate=False)


class TestPostgresQueue(QueueSuite):
    capabilities = {"concurrent_claimers", "ordering", "wakeup"}

    @pytest.fixture
    def queue(self, pg_cluster: TempCluster) -> Iterator[PostgresQueue]:
        queue = PostgresQueue(fresh_database(pg_cluster, f"q{next(_names)}"), pool_size=8)
        yield queue
        queue.close()
