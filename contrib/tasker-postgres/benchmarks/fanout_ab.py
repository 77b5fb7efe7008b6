"""Fan-out of 1,000 no-op steps on worker processes, two variants interleaved.

The variants are two settle versions (``--versions``) or two worker concurrencies
(``--concurrency``, on the latest settle version: how many steps one settle can carry at most).
Each variant gets a database of its own (latest schema) in one durable throwaway cluster, with
warm worker processes of its own (both sets stay up; the idle set only waits on LISTEN). Each
round measures the floor (as ``bench_postgres.py`` does), then one fan-out on each variant, in
alternating order; while a fan-out runs, a sampler reads ``pg_stat_activity`` every few
milliseconds and counts the busy backends of its database and those waiting on a lock (by wait
event, the table of the row waited for, and what the waiter and the blocker run). Steps per
settle come from the task's stored transitions: the steps' ``complete`` rows over the
transactions (``xmin``) that wrote them.

    python contrib/tasker-postgres/benchmarks/fanout_ab.py [--rounds 6] [--versions 4 6]
    python contrib/tasker-postgres/benchmarks/fanout_ab.py --concurrency 16 64 [--workers 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from contextlib import ExitStack

import psycopg
from bench_postgres import floor, make_engine, workers
from tasker_core import Engine, TaskRequest

from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database


class Sampler:
    """Counts, every ``every`` seconds, the busy backends of one database and the waiting ones."""

    def __init__(self, url: str, database: str, every: float = 0.003) -> None:
        self.url, self.database, self.every = url, database, every
        self.busy = 0
        self.waiting = 0
        self.events: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
            while not self._stop.is_set():
                # Each waiter, with the table of the row it waits for (the tuple lock it holds
                # while it waits for the row's locker to finish, if any).
                found = conn.execute(
                    "SELECT a.wait_event_type, a.wait_event, (SELECT l.relation::regclass::text "
                    "FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'tuple' LIMIT 1), "
                    "left(a.query, 28), (SELECT left(b.query, 28) || ' (' || b.state || ')' "
                    "FROM pg_stat_activity b WHERE b.pid = (pg_blocking_pids(a.pid))[1]) "
                    "FROM pg_stat_activity a "
                    "WHERE a.datname = %s AND a.pid <> pg_backend_pid() AND a.state = 'active'",
                    (self.database,),
                ).fetchall()
                self.busy += len(found)
                for kind, event, table, query, blocker in found:
                    if kind == "Lock":
                        self.waiting += 1
                        self.events[f"{event} {table or ''}: {query!r} by {blocker!r}"] += 1
                time.sleep(self.every)


def fan_out(engine: Engine, url: str) -> tuple[float, float]:
    """One ``fanout_1000`` task: its stored duration, and the steps it settled per settle."""
    task = engine.submit(TaskRequest("bench", "fanout_1000"))
    deadline = time.monotonic() + 600
    while (got := engine.get_task(task.id)).state not in ("complete", "error"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"fanout_1000 {task.id} not done after 600s")
        time.sleep(0.002)
    assert got.state == "complete" and got.completed_at is not None, got.state
    with psycopg.connect(conninfo(url)) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT xmin::text) FROM tasker_transitions "
            "WHERE task_id = %s AND step IS NOT NULL AND to_state = 'complete'",
            (task.id,),
        ).fetchone()
    assert row is not None
    steps, settles = row
    return got.completed_at - got.created_at, steps / max(settles, 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--versions", type=int, nargs=2, default=(4, 6))
    parser.add_argument(
        "--concurrency", type=int, nargs=2, help="compare two worker concurrencies (default 16)"
    )
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    # label -> (settle version, worker concurrency)
    variants: dict[str, tuple[int, int]] = (
        {f"conc{c}": (6, c) for c in args.concurrency}
        if args.concurrency
        else {f"v{v}": (v, 16) for v in args.versions}
    )
    labels = list(variants)
    per: dict[str, list[float]] = defaultdict(list)
    events: dict[str, Counter[str]] = defaultdict(Counter)
    with TempCluster(durable=True) as cluster, ExitStack() as stack:
        urls = {k: fresh_database(cluster, f"fan{k}") for k in labels}
        engines = {k: make_engine(url) for k, url in urls.items()}
        for k, (version, conc) in variants.items():
            stack.enter_context(workers(urls[k], args.workers, conc, settle=version))
        for k, engine in engines.items():  # warm-up: each worker builds the graph once
            for _ in range(6):
                fan_out(engine, urls[k])
        base = urls[labels[0]]
        for r in range(args.rounds):
            step = min(floor(base, 500) for _ in range(2))
            per["floor"].append(step)
            line = [f"round {r + 1}: floor {step * 1e3:.3f} ms"]
            for k in labels if r % 2 == 0 else labels[::-1]:
                with Sampler(urls[k], f"fan{k}") as sampler:
                    took, per_settle = fan_out(engines[k], urls[k])
                rate = 1000 / took
                per[k].append(rate * step)
                per[f"{k} per settle"].append(per_settle)
                per[f"{k} waiting"].append(sampler.waiting / max(sampler.busy, 1))
                events[k].update(sampler.events)
                line.append(
                    f"{k} {rate:,.0f} steps/s = {rate * step:.2f}x, {per_settle:.1f} steps/settle "
                    f"(lock waits {sampler.waiting}/{sampler.busy} busy samples)"
                )
            print(", ".join(line), flush=True)
        for engine in engines.values():
            engine.close()
    med = {k: statistics.median(v) for k, v in per.items()}
    print(
        f"median of {args.rounds} ({args.workers} workers): floor {med['floor'] * 1e3:.3f} ms; "
        + "; ".join(
            f"{k} {med[k]:.2f}x the floor, {med[f'{k} per settle']:.1f} steps/settle, "
            f"{med[f'{k} waiting'] * 100:.0f}% of busy backends waiting on a lock"
            for k in labels
        )
    )
    for k in labels:
        print(f"{k} lock waits by wait_event: {dict(events[k].most_common())}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
