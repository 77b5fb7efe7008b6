"""Restart: the Postgres server goes down mid-run; workers reconnect and the run completes.

Runs on its own cluster, so restarting it cannot disturb other tests.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest
from pytest_tasker.history import assert_legal_history
from tasker_core import StepContext, TaskRequest

from tasker_postgres.harness import Harness
from tasker_postgres.testing import (
    ClusterUnavailable,
    TempCluster,
    fresh_database,
    require_postgres,
)


@pytest.fixture
def own_cluster() -> Iterator[TempCluster]:
    try:
        cluster = TempCluster().start()
    except ClusterUnavailable as exc:
        if require_postgres():
            pytest.fail(f"TASKER_REQUIRE_POSTGRES=1 but no PostgreSQL cluster: {exc}")
        pytest.skip(f"no PostgreSQL cluster for this test: {exc}")
    yield cluster
    cluster.stop()


def slow(ctx: StepContext) -> str:
    time.sleep(0.05)
    return ctx.step


@pytest.mark.slow
def test_run_survives_a_database_restart(own_cluster: TempCluster) -> None:
    url = fresh_database(own_cluster, "restart")
    harness = Harness(url)
    harness.handlers["slow"] = slow
    harness.config["identity"] = {"strategy": "none"}
    steps = [
        {"name": f"s{i}", "handler": "slow", "depends_on": [f"s{i - 1}"] if i else []}
        for i in range(10)
    ]
    harness.templates.append(
        {"namespace": "r", "name": "chain", "version": "1.0.0", "steps": steps}
    )
    engine = harness.engine()
    ids = [engine.submit(TaskRequest("r", "chain", context={"i": i})).id for i in range(30)]
    harness.start_worker()
    harness.start_worker()
    try:
        time.sleep(0.5)
        states = Counter(engine.get_task(i).state for i in ids)
        assert states["complete"] < len(ids) / 2, f"the run should be in mid-flight: {states}"
        own_cluster.restart(down_for=1.0)
        deadline = time.monotonic() + 60
        while True:
            try:
                tasks = harness.wait_done(engine, ids, timeout=60)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # the checking engine's first reads after the restart fail
        assert {t.state for t in tasks} == {"complete"}
        for task in tasks:
            history = engine.transitions(task.id)
            completes = Counter(t.step for t in history if t.to_state == "complete" and t.step)
            assert set(completes.values()) == {1}
            finals: dict[str | None, str] = {None: task.state}
            finals.update({s.name: s.state for s in engine.get_steps(task.id)})
            assert_legal_history(history, finals)
    finally:
        harness.close()
