"""Fixtures: one throwaway Postgres cluster per test session, a fresh database per test.

Without server binaries the Postgres tests skip with the reason; with TASKER_REQUIRE_POSTGRES=1
(CI) they fail instead, so a missing server cannot pass silently.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import psycopg
import pytest

from tasker_postgres.db import conninfo
from tasker_postgres.harness import Harness
from tasker_postgres.schema import upgrade
from tasker_postgres.testing import (
    ClusterUnavailable,
    TempCluster,
    fresh_database,
    require_postgres,
)

_names = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempCluster]:
    try:
        cluster = TempCluster().start()
    except ClusterUnavailable as exc:
        if require_postgres():
            pytest.fail(f"TASKER_REQUIRE_POSTGRES=1 but no PostgreSQL cluster: {exc}")
        pytest.skip(f"no PostgreSQL cluster for these tests: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: TempCluster) -> str:
    """URL of a new database with the schema applied."""
    return fresh_database(pg_cluster, f"t{next(_names)}")


@pytest.fixture
def pg_url_at() -> Callable[[str, int], str]:
    """Empty a test database and migrate it only up to ``version``: the database an older
    release left behind, for the upgrade tests."""

    def at(url: str, version: int) -> str:
        with psycopg.connect(conninfo(url)) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            conn.commit()
            upgrade(conn, "test", target=version)
        return url

    return at


# -- in-process workers -------------------------------------------------------------------------


@pytest.fixture
def cluster(pg_url: str) -> Iterator[Harness]:
    harness = Harness(pg_url)
    yield harness
    harness.close()
