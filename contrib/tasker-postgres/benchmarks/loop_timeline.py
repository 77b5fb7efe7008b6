"""What holds a multi-worker fan-out: the commit's WAL flush, or each worker's loop cadence?

Fan-outs of 1,000 no-op steps on warm worker processes, interleaved over three variants of the
server's durability, each on a database of its own:

- **durable**: the benchmarks' cluster (fsync and synchronous commit on);
- **async**: the same cluster, the database set to ``synchronous_commit = off`` (fsync stays
  on: a commit no longer waits for its WAL flush, the WAL writer flushes behind);
- **nofsync**: a second cluster as the tests run it (``TempCluster(durable=False)``: fsync,
  synchronous commit and full-page writes off).

The floor (``bench_postgres.floor``) is measured in every round **on the durable database**,
as the target defines it; the other variants' own floors are printed for reference only. CPU
comes from ``/proc`` as in ``cpu_split.py`` (workers, their backends, the server's other
processes) and the whole machine's from ``/proc/stat`` (other load included).

Each worker process also records a timeline of its loop, by monkeypatching (the package is not
changed, and nothing is recorded outside these processes): every tick, every
``_settle_and_claim`` (outcomes settled, steps claimed, steps held before and after, which
thread), every database call of the loop's connection (start and end), every outcome the
executor reports. Per fan-out and worker this gives, by Little's law over the fan-out's wall
time, how long a step spends claimed-but-unfinished and finished-but-unsettled; the share of
wall time the worker holds no step, spends in a database call, ticks in Python, or does nothing;
the settle round trips' durations; and how many of the workers are inside a database call at
once. Per fan-out it also gives its phases: when ``submit`` returned (its ``created_at`` is taken
before the step rows are written), when the activation began and committed, and the rate from
the first claim to the last settle. ``fanout_ab.Sampler`` counts the busy backends waiting on a
lock meanwhile.

    python contrib/tasker-postgres/benchmarks/loop_timeline.py [--workers 1 4] [--rounds 6] \\
        [--variants durable async nofsync]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
from bench_postgres import floor, make_engine, run_worker
from cpu_split import Meter, cpu
from fanout_ab import Sampler
from tasker_core import Engine, TaskRequest

from tasker_postgres.db import conninfo
from tasker_postgres.testing import TempCluster, fresh_database

HERE = Path(__file__).resolve().parent
TIMELINE_ENV = "TASKER_BENCH_TIMELINE"
"""A directory: each worker process records its loop's timeline and writes ``<pid>.json`` there
when it stops."""
VARIANTS = ("durable", "async", "nofsync")
Event = list[Any]


# -- in the worker processes ------------------------------------------------------------------


def install_timeline() -> list[Event]:
    """Wrap the worker's loop methods to append timestamped events (``time.perf_counter``, the
    machine's monotonic clock, comparable across processes) to the returned list."""
    from tasker_postgres.work import WorkTable
    from tasker_postgres.worker import Worker

    events: list[Event] = []
    clock = time.perf_counter

    def kind() -> str:
        return "loop" if threading.current_thread() is threading.main_thread() else "pool"

    tick = Worker._tick

    def timed_tick(self: Worker) -> None:
        t0 = clock()
        try:
            tick(self)
        finally:
            events.append(["tick", t0, clock(), kind()])

    settle_and_claim = Worker._settle_and_claim

    def timed_settle_and_claim(self: Worker, now: float) -> None:
        held0 = len(self._running) + len(self._pending)
        settling, claimed0 = len(self._pending), self.stats["claimed"]
        t0 = clock()
        try:
            settle_and_claim(self, now)
        finally:
            claimed = self.stats["claimed"] - claimed0
            held1 = len(self._running) + len(self._pending)
            events.append(["sc", t0, clock(), kind(), settling, claimed, held0, held1])

    deliver = Worker._deliver

    def timed_deliver(self: Worker, outcome: Any) -> None:
        events.append(["done", clock()])
        deliver(self, outcome)

    Worker._tick = timed_tick  # type: ignore[method-assign]
    Worker._settle_and_claim = timed_settle_and_claim  # type: ignore[method-assign]
    Worker._deliver = timed_deliver  # type: ignore[method-assign]

    def timed_db(name: str) -> None:
        inner: Callable[..., Any] = getattr(WorkTable, name)

        def call(self: WorkTable, *args: Any, **kwargs: Any) -> Any:
            if self._direct is None:  # the heartbeat thread's pooled table: not the loop's
                return inner(self, *args, **kwargs)
            t0 = clock()
            try:
                return inner(self, *args, **kwargs)
            finally:
                events.append(["db", t0, clock(), name])

        setattr(WorkTable, name, call)

    for name in ("settle", "claim", "due_tasks", "activate", "next_wake", "tasks", "expired"):
        timed_db(name)
    return events


