"""Step handlers for the crash test's worker processes: each records when it ran, where.

Every execution appends ``start`` and ``end`` lines (JSON) to ``$CRASH_RECORDS/<pid>.jsonl``;
the test reads them back to prove that no step ran in two places at once.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

from tasker_core import PermanentError, RetryableError, StepContext


def _record(kind: str, ctx: StepContext) -> None:
    line = json.dumps(
        {
            "kind": kind,
            "task": ctx.task_id,
            "step": ctx.step,
            "attempt": ctx.attempt,
            "pid": os.getpid(),
            "t": time.time(),
        }
    )
    path = os.path.join(os.environ["CRASH_RECORDS"], f"{os.getpid()}.jsonl")
    with open(path, "a", encoding="utf-8") as out:
        out.write(line + "\n")


def work(ctx: StepContext) -> dict[str, Any]:
    _record("start", ctx)
    time.sleep(random.uniform(0.01, 0.04))
    _record("end", ctx)
    return {"step": ctx.step, "parents": sorted(ctx.dependencies)}


def flaky(ctx: StepContext) -> dict[str, Any]:
    _record("start", ctx)
    time.sleep(random.uniform(0.01, 0.03))
    _record("end", ctx)
    if ctx.attempt == 1:
        raise RetryableError("the first attempt always fails", retry_after=0.05)
    return {"step": ctx.step, "attempt": ctx.attempt}


def doomed(ctx: StepContext) -> None:
    _record("start", ctx)
    _record("end", ctx)
    raise PermanentError("this step cannot succeed")
