"""Postgres benchmarks: worker throughput, chain latency, cross-worker wake-up, scaling.

Every figure is judged against the *floor* measured in the same run on the same throwaway,
durable cluster (fsync and synchronous commit on): one connection recording each step with an
INSERT and an UPDATE, committed per step. Workers are real processes (``--run-worker`` mode of
this script), already warm and idle when a task is submitted; a task's time is its
``completed_at - created_at`` as stored.

    python contrib/tasker-postgres/benchmarks/bench_postgres.py          # --quick: smaller

``--settle-version 4`` runs the workers with an older settle function (an A/B of the whole
benchmark against the current one, 6, on a database at the latest schema).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from tasker_core import Config, Engine, StepContext, TaskRequest
from tasker_core.registry import Registry
from tasker_core.templates import template_from_mapping

from tasker_postgres.db import conninfo
from tasker_postgres.store import PostgresStore
from tasker_postgres.testing import TempCluster, fresh_database


def noop(ctx: StepContext) -> None:
    return None


def pause(ctx: StepContext) -> dict[str, float]:
    """Sleeps a little; its result is the time the handler started (the latency's end)."""
    started = time.time()
    time.sleep(0.005)
    return {"started": started}


def templates() -> list[dict[str, Any]]:
    def wf(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
        return {"namespace": "bench", "name": name, "version": "1.0.0", "steps": steps}

    out = [
        wf(f"fanout_{n}", [{"name": f"s{i}", "handler": "noop"} for i in range(n)])
        for n in (100, 1000, 10_000)
    ]
    out.append(
        wf(
            "chain_200",
            [
                {"name": f"s{i}", "handler": "noop", "depends_on": [f"s{i - 1}"] if i else []}
                for i in range(200)
            ],
        )
    )
    stages: list[dict[str, Any]] = []
    for k in range(100):
        deps = [f"b{k - 1}", f"c{k - 1}"] if k else []
        stages += [
            {"name": f"a{k}", "handler": "noop", "depends_on": deps},
            {"name": f"b{k}", "handler": "pause", "depends_on": [f"a{k}"]},
            {"name": f"c{k}", "handler": "pause", "depends_on": [f"a{k}"]},
        ]
    out.append(wf("stages_100", stages))
    return out


def make_engine(url: str, concurrency: int = 16) -> Engine:
    config = Config.from_mapping(
        {
            "store": {"url": url, "pool_size": 4},
            "events": {"sinks": []},
            "identity": {"strategy": "none"},
            "execution": {"max_concurrent_steps": concurrency, "batch_size": 100,
                          "poll_interval": "1s"},
        }
    )  # fmt: skip
    engine = Engine(config, store=PostgresStore(url, pool_size=4, migrate=False),
                    registry=Registry())  # fmt: skip
    engine.register_handler("noop", noop)
    engine.register_handler("pause", pause)
    for data in templates():
        engine.register_template(template_from_mapping(data))
    return engine


def run_worker(
    url: str, concurrency: int, claim_on_settle: bool, settle_version: int, pool_ticks: bool
) -> None:
    from tasker_postgres.worker import Worker, WorkerOptions

    engine = make_engine(url, concurrency)
    options = WorkerOptions.from_engine(
        engine, claim_on_settle=claim_on_settle, pool_ticks=pool_ticks
    )
    profiles = _profile_threads() if os.environ.get(PROFILE_ENV) else []
    worker = Worker(engine, options)
    worker.db.settle_version = settle_version
    signal.signal(signal.SIGTERM, lambda *_: worker.stop())
    worker.run()
    engine.close()
    if profiles:
        stats = pstats.Stats(*profiles)
        stats.dump_stats(os.path.join(os.environ[PROFILE_ENV], f"{os.getpid()}.prof"))


PROFILE_ENV = "TASKER_BENCH_CPROFILE"
"""A directory: each worker process profiles all its threads (cProfile, one profiler per thread,
wall clock: blocking calls such as ``select`` keep their waits as own time) and writes
``<pid>.prof`` there when it stops."""


def _profile_threads() -> list[cProfile.Profile]:
    """Profile this thread and every thread started from now on, each with its own profiler."""
    profiles: list[cProfile.Profile] = []

    def start(*_: object) -> None:  # the first profile event of a new thread
        sys.setprofile(None)
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()

    threading.setprofile(start)
    start()
    return profiles


@contextmanager
def workers(
    url: str, count: int, concurrency: int = 16, settle: int = 6, pool_ticks: bool = True
) -> Iterator[None]:
    command = [sys.executable, __file__, "--run-worker", url, str(concurrency)]
    command += ["--settle-version", str(settle)]
    if not pool_ticks:
        command.append("--no-pool-ticks")
    procs = [subprocess.Popen(command) for _ in range(count)]
    time.sleep(2.0)  # imports, engine, LISTEN: warm and idle
    try:
        yield
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def run_task(engine: Engine, name: str, timeout: float = 600.0) -> float:
    """Submit one task and wait for it; its stored completed_at - created_at."""
    task = engine.submit(TaskRequest("bench", name))
    deadline = time.monotonic() + timeout
    while True:
        got = engine.get_task(task.id)
        if got.state in ("complete", "error"):
            assert got.state == "complete", f"{name}: {got.state}"
            assert got.completed_at is not None
            return got.completed_at - got.created_at
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} not done after {timeout}s")
        time.sleep(0.002)


def floor(url: str, n: int) -> float:
    """Seconds per step: INSERT + UPDATE, committed per step, one connection."""
    with psycopg.connect(conninfo(url)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_floor (id integer PRIMARY KEY, state text, "
            "results jsonb, updated_at double precision)"
        )
        conn.execute("TRUNCATE bench_floor")
        conn.commit()
        t0 = time.perf_counter()
        for i in range(n):
            conn.execute(
                "INSERT INTO bench_floor VALUES (%s, 'pending', NULL, %s)", (i, time.time())
            )
            conn.execute(
                "UPDATE bench_floor SET state = 'complete', results = 'null', updated_at = %s "
                "WHERE id = %s",
                (time.time(), i),
            )
            conn.commit()
        return (time.perf_counter() - t0) / n


def cross_worker_latencies(url: str, task_id: str) -> list[float]:
    """For each dependent (b_k, c_k) run by another worker than its parent a_k: from the commit
    of the transaction that recorded a_k complete (the moment b_k and c_k became visible,
    enqueued, to every worker) to the start of the dependent's handler (its result). The commit
    time comes from track_commit_timestamp: the server's clock, the same machine's."""
    with psycopg.connect(conninfo(url)) as conn:
        found = conn.execute(
            "SELECT t.step, t.to_state, t.metadata->>'owner', "
            "extract(epoch FROM pg_xact_commit_timestamp(t.xmin))::float8 "
            "FROM tasker_transitions t WHERE t.task_id = %s AND t.step IS NOT NULL "
            "AND t.to_state IN ('in_progress', 'complete') ORDER BY t.id",
            (task_id,),
        ).fetchall()
        started: dict[str, float] = dict(
            conn.execute(
                "SELECT name, (results->>'started')::float8 FROM tasker_steps "
                "WHERE task_id = %s AND results ? 'started'",
                (task_id,),
            ).fetchall()
        )
    owner: dict[str, str] = {}
    committed: dict[str, float] = {}
    for step, to_state, who, at in found:
        if to_state == "in_progress":
            owner[step] = who or ""
        else:
            committed[step] = at  # a complete transition is never updated again: its xmin holds
    out: list[float] = []
    for k in range(100):
        parent = f"a{k}"
        for child in (f"b{k}", f"c{k}"):
            if owner.get(child) != owner.get(parent):
                out.append(started[child] - committed[parent])
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--run-worker", nargs=2, metavar=("URL", "CONCURRENCY"))
    parser.add_argument("--no-claim-on-settle", action="store_true")
    parser.add_argument("--settle-version", type=int, choices=(3, 4, 6), default=6)
    parser.add_argument(
        "--no-pool-ticks", action="store_true", help="workers tick on their loop thread only"
    )
    args = parser.parse_args()
    if args.run_worker:
        url, concurrency = args.run_worker
        run_worker(
            url,
            int(concurrency),
            not args.no_claim_on_settle,
            args.settle_version,
            not args.no_pool_ticks,
        )
        return
    repeats = 1 if args.quick else 3
    with TempCluster(durable=True, settings={"track_commit_timestamp": "on"}) as cluster:
        url = fresh_database(cluster, "bench")
        engine = make_engine(url)
        rows: list[tuple[str, str, str, str]] = []
        floors: list[float] = []

        def near_floor() -> float:
            """The floor right now (best of two): each figure is judged against its own."""
            value = min(floor(url, 500) for _ in range(2))
            floors.append(value)
            return value

        settle, ticks = args.settle_version, not args.no_pool_ticks
        with workers(url, 1, settle=settle, pool_ticks=ticks):
            run_task(engine, "fanout_100")  # warm-up
            f_fan1 = near_floor()
            fan1 = min(run_task(engine, "fanout_1000") for _ in range(repeats))
            f_chain = near_floor()
            chain = min(run_task(engine, "chain_200") for _ in range(repeats))
            small = min(run_task(engine, "fanout_100") for _ in range(repeats))
            big = run_task(engine, "fanout_10000")
        with workers(url, 4, settle=settle, pool_ticks=ticks):
            # Warm-up: the worker that activates a task builds its workflow's graph the first
            # time (~100 ms for 1,000 steps with four workers busy), which the 1-worker figure
            # (best of three on one worker) leaves out; several tasks first, so that each of
            # the four has most likely built it.
            for _ in range(6):
                run_task(engine, "fanout_1000")
            f_fan4 = near_floor()
            fan4 = min(run_task(engine, "fanout_1000") for _ in range(repeats))
        with workers(url, 2, concurrency=1, settle=settle, pool_ticks=ticks):
            lat: list[float] = []
            for _ in range(repeats):
                task = engine.submit(TaskRequest("bench", "stages_100"))
                run_wait(engine, task.id)
                lat += cross_worker_latencies(url, task.id)
        rate1, rate4 = 1000 / fan1, 1000 / fan4
        rows.append(
            (
                "fan-out 1,000 no-op, 1 worker",
                f"{rate1:,.0f} steps/s",
                f"{rate1 * f_fan1:.2f}x floor ({1 / f_fan1:,.0f}/s)",
                ">= 1x",
            )
        )
        rows.append(
            (
                "fan-out 1,000 no-op, 4 workers",
                f"{rate4:,.0f} steps/s",
                f"{rate4 * f_fan4:.2f}x floor ({1 / f_fan4:,.0f}/s)",
                ">= 2x",
            )
        )
        rows.append(
            (
                "chain 200, 1 worker",
                f"{chain / 200 * 1e3:.3f} ms/step",
                f"{chain / 200 / f_chain:.2f}x floor ({f_chain * 1e3:.3f} ms)",
                "<= 2x",
            )
        )
        rows.append(
            (
                "parent's commit -> dependent's handler starts, other worker",
                spread(lat),
                "",
                "<= 2 ms",
            )
        )
        per_small, per_big = small / 100, big / 10_000
        rows.append(
            (
                "per step, one task of 100 / 10,000",
                f"{per_small * 1e3:.3f} / {per_big * 1e3:.3f} ms",
                f"{per_big / per_small:.2f}x",
                "<= 1.5x",
            )
        )
        floor_step = statistics.median(floors)
        floor_rate = 1 / floor_step
        engine.close()
    print("\n| benchmark | measured | ratio | target |\n|---|---|---:|---|")
    print(
        f"| floor: INSERT + UPDATE + COMMIT per step | {floor_step * 1e3:.3f} ms/step "
        f"({floor_rate:,.0f} steps/s) | 1x | |"
    )
    for row in rows:
        print("| " + " | ".join(row) + " |")


def spread(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    med = statistics.median(ordered)
    p90 = ordered[int(len(ordered) * 0.9)]
    return f"median {med * 1e3:.2f} ms (p90 {p90 * 1e3:.2f} ms, n={len(ordered)})"


def run_wait(engine: Engine, task_id: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while engine.get_task(task_id).state not in ("complete", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(task_id)
        time.sleep(0.005)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
