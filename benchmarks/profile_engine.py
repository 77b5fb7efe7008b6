"""Where an engine step's CPU goes: the memory-store engine with handlers run inline.

    python benchmarks/profile_engine.py [--shape fan|chain] [--steps 1000] [--profile 30]

With the executor running each job on the thread that submits it, the whole run happens on one
thread: its CPU time per step is the engine's cost without any thread hand-over, and cProfile
(``--profile N`` prints the top N functions by own time, over three runs) sees all of it. The
profile inflates call-heavy code several times over: read its shares, not its microseconds.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_engine import chain, fan, make_engine

from tasker_core import TaskRequest
from tasker_core.orchestration.executor import Executor, Job
from tasker_core.templates import template_from_mapping


def _submit_inline(self: Executor, jobs: Sequence[Job]) -> None:
    for job in jobs:
        self._run_one(job)  # reports to the inbox; the driver's next tick records it


def run_once(shape: dict[str, list[str]], profile: cProfile.Profile | None = None) -> float:
    """CPU seconds of one ``engine.run`` on this thread (template and engine built outside)."""
    engine = make_engine("memory://")
    steps = [{"name": n, "handler": "bench.noop", "depends_on": d} for n, d in shape.items()]
    engine.register_template(
        template_from_mapping(
            {"namespace": "bench", "name": "p", "version": "1.0.0", "steps": steps}
        )
    )
    engine.list_tasks(limit=1)
    t0 = time.thread_time()
    if profile is not None:
        profile.enable()
    engine.run(TaskRequest("bench", "p"))
    if profile is not None:
        profile.disable()
    spent = time.thread_time() - t0
    engine.close()
    return spent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=("fan", "chain"), default="fan")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--profile", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    Executor.submit_many = _submit_inline  # type: ignore[method-assign]
    shape = fan(args.steps) if args.shape == "fan" else chain(args.steps)
    n = len(shape)
    per_step = sorted(run_once(shape) / n * 1e6 for _ in range(args.repeats))
    print(
        f"{args.shape} of {n} steps, handlers inline: CPU µs per step, best three of "
        f"{args.repeats}: " + ", ".join(f"{x:.1f}" for x in per_step[:3])
    )
    if args.profile:
        profile = cProfile.Profile()
        for _ in range(3):
            run_once(shape, profile)
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
