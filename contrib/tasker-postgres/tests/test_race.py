"""Race: many threads hammer claims on a few ready steps; each attempt is claimed exactly once.

Every claimer settles what it got as a failure due for retry at once (so the same steps come
back again and again) until the last allowed attempt, which succeeds. Claims, settles and the
retries they enqueue all race; the database must hand each (step, attempt) to one claimer only.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from pytest_tasker.history import assert_legal_history
from tasker_core import StepError, TaskRequest

from tasker_postgres.harness import Harness
from tasker_postgres.store import PostgresStore
from tasker_postgres.work import Settlement, WorkTable

STEPS = 4
ATTEMPTS = 5
THREADS = 12


def test_each_attempt_is_claimed_once(pg_url: str) -> None:
    harness = Harness(pg_url)
    harness.handlers["noop"] = lambda ctx: None
    retry = {"retryable": True, "max_attempts": ATTEMPTS}
    harness.templates.append(
        {
            "namespace": "race",
            "name": "few",
            "version": "1.0.0",
            "steps": [{"name": f"s{i}", "handler": "noop", "retry": retry} for i in range(STEPS)],
        }
    )
    engine = harness.engine()
    task_id = engine.submit(TaskRequest("race", "few")).id
    stores = [PostgresStore(pg_url, pool_size=2, migrate=False) for _ in range(THREADS)]
    tables = [WorkTable(s) for s in stores]
    tables[0].activate(
        [task_id],
        time.time(),
        stop_on_failure=False,
        graph_for=lambda t: [([], [])] * STEPS,
        on_error=lambda *a: None,
    )
    claimed: Counter[tuple[str, int]] = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []
    done = threading.Event()

    def hammer(table: WorkTable, owner: str) -> None:
        try:
            while not done.is_set():
                now = time.time()
                claims = table.claim(owner, 2, now + 30, now)
                if not claims:
                    time.sleep(0.001)
                    continue
                outcomes = []
                for c in claims:
                    with lock:
                        claimed[(c.name, c.attempt)] += 1
                    last = c.attempt == ATTEMPTS
                    outcomes.append(
                        Settlement(
                            c.task_id,
                            c.name,
                            c.attempt,
                            last,
                            results=c.attempt,
                            error=None if last else StepError("Race", "again"),
                            retry_at=None if last else now,
                            reason="race",
                        )
                    )
                result = table.settle(outcomes, time.time(), stop_on_failure=False, owner=owner)
                assert result.lost == [], result.lost
                if result.tasks.get(task_id) == "complete":
                    done.set()
        except BaseException as exc:
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=hammer, args=(t, f"w{i}")) for i, t in enumerate(tables)]
    for t in threads:
        t.start()
    done.wait(60)
    done.set()
    for t in threads:
        t.join(10)
    try:
        assert not errors, errors
        assert engine.get_task(task_id).state == "complete"
        expected = {(f"s{i}", a): 1 for i in range(STEPS) for a in range(1, ATTEMPTS + 1)}
        assert dict(claimed) == expected
        steps = engine.get_steps(task_id)
        assert {(s.state, s.attempts) for s in steps} == {("complete", ATTEMPTS)}
        finals: dict[str | None, str] = {None: "complete"}
        finals.update({s.name: s.state for s in steps})
        assert_legal_history(engine.transitions(task_id), finals)
    finally:
        for s in stores:
            s.close()
        harness.close()
