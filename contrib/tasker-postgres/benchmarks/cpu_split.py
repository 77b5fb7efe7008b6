"""Where a fan-out step's CPU goes: the worker processes vs the Postgres server, per step.

Fan-outs of 1,000 no-op steps on warm worker processes (``bench_postgres.py --run-worker``), for
each worker count and each variant of the ``tasker_postgres`` package, interleaved: a variant is
a directory put first on the workers' ``PYTHONPATH`` (``name=DIR``; ``name=`` for the installed
package; ``name=DIR,--option`` passes options to ``bench_postgres.py --run-worker``), so a copy
of the package made before a change is the "before". Every variant gets a
database of its own in one durable throwaway cluster, and workers of its own (the idle set only
waits on LISTEN). CPU is read from ``/proc/<pid>/stat`` (user + system, all threads; 10 ms
ticks, so the figures are sums over all rounds) around each fan-out, from its submit to its
completion:

- **workers**: the worker processes;
- **backends**: the server processes serving them (found by ``application_name``, which the
  workers get through ``PGAPPNAME``);
- **aux**: the postmaster and its other children that are not client backends (WAL writer,
  checkpointer, background writer, autovacuum...), and children that exited meanwhile (the
  postmaster's ``cutime``).

The floor (``bench_postgres.floor``) is measured in every round, as ``fanout_ab.py`` does.

    python contrib/tasker-postgres/benchmarks/cpu_split.py --variants before=/tmp/orig after= \\
        [--workers 1 4] [--rounds 6]

``--statements`` loads pg_stat_statements (``track = all``) and prints, per variant and worker
count, the server's execution time per step of the costliest statements (nested ones inside the
settle and claim functions included) and the rows each table inserted and updated per step,
with the share of heap-only updates (no index entries); it costs server CPU, so its CPU figures
are not the plain ones. Also printed: the workers' context switches per step, how many cores
the fan-outs kept busy (CPU over wall time, ours only), and how long the first claim took.
``--cprofile N`` profiles the workers of the last variant (every thread, see
``bench_postgres.PROFILE_ENV``) and prints the N functions with the most own time per step:
wall time, so the blocking calls (``SimpleQueue.get``, ``select``) come first and mean nothing.
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from bench_postgres import PROFILE_ENV, floor, make_engine
from tasker_core import Engine, TaskRequest

from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database

HERE = Path(__file__).resolve().parent
TICK = 1.0 / os.sysconf("SC_CLK_TCK")
STATEMENTS = {
    "shared_preload_libraries": "'pg_stat_statements'",
    "pg_stat_statements.track": "all",
}


def cpu(pid: int, children: bool = False) -> float:
    """Seconds of CPU (user + system) of a process so far; 0 if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is the state (stat field 3): utime is field 14, stime 15, cutime 16, cstime 17.
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used * TICK


def switches(pid: int) -> int:
    """Context switches (voluntary and not) of all of a process's threads so far."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            text = (task / "status").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def children_of(parent: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
            except OSError:
                continue
            if int(text[text.rindex(")") + 2 :].split()[1]) == parent:
                out.append(int(entry.name))
    return out


class Meter:
    """CPU of the server's processes, split by who they serve (see the module docstring)."""

    def __init__(self, cluster: TempCluster) -> None:
        self.postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        self.admin = psycopg.connect(cluster.conninfo, autocommit=True)

    def snapshot(self) -> dict[str, float]:
        """CPU so far: ``aux``, and ``app:<application_name>`` per client application."""
        apps: dict[int, str] = {
            pid: f"app:{app}"
            for pid, app in self.admin.execute(
                "SELECT pid, application_name FROM pg_stat_activity "
                "WHERE backend_type = 'client backend'"
            ).fetchall()
        }
        out: defaultdict[str, float] = defaultdict(float)
        out["aux"] = cpu(self.postmaster, children=True)
        for pid in children_of(self.postmaster):
            out[apps.get(pid, "aux")] += cpu(pid)
        return dict(out)

    def close(self) -> None:
        self.admin.close()


