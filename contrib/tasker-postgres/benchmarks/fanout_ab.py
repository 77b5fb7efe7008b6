"""Fan-out of 1,000 no-op steps on four worker processes, two settle versions interleaved.

Each version gets a database of its own (latest schema) in one durable throwaway cluster, with
four warm worker processes of its own (both sets stay up; the idle set only waits on LISTEN).
Each round measures the floor (as ``bench_postgres.py`` does), then one fan-out on each version,
in alternating order; while a fan-out runs, a sampler reads ``pg_stat_activity`` every few
milliseconds and counts the busy backends of its database and those waiting on a lock (by wait
event, the table of the row waited for, and what the waiter and the blocker run).

    python contrib/tasker-postgres/benchmarks/fanout_ab.py [--rounds 6] [--versions 4 6]
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
from bench_postgres import floor, make_engine, run_task, workers

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--versions", type=int, nargs=2, default=(4, 6))
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    per: dict[str, list[float]] = defaultdict(list)
    events: dict[int, Counter[str]] = defaultdict(Counter)
    with TempCluster(durable=True) as cluster, ExitStack() as stack:
        urls = {v: fresh_database(cluster, f"fan{v}") for v in args.versions}
        engines = {v: make_engine(url) for v, url in urls.items()}
        for v, url in urls.items():
            stack.enter_context(workers(url, args.workers, settle=v))
        for engine in engines.values():  # warm-up: each worker builds the graph once
            for _ in range(6):
                run_task(engine, "fanout_1000")
        base = next(iter(urls.values()))
        for r in range(args.rounds):
            step = min(floor(base, 500) for _ in range(2))
            per["floor"].append(step)
            line = [f"round {r + 1}: floor {step * 1e3:.3f} ms"]
            for v in args.versions if r % 2 == 0 else args.versions[::-1]:
                with Sampler(urls[v], f"fan{v}") as sampler:
                    took = run_task(engines[v], "fanout_1000")
                rate = 1000 / took
                per[f"v{v}"].append(rate * step)
                per[f"v{v} waiting"].append(sampler.waiting / max(sampler.busy, 1))
                events[v].update(sampler.events)
                line.append(
                    f"v{v} {rate:,.0f} steps/s = {rate * step:.2f}x "
                    f"(lock waits {sampler.waiting}/{sampler.busy} busy samples)"
                )
            print(", ".join(line), flush=True)
        for engine in engines.values():
            engine.close()
    med = {k: statistics.median(v) for k, v in per.items()}
    print(
        f"median of {args.rounds}: floor {med['floor'] * 1e3:.3f} ms; "
        + "; ".join(
            f"v{v} {med[f'v{v}']:.2f}x the floor, {med[f'v{v} waiting'] * 100:.0f}% of busy "
            "backends waiting on a lock"
            for v in args.versions
        )
    )
    for v in args.versions:
        print(f"v{v} lock waits by wait_event: {dict(events[v].most_common())}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
