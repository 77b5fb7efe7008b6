"""``tasker worker``: one of any number of processes sharing the work of one Postgres database.

No process is special. The loop of each:

- **claim** enqueued steps (``FOR UPDATE SKIP LOCKED``; the attempt is counted and the step leased
  in the same statement) and run their handlers on the kernel's executor (threads for sync
  handlers, an event loop for async ones);
- **settle** finished attempts in one transaction per batch, under each task's row lock: record
  the outcome (compare-and-set, fenced by attempt), enqueue the children it unblocked, finalize
  the task from its counters — and claim more work in the same transaction, so a chain's next
  step starts without another commit;
- **activate** tasks that need it (new, woken from a backoff wait, changed by an operator, with
  due retries): load the task's step graph once, dispatch what is ready, finalize;
- **heartbeat** (a thread) renews the leases of running steps; **reap** fails steps whose lease
  expired (their worker died), counting the lost attempt and scheduling a retry as the policy
  allows.

Who ticks: the loop thread and, while it runs, any pool thread that has just reported a step's
outcome and found no job waiting. That thread settles the outcome and starts the next steps
itself, so a chain step costs one thread hand-over (the job to a pool thread) instead of two
(job from the loop thread, outcome back to it): each is a futex wake plus a GIL hand-over, about
0.1 ms here. Ticks are serialized by one lock: the loop's connection and bookkeeping are only
ever touched by one thread at a time.

Idle workers block on LISTEN/NOTIFY (a listener thread wakes the loop thread), with the poll
interval as the fallback and the earliest known retry/wake time as the deadline, so delayed work
becomes visible on time without busy polling. Async outcomes wake the loop thread too (the event
loop thread never ticks). A transient database error in a pool thread's tick leaves its outcomes
pending for the loop thread, which backs off and reconnects; pool threads never sleep.

SIGTERM stops claiming, lets running handlers finish for up to ``grace`` seconds, settles them,
and releases the rest (they are retried by another worker at once, the interrupted attempt given
back).

Lifecycle events are published after each transaction commits, from what it recorded and what
the database reported deciding (:mod:`tasker_postgres.publish`).
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attrs import frozen
from tasker_core import (
    JSON,
    Engine,
    Executor,
    Job,
    StepContext,
    StepError,
    StepOutcome,
    StepTemplate,
    Task,
    TaskTemplate,
    build_graph,
    new_owner_id,
    retry_delay,
    timeout_outcome,
)

from tasker_postgres.db import is_transient
from tasker_postgres.notify import Listener
from tasker_postgres.publish import Publisher
from tasker_postgres.store import PostgresStore
from tasker_postgres.work import ClaimedStep, Expired, Settlement, SettleResult, WorkTable

__all__ = ["Worker", "WorkerOptions"]

log = logging.getLogger("tasker.worker")

Key = tuple[str, str]
_TASK_CACHE = 10_000
STRAGGLER_CHECK = 0.05
"""Seconds: while steps run, the loop thread takes reported outcomes at least this often. A pool
thread that reports an outcome just as another thread's tick queued a job runs that job instead
of ticking; its outcome must not wait for the next idle thread or the poll interval."""
ACTIVATION_RECHECK = 0.05
"""Seconds: how soon a worker looks again at a due task it could not activate (see
:meth:`Worker._activate`)."""


@frozen
class WorkerOptions:
    """How one worker process behaves (defaults come from the ``execution`` config section)."""

    concurrency: int = 8
    batch_size: int = 100
    lease: float = 30.0
    heartbeat_interval: float = 10.0
    poll_interval: float = 1.0
    grace: float = 30.0
    stop_on_failure: bool = False
    claim_on_settle: bool = True
    """Claim new work in the settle transaction (off only to measure cross-worker latency)."""
    pool_ticks: bool = True
    """Let a pool thread that finished a step tick (off only to measure what that saves)."""

    @classmethod
    def from_engine(cls, engine: Engine, **overrides: Any) -> WorkerOptions:
        ex = engine.config.execution
        values: dict[str, Any] = {
            "concurrency": ex.max_concurrent_steps,
            "batch_size": ex.batch_size,
            "lease": ex.lease,
            "heartbeat_interval": ex.heartbeat_interval,
            "poll_interval": ex.poll_interval,
            "stop_on_failure": ex.on_failure == "stop",
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class _Running:
    __slots__ = ("claim", "job")

    def __init__(self, claim: ClaimedStep, job: Job) -> None:
        self.claim = claim
        self.job = job


class _Workflow:
    """A template with what the worker needs of it, resolved once."""

    def __init__(self, template: TaskTemplate, default_timeout: float) -> None:
        self.template = template
        self.steps: dict[str, StepTemplate] = {s.name: s for s in template.steps}
        self.default_timeout = default_timeout
        self._graph: str | None = None

    def graph(self) -> str:
        """The step graph as ``tasker_load_graph_v5`` takes it (built and encoded once: a
        template of thousands of steps would otherwise cost milliseconds per activation)."""
        if self._graph is None:
            g = build_graph([(s.name, s.depends_on) for s in self.template.steps])
            pairs = [[g.parents(i), g.children(i)] for i in range(len(g))]
            self._graph = json.dumps(pairs, separators=(",", ":"))
        return self._graph

    def timeout(self, step: str) -> float:
        spec = self.steps[step].timeout
        return spec if spec is not None else self.default_timeout


class Worker:
    """Runs steps from the database until :meth:`stop` (or SIGTERM via the CLI)."""

    def __init__(self, engine: Engine, options: WorkerOptions, owner: str | None = None) -> None:
        if not isinstance(engine.store, PostgresStore):
            raise TypeError(
                f"tasker worker needs a Postgres store (store.url postgresql://...), "
                f"got {type(engine.store).__name__} ({getattr(engine.store, 'scheme', '?')})"
            )
        self.engine = engine
        self.options = options
        self.owner = owner or engine.config.execution.worker_id or new_owner_id()
        self.db = WorkTable(engine.store, direct=True)  # the loop's own connection
        self._hb_db = WorkTable(engine.store)  # the heartbeat thread's: pooled
        self.clock = engine.clock
        self._outcomes: deque[StepOutcome] = deque()
        """Outcomes reported by the executor, drained by whichever thread ticks."""
        self._notes: deque[str] = deque()
        """NOTIFY payloads from the listener thread (``w``: work, ``t``: tasks, ``""``: both)."""
        self._wake = threading.Event()
        """Set when the loop thread must look again before its planned wake-up time."""
        self._tick_lock = threading.Lock()
        """Held by whichever thread ticks: guards ``db`` and all the loop's bookkeeping."""
        self._ticking = False
        """Whether pool threads may tick: set while the loop runs (guarded by the tick lock)."""
        self._loop_wakes_at = 0.0
        self._db_trouble = False
        """A pool thread's tick met a transient error: only the loop thread ticks until one of
        its ticks succeeds (it backs off; pool threads must not hammer a dead server)."""
        self._pool_error: BaseException | None = None
        self._executor = Executor(options.concurrency, self._deliver, on_idle=self._tick_from_pool)
        self._running: dict[Key, _Running] = {}
        self._running_lock = threading.Lock()
        self._pending: list[Settlement] = []
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._listener = Listener(engine.store.conninfo)
        self._workflows: dict[str, _Workflow] = {}
        self._tasks: dict[str, Task] = {}
        self._handlers: dict[str, tuple[Callable[..., Any], bool]] = {}
        self._broken: dict[str, float] = {}  # task id -> retry time of a failed activation
        self._look_for_work = True
        self._look_for_tasks = True
        self._next_reap = 0.0
        self._next_wake: float | None = None
        self.stats = {"claimed": 0, "settled": 0, "lost": 0, "reaped": 0, "released": 0}
        self.publish = Publisher(engine.bus, self._known_tasks)

    # -- lifecycle --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop (thread- and signal-safe): finish or release, then return."""
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        """The loop; returns after :meth:`stop` once nothing is held any more."""
        o = self.options
        log.info(
            "worker %s started: concurrency %d, lease %.1fs, heartbeat %.1fs, poll %.1fs",
            self.owner,
            o.concurrency,
            o.lease,
            o.heartbeat_interval,
            o.poll_interval,
        )
        self._listener.connected()
        threads = [
            threading.Thread(target=self._listen, name="tasker-listen", daemon=True),
            threading.Thread(target=self._heartbeat, name="tasker-heartbeat", daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            self._loop()
            self._shutdown()
        finally:
            self._stopped.set()
            self._listener.close()
            self.db.close()
            self._executor.shutdown(wait=False)
            log.info("worker %s stopped: %s", self.owner, self.stats)

    def _loop(self) -> None:
        backoff = 0.05
        lock, wake = self._tick_lock, self._wake
        polled = False
        poll_due = self.clock.now() + self.options.poll_interval
        with lock:
            self._ticking = True
        try:
            while not self._stopping.is_set():
                wake.clear()  # before looking: a wake-up from here on is not lost
                try:
                    with lock:
                        if polled:  # the polling fallback
                            self._look_for_work = self._look_for_tasks = True
                        self._tick()
                        self._db_trouble = False
                        now = self.clock.now()
                        self._loop_wakes_at = self._wakes_at(now)
                        block = max(0.0, self._loop_wakes_at - now)
                        # Only a sleep to the planned wake-up is the polling fallback; a look
                        # for stragglers (see STRAGGLER_CHECK) merely takes reported outcomes.
                        full_sleep = not self._running or block <= STRAGGLER_CHECK
                        if not full_sleep:
                            block = STRAGGLER_CHECK
                    backoff = 0.05
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning(
                        "database unavailable (%s); retrying in %.2fs", _one_line(exc), backoff
                    )
                    with lock:
                        self._look_for_work = self._look_for_tasks = True
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                self._raise_pool_error()
                polled = False
                if block > 0 and not self._outcomes and not self._notes:
                    woke = wake.wait(block)  # a pool thread may have missed the lock
                    now = self.clock.now()
                    # Polling fallback as before: a wait of a whole poll interval, however many
                    # straggler looks it was cut into, with nothing waking the loop.
                    polled = not woke and (full_sleep or now >= poll_due)
                    if woke or polled:
                        poll_due = now + self.options.poll_interval
                self._raise_pool_error()
        finally:
            with lock:  # a pool thread's tick in progress ends before the loop does
                self._ticking = False

    def _raise_pool_error(self) -> None:
        error = self._pool_error
        if error is not None:
            self._pool_error = None
            raise error

    def _deliver(self, outcome: StepOutcome) -> None:
        """The executor's ``on_done``: queue the outcome; wake the loop thread unless the pool
        thread that reported it ticks next (async outcomes come from the event loop thread)."""
        self._outcomes.append(outcome)
        entry = self._running.get((outcome.task_id, outcome.step))
        if entry is None or entry.job.is_async or not (self._ticking and self.options.pool_ticks):
            self._wake.set()

    def _tick_from_pool(self) -> None:
        """The executor's ``on_idle``: a pool thread with nothing to run ticks while outcomes
        wait.

        Takes the tick lock without waiting: if another thread holds it, that thread looks at
        the outcomes again after releasing it (the loop thread before sleeping, a pool thread in
        this loop), so no outcome is left behind.
        """
        if not self.options.pool_ticks:
            return
        outcomes, lock = self._outcomes, self._tick_lock
        while outcomes and lock.acquire(blocking=False):
            try:
                if not self._ticking or self._db_trouble or self._pool_error is not None:
                    self._wake.set()  # the loop thread (or shutdown) takes the outcomes
                    return
                self._tick()
                if self._wakes_at(self.clock.now()) < self._loop_wakes_at:
                    self._wake.set()  # the loop thread's planned sleep is now too long
            except Exception as exc:
                if is_transient(exc):  # the outcomes stay pending; the loop retries them
                    log.warning("database unavailable (%s); left to the loop", _one_line(exc))
                    self._look_for_work = self._look_for_tasks = True
                    self._db_trouble = True
                else:  # handed to the loop thread, which raises it
                    self._pool_error = exc
                self._wake.set()
                return
            finally:
                lock.release()

    def _tick(self) -> None:
        """Collect, time out, settle and claim, activate, reap (the caller holds the lock)."""
        self._collect()
        now = self.clock.now()
        self._check_timeouts(now)
        if self._pending or (self._look_for_work and self._free() > 0):
            self._settle_and_claim(now)
        if self._look_for_tasks or (self._next_wake is not None and now >= self._next_wake):
            self._activate(now)
        if now >= self._next_reap:
            self._next_reap = now + self.options.heartbeat_interval
            self._reap(now)

    # -- waiting ----------------------------------------------------------------------------------

    def _free(self) -> int:
        return self.options.concurrency - len(self._running)

    def _wakes_at(self, now: float) -> float:
        """When the loop thread must look again, at the latest (the caller holds the tick lock).

        An absolute time, so that a pool thread's tick can tell whether it made the loop's
        planned sleep too long: only an earlier deadline wakes it.
        """
        if self._pending or self._look_for_tasks or (self._look_for_work and self._free() > 0):
            return now
        at = min(now + self.options.poll_interval, self._next_reap)
        if self._next_wake is not None:
            at = min(at, self._next_wake)
        for entry in self._running.values():
            if entry.job.timeout is not None:
                at = min(at, entry.job.started_at + entry.job.timeout)
        return at

    def _collect(self) -> None:
        """Take the waiting outcomes and NOTIFY payloads (the caller holds the tick lock)."""
        notes, outcomes = self._notes, self._outcomes
        while notes:  # other threads append concurrently; popleft is atomic
            note = notes.popleft()
            if "w" in note or note == "":
                self._look_for_work = True
            if "t" in note or note == "":
                self._look_for_tasks = True
        while outcomes:
            self._outcome(outcomes.popleft())

    def _listen(self) -> None:
        # At most a second per wait: closing the listener waits for the wait in progress.
        timeout = min(self.options.poll_interval, 1.0)
        while not self._stopped.is_set():
            payloads = self._listener.receive(timeout)
            if payloads:
                self._notes.append("".join(sorted(payloads)))
                self._wake.set()

    # -- running steps ----------------------------------------------------------------------------

    def _outcome(self, outcome: StepOutcome) -> None:
        key = (outcome.task_id, outcome.step)
        with self._running_lock:
            entry = self._running.get(key)
            if entry is None or entry.job.attempt != outcome.attempt:
                return  # a late answer of an attempt abandoned on timeout
            del self._running[key]
        self._pending.append(self._settlement(entry.claim, outcome))

    def _check_timeouts(self, now: float) -> None:
        for key, entry in list(self._running.items()):
            job = entry.job
            if job.timeout is not None and now >= job.started_at + job.timeout:
                with self._running_lock:
                    self._running.pop(key, None)
                self._executor.abandon(job)
                log.warning("step %s/%s timed out after %.1fs", key[0], key[1], job.timeout)
                self._pending.append(self._settlement(entry.claim, timeout_outcome(job, now)))

    def _settlement(self, claim: ClaimedStep, outcome: StepOutcome) -> Settlement:
        meta: dict[str, JSON] = {"attempt": outcome.attempt, "duration": outcome.duration}
        if outcome.ok:
            return Settlement(
                claim.task_id,
                claim.name,
                claim.attempt,
                True,
                outcome.results,
                reason="handler returned",
                metadata=meta,
                duration=outcome.duration,
            )
        error = outcome.error or StepError("Error", "unknown failure")
        retry_at = self._retry_at(
            claim.task_id,
            claim.name,
            claim.attempt,
            claim.max_attempts,
            claim.retryable and error.retryable,
            outcome.retry_after,
        )
        meta["retry_at"] = retry_at
        return Settlement(
            claim.task_id,
            claim.name,
            claim.attempt,
            False,
            error=error,
            retry_at=retry_at,
            reason=f"{error.error_class}: {error.message}",
            metadata=meta,
            duration=outcome.duration,
        )

    def _retry_at(
        self,
        task_id: str,
        step: str,
        attempt: int,
        max_attempts: int,
        retryable: bool,
        retry_after: float | None,
    ) -> float | None:
        if not retryable or attempt >= max_attempts:
            return None
        base = max_delay = None
        task = self._tasks.get(task_id)
        if task is not None:
            spec = self._workflow(task).steps.get(step)
            if spec is not None:
                base, max_delay = spec.retry.backoff_base, spec.retry.backoff_max
        b = self.engine.config.backoff
        return self.clock.now() + retry_delay(
            attempt=attempt,
            base=base if base is not None else b.base,
            max_delay=max_delay if max_delay is not None else b.max,
            jitter=b.jitter,
            seed=b.seed,
            task_id=task_id,
            step=step,
            retry_after=retry_after,
        )

    def _settle_and_claim(self, now: float) -> None:
        o = self.options
        outcomes, self._pending = self._pending, []
        want = 0 if self._stopping.is_set() else min(self._free(), o.batch_size)
        until = now + o.lease
        try:
            if outcomes:
                result = self.db.settle(
                    outcomes,
                    now,
                    stop_on_failure=o.stop_on_failure,
                    owner=self.owner,
                    claim=want if o.claim_on_settle else 0,
                    until=until,
                )
                self._settled(outcomes, result, now)
                claims = result.claims
                if not o.claim_on_settle and want > 0:
                    claims = self.db.claim(self.owner, want, until, now)
            else:
                claims = self.db.claim(self.owner, want, until, now)
        except Exception:
            self._pending = outcomes + self._pending  # settle again once the database is back
            raise
        self._look_for_work = want > 0 and len(claims) >= want
        if claims:
            self._start(claims, now)

    def _settled(self, outcomes: Sequence[Settlement], result: SettleResult, now: float) -> None:
        """Bookkeeping and events after a settle committed."""
        self.stats["settled"] += len(outcomes) - len(result.lost)
        self.stats["lost"] += len(result.lost)
        for task_id, step in result.lost:
            log.warning(
                "step %s/%s: lease lost before its outcome was recorded; outcome discarded "
                "(another attempt owns the step)",
                task_id,
                step,
            )
        self.publish.settled(outcomes, result.lost, result.decisions, now)
        self._forget_finished(result.tasks)

    def _forget_finished(self, states: Mapping[str, str]) -> None:
        for task_id, state in states.items():
            if state in ("complete", "error"):
                log.info("task %s %s", task_id, "completed" if state == "complete" else "failed")
                self._tasks.pop(task_id, None)

    def _start(self, claims: Sequence[ClaimedStep], now: float) -> None:
        self.stats["claimed"] += len(claims)
        missing = sorted({c.task_id for c in claims if c.task_id not in self._tasks})
        if missing:
            self._cache(self.db.tasks(missing))
        for claim in claims:
            log.debug("claimed %s/%s attempt %d", claim.task_id, claim.name, claim.attempt)
            try:
                job = self._job(claim, now)
            except Exception as exc:  # no template/handler here: fail the attempt, visibly
                log.error("cannot run step %s/%s: %s", claim.task_id, claim.name, exc)
                error = StepError(type(exc).__name__, str(exc), retryable=True)
                outcome = StepOutcome(claim.task_id, claim.name, claim.attempt, False, error=error)
                self._pending.append(self._settlement(claim, outcome))
                continue
            with self._running_lock:
                self._running[(claim.task_id, claim.name)] = _Running(claim, job)
            self._executor.submit(job)
        self.publish.started(claims, now)

    def _job(self, claim: ClaimedStep, now: float) -> Job:
        task = self._tasks[claim.task_id]
        workflow = self._workflow(task)
        spec = workflow.steps[claim.name]
        found = self._handlers.get(claim.handler)
        if found is None:  # resolved once per handler; whether it is async asked once too
            fn = self.engine.registry.resolve_handler(claim.handler)
            found = self._handlers[claim.handler] = (fn, inspect.iscoroutinefunction(fn))
        fn, is_async = found
        ctx = StepContext(
            task_id=task.id,
            namespace=task.namespace,
            workflow=task.name,
            version=task.version,
            step=claim.name,
            attempt=claim.attempt,
            max_attempts=claim.max_attempts,
            context=task.context,
            step_config=dict(spec.config),
            dependencies=claim.dependencies,
            logger=None,  # built by StepContext when the handler first logs
            publish=functools.partial(self._custom_event, task, claim.name),
        )
        return Job(
            task.id,
            claim.name,
            claim.attempt,
            fn,
            ctx,
            workflow.timeout(claim.name),
            started_at=now,
            is_async=is_async,
        )

    def _workflow(self, task: Task) -> _Workflow:
        key = task.workflow_key
        found = self._workflows.get(key)
        if found is None:
            template = self.engine.get_template(task.namespace, task.name, task.version)
            found = _Workflow(template, self.engine.config.execution.step_timeout)
            self._workflows[key] = found
        return found

    # -- activation, leases -------------------------------------------------------------------

    def _activate(self, now: float) -> None:
        o = self.options
        self._look_for_tasks = False
        due = [
            t
            for t in self.db.due_tasks(now, o.batch_size, o.stop_on_failure)
            if self._broken.get(t, 0.0) <= now
        ]
        if due:

            def graph_for(task: Task) -> str:
                return self._workflow(task).graph()

            done = self.db.activate(
                due,
                now,
                stop_on_failure=o.stop_on_failure,
                graph_for=graph_for,
                on_error=self._activation_failed,
            )
            self._cache(done.tasks)
            self.publish.activated(done.decisions, now)
            for task_id, state in done.states.items():
                self._broken.pop(task_id, None)
                log.log(
                    logging.INFO if state in ("complete", "error") else logging.DEBUG,
                    "task %s activated: %s",
                    task_id,
                    state,
                )
                if state in ("complete", "error"):
                    self._tasks.pop(task_id, None)
            self._look_for_work = True
            self._look_for_tasks = len(due) >= o.batch_size
        wake = self.db.next_wake(now)
        if wake is not None and wake <= now:
            # Due but not taken by this pass: another worker holds the task (it is activating
            # it and commits shortly) or its activation failed here. Looking again on every
            # tick would spin (four round trips each) until that worker commits, a fan-out's
            # whole activation long, taking the CPU that worker needs.
            wake = now + ACTIVATION_RECHECK
        self._next_wake = wake

    def _activation_failed(self, task_id: str, exc: Exception) -> None:
        log.error("cannot activate task %s here: %s", task_id, exc)
        self._broken[task_id] = self.clock.now() + self.options.poll_interval * 10

    def _heartbeat(self) -> None:
        o = self.options
        while not self._stopped.wait(o.heartbeat_interval):
            with self._running_lock:
                keys = list(self._running)
            if not keys:
                continue
            try:
                held = self._hb_db.extend(self.owner, keys, self.clock.now() + o.lease)
            except Exception as exc:
                log.warning("heartbeat failed (%s); will retry", _one_line(exc))
                continue
            with self._running_lock:
                lost = [k for k in keys if k not in held and k in self._running]
            for task_id, step in lost:
                log.warning("lease on %s/%s lost: another worker may run it", task_id, step)

    def _reap(self, now: float) -> None:
        expired = self.db.expired(now, self.options.batch_size)
        if not expired:
            return
        outcomes = [self._lost_attempt(e) for e in expired]
        result = self.db.settle(
            outcomes,
            now,
            stop_on_failure=self.options.stop_on_failure,
            owner=self.owner,
            expired_before=now,
        )
        reaped = len(outcomes) - len(result.lost)
        self.stats["reaped"] += reaped
        if reaped:
            log.warning("failed %d step(s) whose worker stopped heartbeating", reaped)
        self.publish.settled(outcomes, result.lost, result.decisions, now)
        self._forget_finished(result.tasks)
        self._look_for_work = True

    def _lost_attempt(self, expired: Expired) -> Settlement:
        step = expired.step
        error = StepError(
            "LeaseExpired",
            f"worker {step.lease_owner} stopped heartbeating step {step.name!r} during "
            f"attempt {step.attempts}",
        )
        if step.task_id not in self._tasks:
            self._cache(self.db.tasks([step.task_id]))
        retry_at = self._retry_at(
            step.task_id, step.name, step.attempts, step.max_attempts, step.retryable, None
        )
        return Settlement(
            step.task_id,
            step.name,
            step.attempts,
            False,
            error=error,
            retry_at=retry_at,
            reason="lease lost",
            metadata={"attempt": step.attempts, "retry_at": retry_at},
        )

    # -- shutdown -------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        """Let running handlers finish (up to ``grace``), settle them, release the rest."""
        deadline = time.monotonic() + self.options.grace
        if self._running:
            log.info(
                "stopping: waiting up to %.1fs for %d running step(s)",
                self.options.grace,
                len(self._running),
            )
        while True:  # pool threads no longer tick (the loop has ended): outcomes wake us
            self._wake.clear()
            self._collect()
            left = deadline - time.monotonic()
            if not self._running or left <= 0:
                break
            if not self._outcomes:
                self._wake.wait(min(0.2, left))
        self._collect()
        release: list[Settlement] = []
        with self._running_lock:
            running, self._running = list(self._running.values()), {}
        now = self.clock.now()
        for entry in running:
            c = entry.claim
            error = StepError(
                "WorkerShutdown",
                f"worker {self.owner} stopped before the step "
                "finished; released for another worker",
            )
            release.append(
                Settlement(
                    c.task_id,
                    c.name,
                    c.attempt,
                    False,
                    error=error,
                    retry_at=now,
                    reason="released at shutdown",
                    metadata={"attempt": c.attempt},
                    bump=1,
                )
            )
        self.stats["released"] += len(release)
        outcomes = self._pending + release
        self._pending = []
        for attempt in range(5):
            if not outcomes:
                break
            try:
                at = self.clock.now()
                result = self.db.settle(
                    outcomes, at, stop_on_failure=self.options.stop_on_failure, owner=self.owner
                )
                self._settled(outcomes, result, at)
                break
            except Exception as exc:
                if not is_transient(exc) or attempt == 4:
                    log.error(
                        "could not record %d outcome(s) at shutdown: %s; their leases "
                        "will expire and they will be retried",
                        len(outcomes),
                        exc,
                    )
                    break
                time.sleep(0.5)

    # -- events ---------------------------------------------------------------------------------

    def _cache(self, tasks: Mapping[str, Task]) -> None:
        if len(self._tasks) + len(tasks) > _TASK_CACHE:
            self._tasks.clear()
        self._tasks.update(tasks)

    def _known_tasks(self, task_ids: Sequence[str]) -> Mapping[str, Task]:
        """The tasks (for the events' workflow fields); reads the ones not cached (loop only)."""
        missing = [t for t in task_ids if t not in self._tasks]
        if missing:
            self._cache(self.db.tasks(missing))
        return self._tasks

    def _custom_event(self, task: Task, step: str, name: str, payload: JSON) -> None:
        self.publish.custom(task, step, name, payload, self.clock.now())


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
