"""The coordinator: one thread's loop that owns every task this engine is running.

Each tick gathers finished attempts, due retries and ready steps into ONE batch and writes it in one
atomic store transaction: outcomes (``in_progress → complete | error``), dispatch (``→ enqueued``,
claimed from the queue, ``enqueued → in_progress`` under a lease) and finalization (task
transitions). The in-memory views move as the batch is built, so dispatch and finalization see
this tick's outcomes without another round trip. If the store refuses the batch (a compare-and-set
lost because another actor changed a task — an operator cancelling it, say), nothing of it was
written: the touched tasks are re-read from the store, and no job of the batch is started.

Who ticks: the thread that drives (``Engine.run``'s caller, or the background loop) and, while it
drives, any pool thread that has just reported an outcome and found no job waiting. Ticks are
serialized by one lock, so the coordinator's state is only ever touched by one thread at a time.
Letting the pool thread tick saves two thread hand-overs per round (outcome to the driver, jobs
back to the pool), which under the GIL cost more than a no-op step itself. The driver then only
wakes for what pool threads do not see: commands, timers, heartbeats, timeouts, async outcomes,
finished tasks, and its own deadline.
"""

from __future__ import annotations

import functools
import heapq
import logging
import math
import queue as stdqueue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import attrs

from tasker_core.clock import Clock
from tasker_core.config import Config
from tasker_core.events import EventBus
from tasker_core.fsm import TaskState
from tasker_core.handlers import StepContext
from tasker_core.models import (
    JSON,
    Claim,
    Event,
    Step,
    StepChange,
    StepError,
    StepOutcome,
    Task,
    TaskChange,
    WorkItem,
)
from tasker_core.orchestration.backoff import retry_delay
from tasker_core.orchestration.executor import Executor, Job, timeout_outcome
from tasker_core.orchestration.finalizer import Status
from tasker_core.orchestration.leases import owner_is_dead
from tasker_core.orchestration.task_run import (
    COMPLETE,
    ENQUEUED,
    ERROR,
    IN_PROGRESS,
    StepSpec,
    StepView,
    TaskRun,
    build_views,
    step_specs,
)
from tasker_core.protocols import Change, Queue, Store
from tasker_core.solver import WorkflowGraph
from tasker_core.templates import TaskTemplate

log = logging.getLogger("tasker.coordinator")

Key = tuple[str, str]

_SPECS_CACHED = 256
"""Templates whose step specs are kept (the cache starts over beyond that)."""

STRAGGLER_CHECK = 0.05
"""While steps are in flight the driver looks at the inbox at least this often (seconds).

A pool thread that reports an outcome and finds a job waiting (put there by another thread's tick
a moment earlier) runs that job instead of ticking; if the tick's thread had already looked at the
inbox, the outcome waits for the next thread to go idle. This bounds that wait, at the cost of
20 wake-ups a second of a thread with (almost always) nothing to do."""


class _InFlight:
    __slots__ = ("claim", "job", "run", "view")

    def __init__(self, run: TaskRun, view: StepView, job: Job, claim: Claim) -> None:
        self.run = run
        self.view = view
        self.job = job
        self.claim = claim


class _Batch:
    """Everything one tick decided, applied or dropped together (one per tick: a plain class)."""

    __slots__ = ("changes", "done_claims", "events", "finished", "starts", "touched")

    def __init__(self) -> None:
        self.changes: list[Change] = []
        self.events: list[Event] = []
        self.starts: list[_InFlight] = []
        """Jobs to submit once the batch is stored."""
        self.done_claims: list[Claim] = []
        """Queue claims of the attempts this batch records (acknowledged before dispatch)."""
        self.touched: set[str] = set()
        self.finished: list[str] = []


