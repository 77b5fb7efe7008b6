"""Where a chain step's time goes: server statements (pg_stat_statements, nested) vs the client.

Runs chains of 200 no-op steps on one in-process worker against a durable throwaway cluster
with ``pg_stat_statements.track = all``, then prints, per chain step: the wall time, the time
spent inside ``WorkTable.settle``/``claim`` round trips (client + server), and the server's
execution time of every statement (nested statements of the PL/pgSQL functions included).

    python contrib/tasker-postgres/benchmarks/profile_chain.py [--chains 3] [--shape chain_200]

``--cprofile N`` also profiles the worker's loop thread (cProfile) and prints its N most
expensive functions by own time (the warm-up chain included).

``--compare ROUNDS`` instead compares the worker with its pool threads' ticks off and on (or,
with ``--versions A B``, two settle functions, e.g. 4 and 6: before and after the direct claim of
ready children) on the same cluster and worker: each round measures the floor, then one chain
with each (in alternating order), and the script prints every figure and the medians.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import statistics
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import attrs
import psycopg
from bench_postgres import floor, make_engine, run_task

from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database
from tasker_postgres.worker import Worker, WorkerOptions

SETTINGS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
    "pg_stat_statements.track_planning": "on",
    "track_functions": "'all'",
}

EXPLAIN = {
    "shared_preload_libraries": "'pg_stat_statements,auto_explain'",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_timing": "on",
}


def timed(calls: dict[str, list[float]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wall time per call in calls[name], this thread's CPU time in calls[name + " cpu"]."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            calls[name].append(time.perf_counter() - t0)
            calls[name + " cpu"].append(time.thread_time() - c0)

    return wrapper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chains", type=int, default=3)
    parser.add_argument("--shape", default="chain_200")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--explain", metavar="FILE", help="write auto_explain plans here")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    parser.add_argument("--compare", type=int, default=0, metavar="ROUNDS")
    parser.add_argument("--versions", type=int, nargs=2, metavar="V")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.shape, args.steps, args.versions)
        return
    settings = dict(SETTINGS)
    if args.explain:
        settings.update(EXPLAIN)
    with TempCluster(durable=True, settings=settings) as cluster:
        url = fresh_database(cluster, "prof")
        with psycopg.connect(conninfo(url), autocommit=True) as admin:
            admin.execute("CREATE EXTENSION pg_stat_statements")
            engine = make_engine(url)
            worker_engine = make_engine(url)
            worker = Worker(worker_engine, WorkerOptions.from_engine(worker_engine))
            calls: dict[str, list[float]] = defaultdict(list)
            for name in ("settle", "claim", "activate", "due_tasks", "next_wake", "tasks"):
                setattr(worker.db, name, timed(calls, name, getattr(worker.db, name)))
            worker._tick = timed(calls, "loop tick", worker._tick)  # type: ignore[method-assign]
            profiler = cProfile.Profile()

            def run() -> None:
                profiler.enable()
                try:
                    worker.run()
                finally:
                    profiler.disable()

            thread = threading.Thread(target=run if args.cprofile else worker.run, daemon=True)
            thread.start()
            time.sleep(1.0)
            run_task(engine, args.shape)  # warm-up: plans cached, pages in memory
            calls.clear()
            admin.execute("SELECT pg_stat_statements_reset()")
            admin.execute("SELECT pg_stat_reset()")
            wall = sum(run_task(engine, args.shape) for _ in range(args.chains))
            stats = admin.execute(
                "SELECT calls, total_exec_time, total_plan_time, plans, "
                "left(regexp_replace(query, '\\s+', ' ', 'g'), 80) "
                "FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 25"
            ).fetchall()
            funcs = admin.execute(
                "SELECT funcname, calls, total_time, self_time FROM pg_stat_user_functions "
                "ORDER BY total_time DESC"
            ).fetchall()
            worker.stop()
            thread.join(10)
            worker_engine.close()
            engine.close()
        if args.explain:
            with open(args.explain, "w") as out:
                out.write(cluster.server_log())
    n = args.chains * args.steps
    print(f"{args.chains} x {args.shape}: {wall / n * 1e3:.3f} ms per step (stored times)")
    print("client (wall; cpu = the calling thread's CPU time):")
    for name, values in sorted(calls.items()):
        print(
            f"  {name:14s} calls {len(values):5d}  {sum(values) / n * 1e3:7.3f} ms/step"
            f"  ({sum(values) / len(values) * 1e3:.3f} ms/call)"
        )
    print("server statements (ms per step: execution, planning; calls, plans, query):")
    for count, total, plan, plans, query in stats:
        print(f"  {total / n:7.3f} {plan / n:7.3f}  {count:6d} {plans:6d}  {query}")
    print("functions (ms per step: total, self):")
    for name, count, total, self_time in funcs:
        print(f"  {name:24s} {count:6d}  {total / n:7.3f}  {self_time / n:7.3f}")
    if args.cprofile:
        print("the worker loop thread's own time per function (cProfile; inflated by profiling):")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.cprofile)


def compare(rounds: int, shape: str, steps: int, versions: list[int] | None) -> None:
    """Per-step time of a chain with two variants of the worker (pool ticks off/on, or two
    settle functions), interleaved, with the floor measured before each round."""
    variants: dict[str, Callable[[Worker], None]] = {}
    if versions:
        for v in versions:
            variants[f"v{v}"] = functools.partial(_settle_version, v)
    else:
        variants["loop ticks"] = functools.partial(_pool_ticks, False)
        variants["pool ticks"] = functools.partial(_pool_ticks, True)
    a, b = variants
    settings = {"shared_preload_libraries": "'pg_stat_statements'"}
    with TempCluster(durable=True, settings=settings) as cluster:
        url = fresh_database(cluster, "ab")
        admin = psycopg.connect(conninfo(url), autocommit=True)
        admin.execute("CREATE EXTENSION pg_stat_statements")
        engine = make_engine(url)
        worker_engine = make_engine(url)
        worker = Worker(worker_engine, WorkerOptions.from_engine(worker_engine))
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        time.sleep(1.0)
        for use in variants.values():  # warm-up: plans cached, pages in memory
            use(worker)
            run_task(engine, shape)
        admin.execute("SELECT pg_stat_statements_reset()")
        per: dict[str, list[float]] = defaultdict(list)
        calls: dict[str, list[float]] = defaultdict(list)
        settle = worker.db.settle
        for r in range(rounds):
            per["floor"].append(floor(url, 500))
            for name in (a, b) if r % 2 == 0 else (b, a):
                variants[name](worker)
                calls.clear()
                worker.db.settle = timed(calls, "settle", settle)  # type: ignore[method-assign]
                per[name].append(run_task(engine, shape) / steps)
                # The rest of a step: what the worker adds around its settle round trip.
                per[name + " outside settle"].append(per[name][-1] - sum(calls["settle"]) / steps)
            print(
                f"round {r + 1}: floor {per['floor'][-1] * 1e3:.3f} ms, "
                f"{a} {per[a][-1] * 1e3:.3f} ms/step "
                f"({per[a + ' outside settle'][-1] * 1e3:.3f} outside the settle), "
                f"{b} {per[b][-1] * 1e3:.3f} ms/step "
                f"({per[b + ' outside settle'][-1] * 1e3:.3f} outside the settle)",
                flush=True,
            )
        server = admin.execute(
            "SELECT substring(query from 'tasker_settle_v[0-9]'), mean_exec_time, calls "
            "FROM pg_stat_statements WHERE query LIKE '%%FROM tasker_settle_v%%' ORDER BY 1"
        ).fetchall()
        admin.close()
        worker.stop()
        thread.join(10)
        worker_engine.close()
        engine.close()
    for version, mean, calls in server:
        print(f"server time of a settle, {version}: {mean:.3f} ms (mean of {calls} calls)")
    med = {k: statistics.median(v) for k, v in per.items()}
    print(
        f"median of {rounds}: floor {med['floor'] * 1e3:.3f} ms; "
        f"{a} {med[a] * 1e3:.3f} ms/step ({med[a] / med['floor']:.2f}x); "
        f"{b} {med[b] * 1e3:.3f} ms/step ({med[b] / med['floor']:.2f}x); outside the settle "
        f"round trip: {a} {med[a + ' outside settle'] * 1e3:.3f} ms, "
        f"{b} {med[b + ' outside settle'] * 1e3:.3f} ms"
    )


def _settle_version(version: int, worker: Worker) -> None:
    worker.db.settle_version = version


def _pool_ticks(on: bool, worker: Worker) -> None:
    """Switch between chains (the worker is idle then: it reads the option per outcome)."""
    worker.options = attrs.evolve(worker.options, pool_ticks=on)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