def worker_main(url: str, concurrency: int) -> None:
    directory = os.environ.get(TIMELINE_ENV)
    events = install_timeline() if directory else []
    run_worker(url, concurrency, True, 6, True)
    if directory:
        (Path(directory) / f"{os.getpid()}.json").write_text(json.dumps(events))


# -- in the driver ------------------------------------------------------------------------------


@contextmanager
def worker_set(url: str, count: int, app: str, timeline: str) -> Iterator[list[int]]:
    """``count`` warm worker processes of concurrency 16, recording into ``timeline``."""
    env = dict(os.environ, PGAPPNAME=app, **{TIMELINE_ENV: timeline})
    command = [sys.executable, str(Path(__file__).resolve()), "--run-worker", url, "16"]
    procs = [subprocess.Popen(command, env=env) for _ in range(count)]
    time.sleep(2.5)  # imports, engine, LISTEN: warm and idle
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)


def fan_out(engine: Engine, poll: psycopg.Connection[Any], submitted: list[float]) -> float:
    """One ``fanout_1000`` task, waited for on ``poll``: its stored duration. Appends to
    ``submitted`` when ``submit`` returned (``time.perf_counter``)."""
    task = engine.submit(TaskRequest("bench", "fanout_1000"))
    submitted.append(time.perf_counter())
    deadline = time.monotonic() + 600
    while True:
        row = poll.execute(
            "SELECT state, completed_at - created_at FROM tasker_tasks WHERE id = %s", (task.id,)
        ).fetchone()
        assert row is not None
        if row[0] in ("complete", "error"):
            assert row[0] == "complete", row[0]
            return float(row[1])
        if time.monotonic() > deadline:
            raise TimeoutError(f"fanout_1000 {task.id} not done after 600s")
        time.sleep(0.002)


