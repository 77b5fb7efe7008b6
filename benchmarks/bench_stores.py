"""Micro-benchmark of the builtin stores' write path: create_task and batched apply().

Drives every step of one wide task through enqueue -> start -> complete in batches, as the
embedded engine does once per orchestration tick, and prints step changes per second of wall
time and per second of this process's CPU time (steadier on a shared machine), and the wall time
per step (its three changes). The default batch, 24 changes, is what one tick of the engine's
fan-out writes with 8 workers. Run:

    python benchmarks/bench_stores.py [--steps 20000] [--batch 24] [--store sqlite|memory|both]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tasker_core.builtin.memory_store import MemoryStore
from tasker_core.builtin.sqlite_store import SQLiteStore
from tasker_core.models import Step, StepChange, Task
from tasker_core.protocols import Store


def _task(task_id: str, n: int) -> tuple[Task, list[Step]]:
    task = Task(task_id, "bench", "wide", "1.0.0", "pending", {"n": n}, 1.0, 1.0)
    steps = [Step(task_id, i, f"step_{i}", "bench.noop", "pending", 3, True) for i in range(n)]
    return task, steps


def bench(make: Callable[[], Store], n: int, batch: int) -> dict[str, float]:
    """Seconds for create_task(n steps) and step changes/s through apply() in ``batch`` chunks.

    Only the apply() calls are timed, not building the change objects.
    """
    store = make()
    try:
        task, steps = _task("create", n)
        started = time.perf_counter()
        store.create_task(task, steps)
        create_s = time.perf_counter() - started

        task, steps = _task("apply", n)
        store.create_task(task, steps)
        names = [s.name for s in steps]
        phases: list[Callable[[str], StepChange]] = [
            lambda s: StepChange("apply", s, "pending", "enqueued"),
            lambda s: StepChange(
                "apply", s, "enqueued", "in_progress", lease_owner="w1", lease_expires_at=99.0
            ),
            lambda s: StepChange(
                "apply", s, "in_progress", "complete", results={"ok": True}, expect_attempt=1
            ),
        ]
        changes = 0
        apply_s = 0.0
        apply_cpu = 0.0
        for phase in phases:
            batches = [[phase(s) for s in names[at : at + batch]] for at in range(0, n, batch)]
            started, started_cpu = time.perf_counter(), time.process_time()
            for chunk in batches:
                applied = store.apply(chunk, now=2.0)
                if not all(applied):
                    raise AssertionError("a benchmark change did not apply")
            apply_s += time.perf_counter() - started
            apply_cpu += time.process_time() - started_cpu
            changes += sum(len(chunk) for chunk in batches)
        return {
            "create_s": create_s,
            "changes_per_s": changes / apply_s,
            "changes_per_cpu_s": changes / apply_cpu,
        }
    finally:
        store.close()


def _durability() -> str:
    """The journal mode and synchronous level the SQLite store sets, as a file database reports."""
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(f"sqlite:///{Path(tmp) / 'probe.db'}")
        try:
            mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
            level = store._db.execute("PRAGMA synchronous").fetchone()[0]
        finally:
            store.close()
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return f"journal_mode={mode}, synchronous={names.get(level, level)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--store", choices=["sqlite", "memory", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        makers: dict[str, Callable[[], Store]] = {
            "memory": lambda: MemoryStore(record_calls=False),
            "sqlite": lambda: SQLiteStore(f"sqlite:///{Path(tmp) / 'bench.db'}"),
        }
        for name, make in makers.items():
            if args.store not in (name, "both"):
                continue
            result = bench(make, args.steps, args.batch)
            print(
                f"{name:7s} steps={args.steps} batch={args.batch} "
                f"create_task={result['create_s'] * 1000:.0f}ms "
                f"apply={result['changes_per_s']:,.0f} changes/s "
                f"({result['changes_per_cpu_s']:,.0f} per CPU second) "
                f"= {3e6 / result['changes_per_s']:.1f} µs/step"
            )
    print(f"sqlite durability: {_durability()}")


if __name__ == "__main__":
    main()
