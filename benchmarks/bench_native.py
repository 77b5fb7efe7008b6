"""Benchmark the native core against the pure-Python reference model on the same inputs.

    python benchmarks/bench_native.py [--quick]

Prints a markdown table (best of k repeats, time.perf_counter, garbage collector paused while
timing) and whether the targets of DESIGN.md section 12 hold. Needs the built tasker-core and
the pytest-tasker kit (for the reference model and the graph generator).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pytest_tasker import reference as ref
from pytest_tasker.strategies import layered_dag

import tasker_core._native as native

AnyGraph = native.WorkflowGraph | ref.RefGraph
AnyMachine = native.StateMachine | ref.RefStateMachine


@dataclass
class Row:
    """One benchmark on one input: seconds per unit for both implementations."""

    name: str
    size: str
    unit: str
    native: float
    reference: float
    steps: int = 0

    @property
    def ratio(self) -> float:
        return self.reference / self.native


def timed(run: Callable[[], object]) -> float:
    """One run in seconds, the garbage collector paused (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def best_of(
    native_run: Callable[[], object],
    ref_run: Callable[[], object],
    repeats: int,
    ref_repeats: int,
) -> tuple[float, float]:
    """Best time of each, the runs interleaved so that both see the same load on a shared
    machine (the ratio is the figure that matters)."""
    native_best = ref_best = math.inf
    for k in range(max(repeats, ref_repeats)):
        if k < repeats:
            native_best = min(native_best, timed(native_run))
        if k < ref_repeats:
            ref_best = min(ref_best, timed(ref_run))
    return native_best, ref_best


def transition_check(machine: AnyMachine, calls: int) -> Callable[[], object]:
    """``calls`` legal checks (pending -> enqueued), the way the kernel asks before each move."""
    source, target = machine.state_code("pending"), machine.state_code("enqueued")
    check = machine.check

    def run() -> None:
        for _ in range(calls):
            check(source, target)

    return run


def build_and_solve(
    build: Callable[[Sequence[str], Sequence[Sequence[str]]], AnyGraph],
    names: list[str],
    deps: list[list[str]],
) -> Callable[[], object]:
    """Build + validate the graph, then the full readiness solve and the topological order."""
    n = len(names)
    columns = ([0] * n, [0] * n, [3] * n, [True] * n, [0.0] * n, [False] * n)

    def run() -> None:
        graph = build(names, deps)
        graph.ready(*columns, 0.0)
        graph.topological_order()

    return run


def complete_in_order(graph: AnyGraph) -> Callable[[], object]:
    """A fresh tracker, then mark_satisfied for every step in topological order."""
    order = graph.topological_order()

    def run() -> None:
        tracker = graph.tracker()
        mark = tracker.mark_satisfied
        for step in order:
            mark(step)
        assert tracker.all_satisfied()

    return run


def complete_by_level(graph: AnyGraph) -> Callable[[], object]:
    """A fresh tracker, then one mark_satisfied_many per topological level, in level order
    (a batch of everything that finished together, as a scheduler tick would hand over)."""
    levels = graph.levels()
    batches: list[list[int]] = [[] for _ in range(max(levels, default=-1) + 1)]
    for step in graph.topological_order():
        batches[levels[step]].append(step)

    def run() -> None:
        tracker = graph.tracker()
        mark_many = tracker.mark_satisfied_many
        for batch in batches:
            mark_many(batch)
        assert tracker.all_satisfied()

    return run


def ref_build(names: Sequence[str], deps: Sequence[Sequence[str]]) -> AnyGraph:
    return ref.RefGraph(names, deps, ref.ref_step_machine())


def measure(quick: bool) -> list[Row]:
    repeats = 3 if quick else 7
    calls = 20_000 if quick else 200_000
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    native_check, ref_check = best_of(
        transition_check(native.STEP_MACHINE, calls),
        transition_check(ref.ref_step_machine(), calls),
        repeats,
        repeats,
    )
    rows = [Row("transition check", "1 call", "per call", native_check / calls, ref_check / calls)]
    for n in sizes:
        names, deps = layered_dag(n, width=max(10, math.isqrt(n)), max_parents=3, seed=n)
        size = f"{n:,} steps, {sum(map(len, deps)):,} edges"
        # The slow reference gets fewer repeats on the largest input; it is not what we tune.
        ref_repeats = 3 if n >= 100_000 else repeats
        built = best_of(
            build_and_solve(native.WorkflowGraph, names, deps),
            build_and_solve(ref_build, names, deps),
            repeats,
            ref_repeats,
        )
        rows.append(Row("build + validate + solve", size, "per graph", *built, n))
        completed = best_of(
            complete_in_order(native.WorkflowGraph(names, deps)),
            complete_in_order(ref_build(names, deps)),
            repeats,
            ref_repeats,
        )
        rows.append(Row("incremental completion", size, "all steps", *completed, n))
        batched = best_of(
            complete_by_level(native.WorkflowGraph(names, deps)),
            complete_by_level(ref_build(names, deps)),
            repeats,
            ref_repeats,
        )
        rows.append(
            Row(
                "incremental completion, batched by topological level",
                size,
                "all steps",
                *batched,
                n,
            )
        )
    return rows


def seconds(value: float) -> str:
    if value < 1e-3:
        return f"{value * 1e6:.3f} µs"
    if value < 1:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.2f} s"


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | input | native | reference | reference / native |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} ({r.unit}) | {r.size} | {seconds(r.native)} | {seconds(r.reference)} "
            f"| {r.ratio:,.1f}x |"
        )
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    """The targets of DESIGN.md section 12 that this run can judge."""
    found: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        found.append(f"- {'PASS' if ok else 'FAIL'}: {text}")

    check = rows[0]
    verdict(check.native < 1e-6, f"transition check < 1 µs/call ({seconds(check.native)})")
    for r in rows[1:]:
        if r.steps >= 100_000:
            verdict(r.native < 0.1, f"{r.name}, {r.steps:,} steps: < 100 ms ({seconds(r.native)})")
        if r.steps >= 10_000:
            verdict(r.ratio >= 20, f"{r.name}, {r.steps:,} steps: native >= 20x ({r.ratio:,.1f}x)")
    return found


def machine_note() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.1f} at the end, "
        f"native module {native.__file__}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help="smaller inputs and fewer repeats (a smoke run)"
    )
    args = parser.parse_args(argv)
    rows = measure(args.quick)
    print(table(rows))
    print()
    print("\n".join(verdicts(rows)))
    print()
    print(machine_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