def machine_busy() -> tuple[float, float]:
    """Seconds of CPU the whole machine spent busy so far, and its number of cores."""
    lines = Path("/proc/stat").read_text().splitlines()
    fields = [int(x) for x in lines[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    return (sum(fields[:8]) - idle) * tick, float(cores)


def integral(steps: list[tuple[float, float]], t0: float, t1: float) -> tuple[float, float]:
    """For a step function given as (time, change) pairs, starting at 0: its integral over
    [t0, t1] and the time it spends at 0 or below there."""
    level, area, zero = 0.0, 0.0, 0.0
    last = t0
    for at, change in sorted(steps):
        if at > t1:
            break
        if at > t0:
            area += level * (at - last)
            zero += (at - last) if level <= 0 else 0.0
            last = at
        level += change
    area += level * (t1 - last)
    zero += (t1 - last) if level <= 0 else 0.0
    return area, zero


def covered(spans: list[tuple[float, float]], t0: float, t1: float) -> float:
    """The time within [t0, t1] covered by the union of ``spans``."""
    total, end = 0.0, t0
    for a, b in sorted(spans):
        a, b = max(a, end), min(b, t1)
        if b > a:
            total += b - a
            end = b
    return total


def analyse(events: list[Event], t0: float, t1: float) -> dict[str, float]:
    """One worker's share of one fan-out, [t0, t1] (submit to observed completion)."""
    wall = t1 - t0
    sc = [e for e in events if e[0] == "sc" and t0 <= e[1] < t1]
    ticks = [(e[1], e[2]) for e in events if e[0] == "tick" and e[2] > t0 and e[1] < t1]
    dbs = [(e[1], e[2]) for e in events if e[0] == "db" and e[2] > t0 and e[1] < t1]
    settles = [e[2] - e[1] for e in events if e[0] == "db" and e[3] == "settle" and t0 <= e[1] < t1]
    done = [e[1] for e in events if e[0] == "done" and t0 <= e[1] < t1]
    # Steps change state only at the end of a _settle_and_claim (claimed, settled) and when an
    # outcome is reported (done).
    settled = sum(e[4] for e in sc)
    claims = [(e[2], float(e[5])) for e in sc]
    held, held_zero = integral(claims + [(e[2], -float(e[4])) for e in sc], t0, t1)
    running, _ = integral(claims + [(d, -1.0) for d in done], t0, t1)
    waiting, _ = integral([(d, 1.0) for d in done] + [(e[2], -float(e[4])) for e in sc], t0, t1)
    in_tick = covered(ticks, t0, t1)
    # The worker's active span: from the end of its first claim to the end of its last settle.
    active = [e[2] for e in sc if e[5]]
    a0 = min(active) if active else t1
    a1 = max((e[2] for e in sc if e[4]), default=a0)
    _, zero_active = integral(claims + [(e[2], -float(e[4])) for e in sc], a0, max(a1, a0 + 1e-9))
    in_db = covered(dbs, t0, t1)
    return {
        "wall": wall,
        "settled": settled,
        "settles": len(settles),
        "settle_ms": statistics.median(settles) * 1e3 if settles else 0.0,
        "settle_p90_ms": sorted(settles)[int(len(settles) * 0.9)] * 1e3 if settles else 0.0,
        "settle_sum": sum(settles),
        "per_settle": settled / max(len([e for e in sc if e[4]]), 1),
        "claims_per_sc": sum(e[5] for e in sc) / max(len(sc), 1),
        "pool_sc": sum(1 for e in sc if e[3] == "pool") / max(len(sc), 1),
        "held_zero": held_zero / wall,
        "first_claim_ms": (a0 - t0) * 1e3,
        "after_last_ms": (t1 - a1) * 1e3,
        "held_zero_active": zero_active / max(a1 - a0, 1e-9),
        "held_mean": held / wall,
        "run_ms": running / max(settled, 1) * 1e3,
        "wait_ms": waiting / max(settled, 1) * 1e3,
        "db": in_db / wall,
        "tick_py": (in_tick - in_db) / wall,
        "no_tick": 1 - in_tick / wall,
    }


def overlap(per_worker: list[list[tuple[float, float]]], t0: float, t1: float) -> list[float]:
    """Share of [t0, t1] during which k of the workers are inside a database call, k = 0..n."""
    marks: list[tuple[float, int]] = []
    for spans in per_worker:
        for a, b in spans:
            if b > t0 and a < t1:
                marks += [(max(a, t0), 1), (min(b, t1), -1)]
    share = [0.0] * (len(per_worker) + 1)
    level, last = 0, t0
    for at, change in sorted(marks):
        share[min(level, len(per_worker))] += at - last
        level, last = level + change, at
    share[min(level, len(per_worker))] += t1 - last
    return [s / (t1 - t0) for s in share]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--run-worker", nargs=2, metavar=("URL", "CONCURRENCY"))
    args = parser.parse_args()
    if args.run_worker:
        worker_main(args.run_worker[0], int(args.run_worker[1]))
        return
    labels: list[str] = args.variants
    summary: list[str] = []
    with ExitStack() as outer:
        durable = outer.enter_context(TempCluster(durable=True))
        loose = outer.enter_context(TempCluster(durable=False)) if "nofsync" in labels else None
        clusters = {k: (loose if k == "nofsync" else durable) for k in labels}
        urls = {k: fresh_database(c, f"tl{k}") for k, c in clusters.items() if c is not None}
        base = urls.get("durable") or fresh_database(durable, "tldurable")
        if "async" in urls:
            with psycopg.connect(durable.conninfo, autocommit=True) as conn:
                conn.execute("ALTER DATABASE tlasync SET synchronous_commit = off")
        engines = {k: make_engine(url) for k, url in urls.items()}
        polls = {k: psycopg.connect(conninfo(url), autocommit=True) for k, url in urls.items()}
        meters = {id(c): Meter(c) for c in (durable, loose) if c is not None}
        for count in args.workers:
            per: dict[str, list[float]] = defaultdict(list)
            used: defaultdict[str, defaultdict[str, float]] = defaultdict(
                lambda: defaultdict(float)
            )
            windows: dict[str, list[tuple[float, float]]] = defaultdict(list)
            timeline = tempfile.mkdtemp(prefix="loop-timeline-")
            pids: dict[str, list[int]] = {}
            with ExitStack() as stack:
                for k in labels:
                    pids[k] = stack.enter_context(worker_set(urls[k], count, f"tl-{k}", timeline))
                submitted: list[float] = []
                for k in labels:  # warm-up: each worker builds the graph once
                    for _ in range(6):
                        fan_out(engines[k], polls[k], submitted)
                for r in range(args.rounds):
                    step = min(floor(base, 500) for _ in range(2))
                    per["floor"].append(step)
                    line = [f"{count}w round {r + 1}: floor {step * 1e3:.3f} ms"]
                    order = labels if r % 2 == 0 else labels[::-1]
                    for k in order:
                        meter = meters[id(clusters[k])]
                        w0 = sum(cpu(p) for p in pids[k])
                        s0, (m0, cores) = meter.snapshot(), machine_busy()
                        with Sampler(urls[k], f"tl{k}") as sampler:
                            t0 = time.perf_counter()
                            took = fan_out(engines[k], polls[k], submitted)
                            t1 = time.perf_counter()
                        u = used[k]
                        u["busy"] += sampler.busy
                        u["waiting"] += sampler.waiting
                        s1, (m1, _) = meter.snapshot(), machine_busy()
                        windows[k].append((t0, t1))
                        per[f"{k} submit"].append(submitted[-1] - t0)
                        app = f"app:tl-{k}"
                        u["wall"] += t1 - t0
                        u["workers"] += sum(cpu(p) for p in pids[k]) - w0
                        u["backends"] += s1.get(app, 0.0) - s0.get(app, 0.0)
                        u["aux"] += s1["aux"] - s0["aux"]
                        u["machine"] += m1 - m0
                        u["cores"] = cores
                        per[k].append(1000 / took * step)
                        per[f"{k} rate"].append(1000 / took)
                        line.append(f"{k} {1000 / took:,.0f} steps/s = {1000 / took * step:.2f}x")
                    for k in labels:
                        if k != "durable":
                            per[f"{k} own floor"].append(floor(urls[k], 500))
                    print(", ".join(line), flush=True)
            per_pid = {
                int(p.stem): json.loads(p.read_text()) for p in Path(timeline).glob("*.json")
            }
            shutil.rmtree(timeline, ignore_errors=True)
            for k in labels:
                u = used[k]
                steps = 1000 * args.rounds
                starts = []  # per fan-out: submit returned, activation began and ended
                for (t0, _), sub in zip(windows[k], per[f"{k} submit"], strict=True):
                    acts = [
                        (e[1], e[2])
                        for pid in pids[k]
                        for e in per_pid.get(pid, [])
                        if e[0] == "db" and e[3] == "activate" and e[1] >= t0 and e[2] - e[1] > 2e-3
                    ]
                    a = min(acts) if acts else (t0, t0)
                    starts.append((sub, a[0] - t0, a[1] - t0))
                total = u["workers"] + u["backends"] + u["aux"]
                own = (
                    f", its own floor {statistics.median(per[f'{k} own floor']) * 1e3:.3f} ms"
                    if per[f"{k} own floor"]
                    else ""
                )
                summary.append(
                    f"{count} worker(s) {k}: median {statistics.median(per[f'{k} rate']):,.0f} "
                    f"steps/s = {statistics.median(per[k]):.2f}x the durable floor (median "
                    f"{statistics.median(per['floor']) * 1e3:.3f} ms{own}); CPU per step "
                    f"{total / steps * 1e6:.0f} µs (workers {u['workers'] / steps * 1e6:.0f}, "
                    f"backends {u['backends'] / steps * 1e6:.0f}, aux {u['aux'] / steps * 1e6:.0f})"
                    f", ours {total / u['wall']:.2f} cores busy, machine "
                    f"{u['machine'] / u['wall']:.2f} of {u['cores']:.0f}; busy backends waiting "
                    f"on a lock {u['waiting'] / max(u['busy'], 1) * 100:.0f}% (of "
                    f"{u['busy'] / args.rounds:.0f} busy samples per fan-out)"
                )
                rows: dict[str, list[float]] = defaultdict(list)
                shares: list[list[float]] = []
                active: list[float] = []  # steps/s from the first claim to the last settle
                for t0, t1 in windows[k]:
                    found = [analyse(per_pid.get(pid, []), t0, t1) for pid in pids[k]]
                    for one in found:
                        for key, value in one.items():
                            rows[key].append(value)
                    span = (t1 - t0) - (
                        min(f["first_claim_ms"] for f in found)
                        + min(f["after_last_ms"] for f in found)
                    ) / 1e3
                    active.append(1000 / span)
                    spans = [
                        [(e[1], e[2]) for e in per_pid.get(pid, []) if e[0] == "db"]
                        for pid in pids[k]
                    ]
                    shares.append(overlap(spans, t0, t1))
                m = {key: statistics.median(v) for key, v in rows.items()}
                both = [statistics.mean(s[i] for s in shares) for i in range(count + 1)]
                summary.append(
                    f"  per worker and fan-out (medians): {m['settles']:.0f} settles of "
                    f"{m['per_settle']:.1f} steps, settle round trip median {m['settle_ms']:.2f} "
                    f"ms (p90 {m['settle_p90_ms']:.2f}), settles take "
                    f"{m['settle_sum'] / m['wall'] * 100:.0f}% of wall; "
                    f"{m['claims_per_sc']:.1f} claimed per settle-and-claim, "
                    f"{m['pool_sc'] * 100:.0f}% of them by a pool thread; first claim after "
                    f"{m['first_claim_ms']:.0f} ms, last settle {m['after_last_ms']:.0f} ms before "
                    f"the end; holds no step {m['held_zero'] * 100:.0f}% of wall "
                    f"({m['held_zero_active'] * 100:.0f}% of its active span), "
                    f"{m['held_mean']:.1f} steps on average;"
                    f" a step spends {m['run_ms']:.2f} ms claimed until its outcome is reported, "
                    f"{m['wait_ms']:.2f} ms reported until settled; the worker is in a database "
                    f"call {m['db'] * 100:.0f}% of wall, ticks in Python {m['tick_py'] * 100:.0f}%"
                    f", ticks not {m['no_tick'] * 100:.0f}%"
                )
                summary.append(
                    "  workers inside a database call at once (share of wall, 0.."
                    f"{count}): " + " ".join(f"{s * 100:.0f}%" for s in both)
                )
                summary.append(
                    "  from the driver's t0: submit returns after "
                    f"{statistics.median(x[0] for x in starts) * 1e3:.0f} ms, the activation "
                    f"starts at {statistics.median(x[1] for x in starts) * 1e3:.0f} ms and "
                    f"commits at {statistics.median(x[2] for x in starts) * 1e3:.0f} ms (medians);"
                    f" from the first claim to the last settle {statistics.median(active):,.0f} "
                    f"steps/s = {statistics.median(active) * statistics.median(per['floor']):.2f}x"
                    " the floor"
                )
                print("\n".join(summary[-4:]), flush=True)
        for meter in meters.values():
            meter.close()
        for engine in engines.values():
            engine.close()
        for conn in polls.values():
            conn.close()
    print("\n".join(summary))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