@contextmanager
def worker_set(
    url: str, count: int, path: str, app: str, profile: str | None = None
) -> Iterator[list[int]]:
    """``count`` warm worker processes importing ``tasker_postgres`` from ``path`` first (and
    profiling themselves into the directory ``profile``); ``path`` may go on with options of
    ``bench_postgres.py``'s workers after commas (``DIR,--no-claim-on-settle``)."""
    env = dict(os.environ, PGAPPNAME=app)
    if profile:
        env[PROFILE_ENV] = profile
    if path:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
    path, *options = path.split(",")
    command = [sys.executable, str(HERE / "bench_postgres.py"), "--run-worker", url, "16"]
    command += options
    procs = [subprocess.Popen(command, env=env) for _ in range(count)]
    time.sleep(2.5)  # imports, engine, LISTEN: warm and idle
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def fan_out(engine: Engine, poll: psycopg.Connection[tuple[object, ...]]) -> tuple[float, float]:
    """One ``fanout_1000`` task, waited for on ``poll``: its stored duration, and the part of it
    before its first step was claimed (submit and activation: loading the graph, enqueueing)."""
    task = engine.submit(TaskRequest("bench", "fanout_1000"))
    deadline = time.monotonic() + 600
    while True:
        row = poll.execute(
            "SELECT state, completed_at - created_at, (SELECT min(tr.created_at) "
            "FROM tasker_transitions tr WHERE tr.task_id = t.id AND tr.to_state = 'in_progress') "
            "- created_at FROM tasker_tasks t WHERE id = %s",
            (task.id,),
        ).fetchone()
        assert row is not None
        if row[0] in ("complete", "error"):
            assert row[0] == "complete", row[0]
            return float(row[1]), float(row[2])  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise TimeoutError(f"fanout_1000 {task.id} not done after 600s")
        time.sleep(0.005)


def statements(cluster: TempCluster, database: str, steps: int, top: int = 12) -> list[str]:
    with psycopg.connect(cluster.conninfo, autocommit=True) as conn:
        found = conn.execute(
            "SELECT s.calls, s.rows, s.total_exec_time, left(regexp_replace(s.query, "
            "'\\s+', ' ', 'g'), 90) FROM pg_stat_statements s JOIN pg_database d "
            "ON d.oid = s.dbid WHERE d.datname = %s ORDER BY s.total_exec_time DESC LIMIT %s",
            (database, top),
        ).fetchall()
        (calls_all,) = conn.execute(  # top-level statements only: the round trips
            "SELECT sum(s.calls) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
            "WHERE d.datname = %s AND s.toplevel AND s.query NOT LIKE '%%bench_floor%%'",
            (database,),
        ).fetchone() or (0,)
    return [f"  {int(calls_all or 0) / steps:.3f} top-level statements per step"] + [
        f"  {total / steps * 1e3:7.1f} µs/step  {calls:6d} calls {rows:7d} rows  "
        f"{total / max(calls, 1) * 1e3:7.1f} µs/call  {query}"
        for calls, rows, total, query in found
    ]


def table_writes(url: str) -> dict[str, tuple[int, int, int]]:
    """Per table: rows inserted, rows updated, of those heap-only (no index entries)."""
    with psycopg.connect(conninfo(url), autocommit=True) as conn:
        found = conn.execute(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
            "WHERE relname LIKE 'tasker%'"
        ).fetchall()
    return {name: (ins, upd, hot) for name, ins, upd, hot in found}


