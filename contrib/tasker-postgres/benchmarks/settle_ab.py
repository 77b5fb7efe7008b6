"""Round trip of a chain step's settle, two settle functions interleaved, without the worker.

Settles chains of no-op steps straight through ``WorkTable`` (no handler threads, no loop):
each settle completes one step and claims its child, as a worker's does. Chains alternate
between the two versions on one cluster, so both see the same machine; the script prints the
median round trip of each per round and the server's mean time per settle
(``pg_stat_statements``). Without ``--durable`` the cluster does not fsync, which takes the
disk's noise out and leaves what the settle itself costs.

    python contrib/tasker-postgres/benchmarks/settle_ab.py [--rounds 6] [--versions 4 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import defaultdict

import psycopg
from bench_postgres import make_engine
from tasker_core import TaskRequest

from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database
from tasker_postgres.work import Settlement, WorkTable


def chain(db: WorkTable, task_id: str, wt: WorkTable) -> list[float]:
    """Settle the chain's steps one by one (each claims the next); each round trip's time."""
    times: list[float] = []
    now = time.time()
    done = wt.activate(
        [task_id],
        now,
        stop_on_failure=False,
        graph_for=lambda t: [
            ([i - 1] if i else [], [i + 1] if i < 199 else []) for i in range(200)
        ],
        on_error=lambda t, e: print(f"{t}: {e}"),
    )
    assert done.states == {task_id: "in_progress"}
    claims = db.claim("ab", 1, now + 60, now)
    while claims:
        (c,) = claims
        out = Settlement(c.task_id, c.name, c.attempt, True, reason="handler returned")
        now = time.time()
        t0 = time.perf_counter()
        result = db.settle([out], now, stop_on_failure=False, owner="ab", claim=16, until=now + 60)
        times.append(time.perf_counter() - t0)
        claims = result.claims
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--versions", type=int, nargs=2, default=(4, 6))
    parser.add_argument("--durable", action="store_true")
    args = parser.parse_args()
    settings = {"shared_preload_libraries": "'pg_stat_statements'"}
    per: dict[int, list[float]] = defaultdict(list)
    with TempCluster(durable=args.durable, settings=settings) as cluster:
        url = fresh_database(cluster, "settle_ab")
        admin = psycopg.connect(conninfo(url), autocommit=True)
        admin.execute("CREATE EXTENSION pg_stat_statements")
        engine = make_engine(url)
        db = WorkTable(engine.store, direct=True)  # type: ignore[arg-type]
        wt = WorkTable(engine.store)  # type: ignore[arg-type]
        for r in range(args.rounds + 1):  # round 0: warm-up (plans, caches)
            if r == 1:
                admin.execute("SELECT pg_stat_statements_reset()")
            versions = args.versions if r % 2 else args.versions[::-1]
            medians = []
            for version in versions:
                db.settle_version = version
                task_id = engine.submit(TaskRequest("bench", "chain_200")).id
                med = statistics.median(chain(db, task_id, wt))
                medians.append(f"v{version} {med * 1e3:.3f} ms")
                if r:
                    per[version].append(med)
            print(f"round {r}{' (warm-up)' if not r else ''}: " + ", ".join(medians), flush=True)
        server = admin.execute(
            "SELECT substring(query from 'tasker_settle_v[0-9]'), mean_exec_time, calls "
            "FROM pg_stat_statements WHERE query LIKE '%%FROM tasker_settle_v%%' ORDER BY 1"
        ).fetchall()
        db.close()
        wt.close()
        engine.close()
        admin.close()
    for name, mean, calls in server:
        print(f"server time of a settle, {name}: {mean:.3f} ms (mean of {calls} calls)")
    for version, values in per.items():
        print(f"v{version}: median round trip {statistics.median(values) * 1e3:.3f} ms")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