class Coordinator:
    """Drives tasks to completion; every public method is safe to call from any thread."""

    def __init__(
        self,
        *,
        store: Store,
        queue: Queue,
        bus: EventBus,
        clock: Clock,
        config: Config,
        owner: str,
        template_for: Callable[[Task], TaskTemplate],
        graph_for: Callable[[TaskTemplate], WorkflowGraph],
        handler_for: Callable[[str], Callable[..., Any]],
    ) -> None:
        self.store = store
        self.queue = queue
        self.bus = bus
        self.clock = clock
        self.config = config
        self.owner = owner
        self._template_for = template_for
        self._graph_for = graph_for
        self._handler_for = handler_for
        ex = config.execution
        self._max_in_flight = ex.max_concurrent_steps
        self._lease = ex.lease
        self._heartbeat_every = ex.heartbeat_interval
        self._poll = ex.poll_interval
        self._stop_on_failure = ex.on_failure == "stop"
        self._backoff = config.backoff
        self.runs: dict[str, TaskRun] = {}
        self._in_flight: dict[Key, _InFlight] = {}
        self._timers: list[tuple[float, str, int]] = []  # (retry time, task id, step index)
        self._specs: dict[int, tuple[TaskTemplate, dict[str, StepSpec]]] = {}
        self._inbox: deque[StepOutcome] = deque()
        """Outcomes reported by the executor, drained by whichever thread ticks."""
        self._commands: stdqueue.SimpleQueue[Callable[[], None]] = stdqueue.SimpleQueue()
        self._tick_lock = threading.Lock()
        self._wake = threading.Event()
        """Set when the driver must look again before its planned wake-up time."""
        self._driving = False
        self._driver_wakes_at = math.inf
        self._worker_error: BaseException | None = None
        self._next_deadline = math.inf
        """No step in flight overruns its timeout before this (maybe earlier than the true one)."""
        self._next_heartbeat = 0.0
        self._listening = bus.listening
        self._claimed_reason = f"claimed by {owner}"
        self._finished = threading.Condition()
        self._requested: set[str] = set()
        """Tasks handed to track() whose load has not run yet (guarded by _finished)."""
        self._executor = Executor(
            ex.max_concurrent_steps,
            _deliverer(self._inbox, self._in_flight, self._wake),
            on_idle=_idle_ticker(self),
        )

    # -- commands from any thread -------------------------------------------------------------

    def track(self, task_id: str, created: Sequence[Step] | None = None) -> None:
        """Start driving a stored task (resumes it from whatever state the store holds).

        ``created``: the steps the caller just stored for a new task, used instead of reading
        them back (for a large task, building every Step twice is a good share of its cost). Were
        they changed in between, the first batch touching them loses its compare-and-set and the
        task is re-read from the store, as for any change made by another actor.
        """
        with self._finished:
            self._requested.add(task_id)
        self._commands.put(lambda: self._load(task_id, created))
        self._wake.set()

    def reload(self, task_id: str) -> None:
        """Re-read a task another actor changed (cancel, retry, resolve)."""
        self._commands.put(lambda: self._load(task_id))
        self._wake.set()

    def interrupt(self) -> None:
        """Make the driving thread look at its ``until``/``stop`` condition now."""
        self._wake.set()

    def is_active(self, task_id: str) -> bool:
        """Whether the task is tracked: waiting to be loaded, or being driven."""
        return task_id in self._requested or task_id in self.runs

    def wait_finished(self, task_id: str, timeout: float | None) -> bool:
        """Wait until a tracked task is no longer being driven (finished, or dropped)."""
        with self._finished:
            return self._finished.wait_for(lambda: not self.is_active(task_id), timeout)

    # -- the loop -----------------------------------------------------------------------------

    def drive(
        self,
        until: Callable[[], bool],
        stop: threading.Event | None = None,
        deadline: float | None = None,
    ) -> None:
        """Tick until ``until()`` holds, nothing is left to do, or ``stop`` is set.

        ``deadline`` (on the engine's clock) bounds how long the driver sleeps between looks at
        ``until``. Pool threads tick only while some thread drives: outside ``drive`` outcomes
        wait in the inbox, and nothing moves.
        """
        lock = self._tick_lock
        wake = self._wake
        self._driving = True
        try:
            while not until() and not (stop is not None and stop.is_set()):
                wake.clear()  # before looking: a wake-up from here on is not lost
                with lock:
                    more = self._tick()
                    block = self._block_time()
                    if deadline is not None:
                        block = min(block, max(0.0, deadline - self.clock.now()))
                    self._driver_wakes_at = self.clock.now() + block
                self._raise_worker_error()
                if not more and stop is None:
                    break
                if block > 0 and not self._inbox:  # a pool thread may have missed the lock
                    wake.wait(block)
                self._raise_worker_error()
        finally:
            self._driving = False
            with lock:  # a pool thread's tick in progress ends before drive returns
                self._driver_wakes_at = math.inf

    def tick(self) -> bool:
        """One round, without waiting. False when nothing is left to wait for."""
        with self._tick_lock:
            return self._tick()

    def _tick(self) -> bool:
        """Record, dispatch, finalize, commit (the caller holds the tick lock)."""
        self._listening = self.bus.listening  # once per tick: most runs have no sink at all
        if not self._commands.empty():
            self._run_commands()
        outcomes = self._drain()
        now = self.clock.now()
        batch = _Batch()
        self._record(outcomes, now, batch)
        for task_id in batch.touched:
            run = self.runs.get(task_id)
            if run is not None:
                run.settle_dependencies()
        if batch.done_claims:  # before dispatch: a step retried at once is enqueued again
            self.queue.ack(batch.done_claims)
        self._release_due_retries(now)
        self._heartbeat(now)
        self._dispatch(now, batch)
        self._finalize(now, batch)
        self._commit(batch, now)
        return bool(self.runs or self._in_flight)

    def tick_from_pool(self) -> None:
        """Called by a pool thread with nothing to run: tick here while outcomes wait.

        Takes the tick lock without waiting: if another thread holds it, that thread looks at
        the inbox again after releasing it (the driver before sleeping, a pool thread in this
        loop), so no outcome is left behind.
        """
        inbox = self._inbox
        lock = self._tick_lock
        while inbox and lock.acquire(blocking=False):
            try:
                if not self._driving or self._worker_error is not None:
                    return
                before = self._driver_wakes_at
                self._tick()
                if not self._in_flight or self._next_due() < before:
                    self._wake.set()  # the driver's planned sleep is now too long
            except BaseException as exc:  # handed to the driver, which raises it
                self._worker_error = exc
                self._wake.set()
                return
            finally:
                lock.release()

    def _next_due(self) -> float:
        """The earliest retry time or step deadline (maybe earlier than the true deadline)."""
        retry = self._timers[0][0] if self._timers else math.inf
        return min(retry, self._next_deadline)

    def _raise_worker_error(self) -> None:
        error = self._worker_error
        if error is not None:
            self._worker_error = None
            raise error

    def close(self) -> None:
        """Stop the workers and let go of the engine's callbacks.

        Those are the engine's bound methods: dropping them breaks the engine <-> coordinator
        reference cycle, so a closed engine and its runs are freed as soon as the last reference
        goes rather than by a later full (whole-heap) collection of the cyclic GC.
        """
        self._executor.shutdown(wait=False)
        self.runs.clear()
        self._template_for = self._graph_for = self._handler_for = _closed

    # -- loading ------------------------------------------------------------------------------

    def _run_commands(self) -> None:
        commands = self._commands
        while not commands.empty():  # this thread is the only consumer
            commands.get_nowait()()

    def _load(self, task_id: str, created: Sequence[Step] | None = None) -> None:
        """(Re)build a run from the store; fail attempts whose worker is gone."""
        try:
            self._build_run(task_id, created)
        finally:
            with self._finished:
                self._requested.discard(task_id)
                self._finished.notify_all()

    def specs_of(self, template: TaskTemplate) -> dict[str, StepSpec]:
        """The template's step specs, worked out once per template object (a template is
        immutable; the cache holds it, so its id is not reused while cached). Raises what
        resolving a handler raises. Safe from any thread: at worst two work out the same."""
        cached = self._specs.get(id(template))
        if cached is None or cached[0] is not template:
            if len(self._specs) >= _SPECS_CACHED:
                self._specs.clear()
            specs = step_specs(template, self._handler_for, self.config.execution.step_timeout)
            cached = self._specs[id(template)] = (template, specs)
        return cached[1]

    def _build_run(self, task_id: str, created: Sequence[Step] | None = None) -> None:
        task = self.store.get_task(task_id)
        self.runs.pop(task_id, None)
        if task.state not in (TaskState.PENDING, TaskState.IN_PROGRESS):
            self._notify_finished()
            return
        template = self._template_for(task)
        graph = self._graph_for(template)
        steps = created if created is not None else self.store.get_steps(task_id)
        views = build_views(steps, self.specs_of(template))
        run = TaskRun(task, template, graph, views, self._stop_on_failure)
        self.runs[task_id] = run
        now = self.clock.now()
        lost: list[tuple[StepView, Step]] = []
        requeue: list[WorkItem] = []
        for view, step in zip(views, steps, strict=True):
            if view.state == IN_PROGRESS:
                key = (task_id, view.name)
                entry = self._in_flight.get(key)
                if entry is not None and entry.job.attempt == view.attempts:
                    entry.run, entry.view = run, view
                elif self._lease_is_lost(step, now):
                    lost.append((view, step))
            elif view.state == ENQUEUED:
                requeue.append(WorkItem(task_id, view.name, now))
        if requeue:
            self.queue.enqueue(requeue)
        for view in views:
            if view.state == ERROR and view.may_retry() and view.next_retry_at is not None:
                heapq.heappush(self._timers, (view.next_retry_at, task_id, view.index))
        run.initial_candidates()
        if lost:
            batch = _Batch()
            for view, step in lost:
                error = StepError(
                    "LeaseExpired",
                    f"worker {step.lease_owner} stopped heartbeating step {view.name!r} "
                    f"during attempt {view.attempts}",
                )
                outcome = StepOutcome(task_id, view.name, view.attempts, ok=False, error=error)
                self._failure(run, view, outcome, now, batch, reason="lease lost")
            self._commit(batch, now)

    def _lease_is_lost(self, step: Step, now: float) -> bool:
        if step.lease_owner == self.owner:
            return True  # ours but not running here: its batch was refused, the attempt is gone
        return owner_is_dead(step.lease_owner) or (step.lease_expires_at or 0.0) < now

    # -- waiting ------------------------------------------------------------------------------

    def _block_time(self) -> float:
        if not self._commands.empty() or self._inbox:
            return 0.0
        if any(run.candidates for run in self.runs.values()):
            return 0.0
        now = self.clock.now()
        wait = self._poll
        if self._timers:
            wait = min(wait, self._timers[0][0] - now)
        if self._in_flight:
            wait = min(wait, self._next_heartbeat - now, STRAGGLER_CHECK, self._next_deadline - now)
        elif self._timers and wait > 0:
            self.clock.sleep(wait)  # nothing can arrive: let the clock run to the next retry
            return 0.0
        return max(0.0, wait)

    def _drain(self) -> list[StepOutcome]:
        inbox = self._inbox
        if not inbox:
            return []
        out: list[StepOutcome] = []
        take = inbox.popleft
        while inbox:  # pool threads append concurrently; popleft is atomic
            out.append(take())
        return out

    # -- record outcomes ----------------------------------------------------------------------

    def _record(self, outcomes: Sequence[StepOutcome], now: float, batch: _Batch) -> None:
        for outcome in outcomes:
            key = (outcome.task_id, outcome.step)
            entry = self._in_flight.get(key)
            if entry is None or entry.job.attempt != outcome.attempt:
                continue  # an abandoned (timed out) attempt's late answer
            del self._in_flight[key]
            batch.done_claims.append(entry.claim)
            if outcome.ok:
                self._success(entry.run, entry.view, outcome, batch)
            else:
                self._failure(entry.run, entry.view, outcome, now, batch)
        if now < self._next_deadline:
            return  # no step in flight can have overrun: skip the scan
        overran = [
            (key, entry)
            for key, entry in self._in_flight.items()
            if entry.job.timeout is not None and now >= entry.job.started_at + entry.job.timeout
        ]
        self._next_deadline = min(
            (
                e.job.started_at + e.job.timeout
                for e in self._in_flight.values()
                if e.job.timeout is not None and now < e.job.started_at + e.job.timeout
            ),
            default=math.inf,
        )
        for key, entry in overran:
            job = entry.job
            del self._in_flight[key]
            self._executor.abandon(job)
            batch.done_claims.append(entry.claim)
            self._failure(entry.run, entry.view, timeout_outcome(job, now), now, batch)

    def _success(self, run: TaskRun, view: StepView, outcome: StepOutcome, batch: _Batch) -> None:
        attempt = outcome.attempt
        results = outcome.results
        batch.changes.append(
            StepChange(  # positional (reason, metadata, lease, results, error, retry, attempt)
                run.task_id,
                view.name,
                IN_PROGRESS,
                COMPLETE,
                "handler returned",
                {"attempt": attempt, "duration": outcome.duration},
                None,
                None,
                results,
                None,
                None,
                attempt,
            )
        )
        view.results = results
        view.error = None
        run.set_state(view, COMPLETE)
        batch.touched.add(run.task_id)
        if self._listening:
            self._event(
                batch,
                run,
                "step.completed",
                {"step": view.name, "attempt": outcome.attempt, "duration": outcome.duration},
            )

    def _failure(
        self,
        run: TaskRun,
        view: StepView,
        outcome: StepOutcome,
        now: float,
        batch: _Batch,
        reason: str | None = None,
    ) -> None:
        error = outcome.error or StepError("Error", "unknown failure")
        retry_at: float | None = None
        if view.retryable and error.retryable and view.attempts < view.max_attempts:
            b = self._backoff
            base, max_delay = view.backoff
            retry_at = now + retry_delay(
                attempt=view.attempts,
                base=base if base is not None else b.base,
                max_delay=max_delay if max_delay is not None else b.max,
                jitter=b.jitter,
                seed=b.seed,
                task_id=run.task_id,
                step=view.name,
                retry_after=outcome.retry_after,
            )
        batch.changes.append(
            StepChange(
                run.task_id,
                view.name,
                IN_PROGRESS,
                ERROR,
                reason=reason or f"{error.error_class}: {error.message}",
                metadata={
                    "attempt": outcome.attempt,
                    "duration": outcome.duration,
                    "retry_at": retry_at,
                },
                error=error,
                next_retry_at=retry_at,
                expect_attempt=outcome.attempt,
            )
        )
        view.error = error
        view.next_retry_at = retry_at
        run.set_state(view, ERROR)
        batch.touched.add(run.task_id)
        self._event(
            batch,
            run,
            "step.failed",
            {
                "step": view.name,
                "attempt": outcome.attempt,
                "duration": outcome.duration,
                "error_class": error.error_class,
                "error_message": error.message,
            },
        )
        if retry_at is not None:
            heapq.heappush(self._timers, (retry_at, run.task_id, view.index))
            self._event(
                batch,
                run,
                "step.retry_scheduled",
                {
                    "step": view.name,
                    "attempt": outcome.attempt,
                    "retry_at": retry_at,
                    "error_class": error.error_class,
                    "error_message": error.message,
                },
            )

    # -- dispatch -----------------------------------------------------------------------------

    def _release_due_retries(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, task_id, index = heapq.heappop(timers)
            run = self.runs.get(task_id)
            if run is not None:
                view = run.views[index]
                if view.may_retry() and view.next_retry_at == when:
                    run.candidates.add(index)

    def _dispatch(self, now: float, batch: _Batch) -> None:
        items: list[WorkItem] = []
        listening = self._listening
        for run in self.runs.values():
            if not run.candidates:
                continue
            views = run.views
            is_ready = run.is_ready
            ready = [views[i] for i in sorted(run.candidates) if is_ready(views[i], now)]
            run.candidates.clear()
            task_id = run.task_id
            if not ready:
                continue
            if run.task.state == TaskState.PENDING:
                self._task_change(run, TaskState.IN_PROGRESS, "dispatching ready steps", batch, now)
            changes = batch.changes
            set_state = run.set_state
            for view in ready:
                name = view.name
                state = view.state
                changes.append(
                    StepChange(
                        task_id,
                        name,
                        state,
                        ENQUEUED,
                        "retry: backoff elapsed" if state == ERROR else "dependencies satisfied",
                        {"attempt": view.attempts + 1},
                    )
                )
                set_state(view, ENQUEUED)
                if listening:
                    self._event(
                        batch, run, "step.enqueued", {"step": name, "attempt": view.attempts + 1}
                    )
                items.append(WorkItem(task_id, name, now))
            batch.touched.add(task_id)
            if listening:
                self._event(batch, run, "workflow.steps_ready", {"steps": [v.name for v in ready]})
        if items:
            self.queue.enqueue(items)
        free = self._max_in_flight - len(self._in_flight)
        claims = self.queue.claim(self.owner, free, self._lease, now) if free > 0 else []
        for claim in claims:
            owner = self.runs.get(claim.item.task_id)
            claimed = owner.by_name.get(claim.item.step) if owner is not None else None
            if owner is None or claimed is None or claimed.state != ENQUEUED:
                self.queue.ack([claim])  # the task or step moved on (cancelled, finished)
                continue
            self._start(owner, claimed, claim, now, batch)

    def _start(self, run: TaskRun, view: StepView, claim: Claim, now: float, batch: _Batch) -> None:
        owner = self.owner
        name = view.name
        task = run.task
        task_id = task.id
        attempt = view.attempts + 1
        batch.changes.append(
            StepChange(  # positional (reason, metadata, lease_owner, lease_expires_at)
                task_id,
                name,
                ENQUEUED,
                IN_PROGRESS,
                self._claimed_reason,
                {"attempt": attempt},
                owner,
                claim.expires_at,
            )
        )
        view.attempts = attempt
        view.next_retry_at = None
        view.lease_owner = owner
        run.set_state(view, IN_PROGRESS)
        batch.touched.add(task_id)
        if self._listening:
            self._event(batch, run, "step.started", {"step": name, "attempt": attempt})
        ctx = StepContext(  # positional: this runs once per attempt
            task_id,
            task.namespace,
            task.name,
            task.version,
            name,
            attempt,
            view.max_attempts,
            task.context,
            view.config,
            run.dependency_results(view),
            None,  # the logger: built if the handler uses it
            functools.partial(self._custom_event, run, name),
        )
        job = Job(task_id, name, attempt, view.fn, ctx, view.timeout, now, is_async=view.is_async)
        if view.timeout is not None:
            deadline = now + view.timeout
            if deadline < self._next_deadline:
                self._next_deadline = deadline
        batch.starts.append(_InFlight(run, view, job, claim))

    def _heartbeat(self, now: float) -> None:
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + self._heartbeat_every
        if not self._in_flight:
            return
        by_task: dict[str, list[_InFlight]] = {}
        for entry in self._in_flight.values():
            by_task.setdefault(entry.run.task_id, []).append(entry)
        expires = now + self._lease
        for task_id, entries in by_task.items():
            self.store.heartbeat(task_id, [e.view.name for e in entries], self.owner, expires)
            renewed = self.queue.extend([e.claim for e in entries], self._lease, now)
            for entry, claim in zip(entries, renewed, strict=True):
                if claim is not None:
                    entry.claim = claim

    # -- finalize -----------------------------------------------------------------------------

    def _finalize(self, now: float, batch: _Batch) -> None:
        for run in list(self.runs.values()):
            if not run.dirty:
                continue
            run.dirty = False
            if run.counts[ENQUEUED] or run.counts[IN_PROGRESS]:
                continue  # steps in flight: nothing to decide until they report
            ready = sum(1 for i in run.candidates if run.is_ready(run.views[i], now))
            context = run.context(ready)
            state = run.task.state
            if context.status in (Status.ALL_COMPLETE, Status.BLOCKED_BY_FAILURES):
                if state == TaskState.PENDING:
                    self._task_change(run, TaskState.IN_PROGRESS, "resumed", batch, now)
                done = context.status is Status.ALL_COMPLETE
                target = TaskState.COMPLETE if done else TaskState.ERROR
                reason = "all steps complete" if done else "steps failed permanently"
                self._task_change(run, target, reason, batch, now)
                batch.finished.append(run.task_id)
            elif context.status is Status.WAITING_FOR_BACKOFF and state == TaskState.IN_PROGRESS:
                self._task_change(
                    run,
                    TaskState.PENDING,
                    "waiting for backoff",
                    batch,
                    now,
                    wake_at=context.next_retry_at,
                )

    def _task_change(
        self,
        run: TaskRun,
        target: str,
        reason: str,
        batch: _Batch,
        now: float,
        wake_at: float | None = None,
    ) -> None:
        batch.changes.append(
            TaskChange(run.task_id, run.task.state, target, reason=reason, wake_at=wake_at)
        )
        run.task = _evolve_task(run.task, target, now, wake_at)
        batch.touched.add(run.task_id)
        if target == TaskState.IN_PROGRESS:
            if run.started_at is None:  # resuming after a backoff wait is not a new start
                run.started_at = now
                self._event(batch, run, "task.started")
        elif target == TaskState.COMPLETE:
            self._event(batch, run, "task.completed", {"duration": now - (run.started_at or now)})
        elif target == TaskState.ERROR:
            self._event(batch, run, "task.failed", {"steps": [v.name for v in run.failed_steps()]})
        elif target == TaskState.PENDING:
            self._event(batch, run, "workflow.waiting", {"retry_at": wake_at})

    # -- committing ---------------------------------------------------------------------------

    def _commit(self, batch: _Batch, now: float) -> None:
        """Store the batch atomically; then acknowledge, start, publish — or re-read and drop."""
        stored = not batch.changes or all(self.store.apply(batch.changes, now, atomic=True))
        if not stored:
            log.info(
                "tasks %s changed outside this engine; re-reading them",
                ", ".join(sorted(batch.touched)),
            )
            self.queue.ack([entry.claim for entry in batch.starts])
            for task_id in sorted(batch.touched):
                self._load(task_id)
            return
        for entry in batch.starts:
            self._in_flight[(entry.run.task_id, entry.view.name)] = entry
        if batch.starts:
            self._executor.submit_many([entry.job for entry in batch.starts])
        if batch.finished:
            for task_id in batch.finished:
                self.runs.pop(task_id, None)
            self._notify_finished()
        if batch.events:
            self.bus.emit(batch.events)

    def _notify_finished(self) -> None:
        with self._finished:
            self._finished.notify_all()
        self._wake.set()  # the driver's ``until`` may hold now

    def _event(
        self, batch: _Batch, run: TaskRun, name: str, data: dict[str, JSON] | None = None
    ) -> None:
        if self._listening:
            batch.events.append(self.bus.task_event(run.task, name, self.clock.now(), data))

    def _custom_event(self, run: TaskRun, step: str, name: str, payload: JSON) -> None:
        """Called from handler threads: events go straight to the (thread-safe) bus."""
        task = run.task
        event = self.bus.make(
            f"custom.{name}",
            task_id=task.id,
            namespace=task.namespace,
            workflow=task.name,
            version=task.version,
            time=self.clock.now(),
            step=step,
            payload=payload,
        )
        self.bus.emit([event])


def _deliverer(
    inbox: deque[StepOutcome], in_flight: dict[Key, _InFlight], wake: threading.Event
) -> Callable[[StepOutcome], None]:
    """The executor's ``on_done``: queue the outcome; wake the driver for an async job's.

    Sync outcomes are ticked by the pool thread that reported them (``tick_from_pool``); the
    event loop thread of async jobs never ticks, so the driver must. A closure over the
    coordinator's parts, not a bound method: the executor's threads must not keep the
    coordinator alive.
    """

    def deliver(outcome: StepOutcome) -> None:
        inbox.append(outcome)
        entry = in_flight.get((outcome.task_id, outcome.step))
        if entry is None or entry.job.is_async:
            wake.set()

    return deliver


def _idle_ticker(coordinator: Coordinator) -> Callable[[], None]:
    """The executor's ``on_idle``, holding the coordinator weakly (see :func:`_deliverer`)."""
    ref = weakref.ref(coordinator)

    def on_idle() -> None:
        live = ref()
        if live is not None:
            live.tick_from_pool()

    return on_idle


def _closed(*args: object) -> NoReturn:
    raise RuntimeError("this engine is closed")


def _evolve_task(task: Task, state: str, now: float, wake_at: float | None) -> Task:
    started = task.started_at if task.started_at is not None or state != "in_progress" else now
    return attrs.evolve(task, state=state, updated_at=now, started_at=started, wake_at=wake_at)