def profile_report(directory: Path, steps: int, top: int) -> None:
    """The workers' cProfile (all threads, warm-up included), own time per step."""
    stats = pstats.Stats(*[str(p) for p in directory.glob("*.prof")])
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])  # type: ignore[attr-defined]
    print(f"cProfile of the workers of the last variant, per step ({steps} steps):")
    for (file, line, name), (_, calls, own, inclusive, _) in rows[:top]:
        where = f"{Path(file).name}:{line}" if line else file
        print(
            f"  own {own / steps * 1e6:7.1f} µs  incl {inclusive / steps * 1e6:7.1f} µs  "
            f"{calls / steps:6.2f} calls  {name} {where}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--variants", nargs="+", required=True, metavar="NAME=DIR")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--statements", action="store_true")
    parser.add_argument("--cprofile", type=int, default=0, metavar="N")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variants)
    labels = list(variants)
    settings = STATEMENTS if args.statements else {}
    summary: list[str] = []
    with TempCluster(durable=True, settings=settings) as cluster:
        urls = {k: fresh_database(cluster, f"cpu{k}") for k in labels}
        engines = {k: make_engine(url) for k, url in urls.items()}
        polls = {k: psycopg.connect(conninfo(url), autocommit=True) for k, url in urls.items()}
        meter = Meter(cluster)
        if args.statements:
            meter.admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for count in args.workers:
            per: dict[str, list[float]] = defaultdict(list)
            used: defaultdict[str, defaultdict[str, float]] = defaultdict(
                lambda: defaultdict(float)
            )
            with ExitStack() as stack:
                prof = tempfile.mkdtemp(prefix="cpu-split-prof-") if args.cprofile else None
                pids = {
                    k: stack.enter_context(
                        worker_set(
                            urls[k], count, path, f"tw-{k}", prof if k == labels[-1] else None
                        )
                    )
                    for k, path in variants.items()
                }
                for k in labels:  # warm-up: each worker builds the graph once
                    for _ in range(6):
                        fan_out(engines[k], polls[k])
                if args.statements:
                    meter.admin.execute("SELECT pg_stat_statements_reset()")
                    time.sleep(1.5)  # backends flush table statistics at most once a second
                writes = {k: table_writes(url) for k, url in urls.items()}
                for r in range(args.rounds):
                    step = min(floor(urls[labels[0]], 500) for _ in range(2))
                    per["floor"].append(step)
                    line = [f"{count}w round {r + 1}: floor {step * 1e3:.3f} ms"]
                    for k in labels if r % 2 == 0 else labels[::-1]:
                        x0 = sum(switches(p) for p in pids[k])
                        w0 = sum(cpu(p) for p in pids[k])
                        s0 = meter.snapshot()
                        t0 = time.perf_counter()
                        took, first = fan_out(engines[k], polls[k])
                        used[k]["wall"] += time.perf_counter() - t0
                        per[f"{k} first"].append(first)
                        s1 = meter.snapshot()
                        w1 = sum(cpu(p) for p in pids[k])
                        used[k]["switches"] += sum(switches(p) for p in pids[k]) - x0
                        used[k]["workers"] += w1 - w0
                        app = f"app:tw-{k}"
                        used[k]["backends"] += s1.get(app, 0.0) - s0.get(app, 0.0)
                        used[k]["aux"] += s1["aux"] - s0["aux"]
                        per[k].append(1000 / took * step)
                        line.append(f"{k} {1000 / took:,.0f} steps/s = {1000 / took * step:.2f}x")
                    print(", ".join(line), flush=True)
            steps = 1000 * args.rounds
            if prof:
                profile_report(Path(prof), 1000 * (args.rounds + 6), args.cprofile)
            for k in labels:
                u = used[k]
                total = u["workers"] + u["backends"] + u["aux"]
                summary.append(
                    f"{count} worker(s) {k}: median {statistics.median(per[k]):.2f}x the floor "
                    f"(floor median {statistics.median(per['floor']) * 1e3:.3f} ms), first claim "
                    f"after {statistics.median(per[f'{k} first']) * 1e3:.0f} ms; CPU per step "
                    f"{total / steps * 1e6:.0f} µs = workers {u['workers'] / steps * 1e6:.0f} + "
                    f"server backends {u['backends'] / steps * 1e6:.0f} + "
                    f"aux {u['aux'] / steps * 1e6:.0f}, {total / u['wall']:.2f} cores busy; "
                    "worker context switches per step "
                    f"{u['switches'] / steps:.1f}"
                )
                print(summary[-1], flush=True)
                if args.statements:
                    print("\n".join(statements(cluster, f"cpu{k}", steps)), flush=True)
                    time.sleep(1.5)
                    for table, now in sorted(table_writes(urls[k]).items()):
                        ins, upd, hot = (a - b for a, b in zip(now, writes[k][table], strict=True))
                        if ins or upd:
                            print(
                                f"  {table}: {ins / steps:.2f} inserts, {upd / steps:.2f} "
                                f"updates per step, {hot / max(upd, 1) * 100:.0f}% heap-only"
                            )
            if args.statements:
                meter.admin.execute("SELECT pg_stat_statements_reset()")
        meter.close()
        for engine in engines.values():
            engine.close()
        for conn in polls.values():
            conn.close()
    print("\n".join(summary))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
