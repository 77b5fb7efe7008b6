"""Instructions per engine step, counted by valgrind: a figure the shared machine cannot blur.

    python benchmarks/instructions_engine.py [--shape fan|chain] [--tree PATH] [--sinks log]

Runs the memory-store engine with handlers inline (as ``profile_engine.py`` does: one thread,
no hand-overs) under ``valgrind --tool=callgrind`` twice, for 2 and for 7 runs of the same
task, and prints the difference per step: start-up, imports and building the template cancel
out. Hash randomisation is fixed (``PYTHONHASHSEED=0``) so dict layouts repeat; two runs of
the same tree agree within ~0.1%. ``--tree`` counts another checkout (its ``tasker_core`` must
be built), for before/after pairs. Needs valgrind; takes about a minute.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import sys
sys.path.insert(0, {bench!r})
import profile_engine as pe
from bench_engine import chain, fan, make_engine
from tasker_core import TaskRequest
from tasker_core.orchestration.executor import Executor
from tasker_core.templates import template_from_mapping

Executor.submit_many = pe._submit_inline
shape = {shape}(1000)
steps = [{{"name": n, "handler": "bench.noop", "depends_on": d}} for n, d in shape.items()]
template = template_from_mapping(
    {{"namespace": "bench", "name": "p", "version": "1.0.0", "steps": steps}}
)
engine = make_engine("memory://", {sinks!r})
engine.register_template(template)
engine.list_tasks(limit=1)
for i in range(int(sys.argv[1])):
    engine.run(TaskRequest("bench", "p", context={{"i": i}}))
engine.bus.flush(timeout=60)  # the sinks' threads' work counts too
print(len(shape))
"""


def count(tree: Path, shape: str, runs: int, sinks: Sequence[str] = ()) -> tuple[int, int]:
    """(instructions, steps per run) of a child process running ``runs`` tasks."""
    code = _CHILD.format(bench=str(ROOT / "benchmarks"), shape=shape, sinks=list(sinks))
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=str(tree))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        done = subprocess.run(
            [*command, sys.executable, "-c", code, str(runs)],
            cwd=tmp,  # not a checkout: ``tree`` alone provides tasker_core
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1)), int(done.stdout.split()[-1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", choices=("fan", "chain"), default="fan")
    parser.add_argument("--tree", type=Path, default=ROOT)
    parser.add_argument(
        "--sinks", default="", help="event sinks, comma-separated (default none: no events)"
    )
    args = parser.parse_args(argv)
    sinks = [s for s in args.sinks.split(",") if s]
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    few, steps = count(args.tree, args.shape, 2, sinks)
    many, _ = count(args.tree, args.shape, 7, sinks)
    per_step = (many - few) / (5 * steps)
    with_sinks = f", sinks {','.join(sinks)}" if sinks else ""
    print(
        f"{args.shape} of {steps} steps{with_sinks}, {args.tree}: "
        f"{per_step:,.0f} instructions per step"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
