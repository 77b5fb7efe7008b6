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

    @property
    def ratio(self) -> float:
        return self.reference / self.native


def best_of(repeats: int, run: Callable[[], object]) -> float:
    """The fastest of ``repeats`` timed runs, in seconds."""
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best


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


def ref_build(names: Sequence[str], deps: Sequence[Sequence[str]]) -> AnyGraph:
    return ref.RefGraph(names, deps, ref.ref_step_machine())


def measure(quick: bool) -> list[Row]:
    repeats = 3 if quick else 5
    calls = 20_000 if quick else 200_000
    sizes = [1_000, 10_000] if quick else [1_000, 10_000, 100_000]
    rows = [
        Row(
            "transition check",
            "1 call",
            "per call",
            best_of(repeats, transition_check(native.STEP_MACHINE, calls)) / calls,
            best_of(repeats, transition_check(ref.ref_step_machine(), calls)) / calls,
        )
    ]
    for n in sizes:
        names, deps = layered_dag(n, width=max(10, math.isqrt(n)), max_parents=3, seed=n)
        size = f"{n:,} steps, {sum(map(len, deps)):,} edges"
        # The slow reference gets fewer repeats on the largest input; it is not what we tune.
        ref_repeats = 1 if n >= 100_000 else repeats
        rows.append(
            Row(
                "build + validate + solve",
                size,
                "per graph",
                best_of(repeats, build_and_solve(native.WorkflowGraph, names, deps)),
                best_of(ref_repeats, build_and_solve(ref_build, names, deps)),
            )
        )
        rows.append(
            Row(
                "incremental completion",
                size,
                "all steps",
                best_of(repeats, complete_in_order(native.WorkflowGraph(names, deps))),
                best_of(ref_repeats, complete_in_order(ref_build(names, deps))),
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
            f"| {r.ratio:,.0f}x |"
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
        if r.size.startswith("100,000"):
            verdict(r.native < 0.1, f"{r.name} of 100k steps < 100 ms ({seconds(r.native)})")
        if r.size.startswith(("10,000", "100,000")):
            verdict(
                r.ratio >= 20, f"{r.name}, {r.size.split(',')[0]}: native >= 20x ({r.ratio:,.0f}x)"
            )
    return found


def machine_note() -> str:
    return (
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs (shared), "
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
