"""The coordinator: one thread's loop that owns every task this engine is running.

Each tick (1) records finished attempts and timeouts in one store transaction, (2) dispatches
what became ready — enqueue, claim from the queue, start under a lease — in a second, and
(3) finalizes tasks whose situation changed in a third (only when there is something to say).
Views change only after the store accepted a change, and every change is compare-and-set, so a
change made behind our back (another process cancelling a task) makes a change miss, and the run
is reloaded from the store instead of being overwritten.
"""

from __future__ import annotations

import functools
import heapq
import logging
import queue as stdqueue
import threading
from collections.abc import Callable, Sequence
from typing import Any

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
    StepView,
    TaskRun,
    build_views,
)
from tasker_core.protocols import Change, Queue, Store
from tasker_core.solver import WorkflowGraph
from tasker_core.templates import TaskTemplate

log = logging.getLogger("tasker.coordinator")
_step_log = logging.getLogger("tasker.step")

Key = tuple[str, str]
Effect = Callable[[bool], None]


class _InFlight:
    __slots__ = ("claim", "job", "run", "view")

    def __init__(self, run: TaskRun, view: StepView, job: Job, claim: Claim) -> None:
        self.run = run
        self.view = view
        self.job = job
        self.claim = claim


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
        self._inbox: stdqueue.SimpleQueue[StepOutcome] = stdqueue.SimpleQueue()
        self._commands: stdqueue.SimpleQueue[Callable[[], None]] = stdqueue.SimpleQueue()
        self._next_heartbeat = 0.0
        self._finished = threading.Condition()
        self._executor = Executor(ex.max_concurrent_steps, self._inbox.put)
        self._pending_events: list[Event] = []

    # -- commands from any thread -------------------------------------------------------------

    def track(self, task_id: str) -> None:
        """Start driving a stored task (resumes it from whatever state the store holds)."""
        self._commands.put(lambda: self._load(task_id))

    def reload(self, task_id: str) -> None:
        """Re-read a task another actor changed (cancel, retry, resolve)."""
        self._commands.put(lambda: self._load(task_id))

    def idle_commands(self) -> bool:
        """No command (track, reload) is waiting to be run by the loop."""
        return self._commands.empty()

    def wait_finished(self, task_id: str, timeout: float | None) -> bool:
        with self._finished:
            return self._finished.wait_for(lambda: task_id not in self.runs, timeout)

    # -- the loop -----------------------------------------------------------------------------

    def drive(self, until: Callable[[], bool], stop: threading.Event | None = None) -> None:
        """Tick until ``until()`` holds, nothing is left to do, or ``stop`` is set."""
        while not until() and not (stop is not None and stop.is_set()):
            if not self.tick() and stop is None:
                break

    def tick(self) -> bool:
        """One round of record → dispatch → finalize. False when there is nothing to wait for."""
        self._run_commands()
        outcomes = self._collect(self._block_time())
        now = self.clock.now()
        self._record(outcomes, now)
        self._release_due_retries(now)
        self._heartbeat(now)
        self._dispatch(now)
        self._finalize(now)
        return bool(self.runs or self._in_flight)

    def close(self) -> None:
        self._executor.shutdown(wait=False)

    # -- loading ------------------------------------------------------------------------------

    def _run_commands(self) -> None:
        while True:
            try:
                command = self._commands.get_nowait()
            except stdqueue.Empty:
                return
            command()

    def _load(self, task_id: str) -> None:
        task = self.store.get_task(task_id)
        self.runs.pop(task_id, None)
        if task.state not in (TaskState.PENDING, TaskState.IN_PROGRESS):
            self._notify_finished()
            return
        template = self._template_for(task)
        graph = self._graph_for(template)
        steps = self.store.get_steps(task_id)
        views = build_views(steps, template, self._handler_for, self.config.execution.step_timeout)
        run = TaskRun(task, template, graph, views, self._stop_on_failure)
        self.runs[task_id] = run
        now = self.clock.now()
        lost: list[tuple[StepView, Step]] = []
        requeue: list[WorkItem] = []
        for view, step in zip(views, steps, strict=True):
            if view.state == IN_PROGRESS:
                key = (task_id, view.name)
                if key in self._in_flight:
                    self._in_flight[key].run, self._in_flight[key].view = run, view
                elif owner_is_dead(step.lease_owner) or (step.lease_expires_at or 0.0) < now:
                    lost.append((view, step))
            elif view.state == ENQUEUED:
                requeue.append(WorkItem(task_id, view.name, now))
        if requeue:
            self.queue.enqueue(requeue)
        if lost:
            self._fail_lost_leases(run, lost, now)
        for view in views:
            if view.may_retry() and view.next_retry_at is not None:
                heapq.heappush(self._timers, (view.next_retry_at, task_id, view.index))
        run.initial_candidates()

    def _fail_lost_leases(
        self, run: TaskRun, lost: list[tuple[StepView, Step]], now: float
    ) -> None:
        changes: list[Change] = []
        effects: list[Effect] = []
        for view, step in lost:
            error = StepError(
                "LeaseExpired",
                f"worker {step.lease_owner} stopped heartbeating step {view.name!r} "
                f"during attempt {view.attempts}",
            )
            outcome = StepOutcome(run.task_id, view.name, view.attempts, ok=False, error=error)
            self._failure_change(run, view, outcome, now, changes, effects, reason="lease lost")
        self._commit(changes, effects, now)

    # -- phase 1: record outcomes ------------------------------------------------------------

    def _block_time(self) -> float:
        if not self._commands.empty():
            return 0.0
        if any(run.candidates for run in self.runs.values()):
            return 0.0
        now = self.clock.now()
        wait = self._poll
        if self._timers:
            wait = min(wait, self._timers[0][0] - now)
        if self._in_flight:
            wait = min(wait, self._next_heartbeat - now)
            for entry in self._in_flight.values():
                if entry.job.timeout is not None:
                    wait = min(wait, entry.job.started_at + entry.job.timeout - now)
        elif self._timers and wait > 0:
            self.clock.sleep(wait)  # nothing can arrive: let the clock run to the next retry
            return 0.0
        return max(0.0, wait)

    def _collect(self, block: float) -> list[StepOutcome]:
        out: list[StepOutcome] = []
        if block > 0 and self._in_flight:
            try:
                out.append(self._inbox.get(timeout=block))
            except stdqueue.Empty:
                return out
        elif block > 0:
            try:  # idle: the next thing that can happen is a command (track, reload)
                self._commands.get(timeout=block)()
            except stdqueue.Empty:
                return out
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except stdqueue.Empty:
                return out

    def _record(self, outcomes: Sequence[StepOutcome], now: float) -> None:
        changes: list[Change] = []
        effects: list[Effect] = []
        for outcome in outcomes:
            entry = self._in_flight.get((outcome.task_id, outcome.step))
            if entry is None or entry.job.attempt != outcome.attempt:
                continue  # an abandoned (timed out) attempt's late answer
            del self._in_flight[(outcome.task_id, outcome.step)]
            self.queue.ack([entry.claim])
            if outcome.ok:
                self._success_change(entry.run, entry.view, outcome, changes, effects)
            else:
                self._failure_change(entry.run, entry.view, outcome, now, changes, effects)
        for key, entry in list(self._in_flight.items()):
            job = entry.job
            if job.timeout is not None and now >= job.started_at + job.timeout:
                del self._in_flight[key]
                self._executor.abandon(job)
                self.queue.ack([entry.claim])
                self._failure_change(
                    entry.run, entry.view, timeout_outcome(job, now), now, changes, effects
                )
        self._commit(changes, effects, now)

    def _success_change(
        self,
        run: TaskRun,
        view: StepView,
        outcome: StepOutcome,
        changes: list[Change],
        effects: list[Effect],
    ) -> None:
        changes.append(
            StepChange(
                run.task_id,
                view.name,
                IN_PROGRESS,
                COMPLETE,
                reason="handler returned",
                metadata={"attempt": outcome.attempt, "duration": outcome.duration},
                results=outcome.results,
                expect_attempt=outcome.attempt,
            )
        )

        def done(applied: bool) -> None:
            if not applied:
                return self._stale(run)
            view.results = outcome.results
            view.error = None
            run.set_state(view, COMPLETE)
            self._event(
                run,
                "step.completed",
                step=view.name,
                attempt=outcome.attempt,
                duration=outcome.duration,
            )

        effects.append(done)

    def _failure_change(
        self,
        run: TaskRun,
        view: StepView,
        outcome: StepOutcome,
        now: float,
        changes: list[Change],
        effects: list[Effect],
        reason: str | None = None,
    ) -> None:
        error = outcome.error or StepError("Error", "unknown failure")
        may_retry = view.retryable and error.retryable and view.attempts < view.max_attempts
        retry_at: float | None = None
        if may_retry:
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
        changes.append(
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

        def done(applied: bool) -> None:
            if not applied:
                return self._stale(run)
            view.error = error
            view.next_retry_at = retry_at
            run.set_state(view, ERROR)
            self._event(
                run,
                "step.failed",
                step=view.name,
                attempt=outcome.attempt,
                duration=outcome.duration,
                error_class=error.error_class,
                error_message=error.message,
            )
            if retry_at is not None:
                heapq.heappush(self._timers, (retry_at, run.task_id, view.index))
                self._event(
                    run,
                    "step.retry_scheduled",
                    step=view.name,
                    attempt=outcome.attempt,
                    retry_at=retry_at,
                    error_class=error.error_class,
                    error_message=error.message,
                )

        effects.append(done)

    # -- phase 2: dispatch -------------------------------------------------------------------

    def _release_due_retries(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, task_id, index = heapq.heappop(timers)
            run = self.runs.get(task_id)
            if run is not None:
                view = run.views[index]
                if view.may_retry() and view.next_retry_at == when:
                    run.candidates.add(index)

    def _dispatch(self, now: float) -> None:
        changes: list[Change] = []
        effects: list[Effect] = []
        items: list[WorkItem] = []
        for run in self.runs.values():
            if not run.candidates:
                continue
            ready = [
                run.views[i] for i in sorted(run.candidates) if run.is_ready(run.views[i], now)
            ]
            run.candidates.clear()
            if not ready:
                continue
            if run.task.state == TaskState.PENDING:
                self._task_change(
                    run, TaskState.IN_PROGRESS, "dispatching ready steps", changes, effects, now
                )
            for view in ready:
                self._enqueue_change(run, view, changes, effects)
                items.append(WorkItem(run.task_id, view.name, now))
            changes.append(_NO_CHANGE)
            effects.append(self._later(run, "workflow.steps_ready", steps=[v.name for v in ready]))
        if items:
            self.queue.enqueue(items)
        free = self._max_in_flight - len(self._in_flight)
        claims = self.queue.claim(self.owner, free, self._lease, now) if free > 0 else []
        for claim in claims:
            owner_run = self.runs.get(claim.item.task_id)
            claimed = owner_run.by_name.get(claim.item.step) if owner_run is not None else None
            if owner_run is None or claimed is None:
                self.queue.ack([claim])  # the task went away (cancelled, finished elsewhere)
                continue
            run, view = owner_run, claimed
            changes.append(
                StepChange(
                    run.task_id,
                    view.name,
                    ENQUEUED,
                    IN_PROGRESS,
                    reason=f"claimed by {self.owner}",
                    metadata={"attempt": view.attempts + 1},
                    lease_owner=self.owner,
                    lease_expires_at=claim.expires_at,
                )
            )
            effects.append(
                functools.partial(self._started, run=run, view=view, claim=claim, now=now)
            )
        self._commit(changes, effects, now)

    def _enqueue_change(
        self, run: TaskRun, view: StepView, changes: list[Change], effects: list[Effect]
    ) -> None:
        from_state = view.state
        retry = from_state == ERROR
        changes.append(
            StepChange(
                run.task_id,
                view.name,
                from_state,
                ENQUEUED,
                reason="retry: backoff elapsed" if retry else "dependencies satisfied",
                metadata={"attempt": view.attempts + 1},
            )
        )

        def done(applied: bool) -> None:
            if not applied:
                return self._stale(run)
            run.set_state(view, ENQUEUED)
            self._event(run, "step.enqueued", step=view.name, attempt=view.attempts + 1)

        effects.append(done)

    def _started(
        self, applied: bool, run: TaskRun, view: StepView, claim: Claim, now: float
    ) -> None:
        if not applied:
            self.queue.ack([claim])
            return self._stale(run)
        view.attempts += 1
        view.next_retry_at = None
        view.lease_owner = self.owner
        run.set_state(view, IN_PROGRESS)
        self._event(run, "step.started", step=view.name, attempt=view.attempts)
        task = run.task
        ctx = StepContext(
            task_id=task.id,
            namespace=task.namespace,
            workflow=task.name,
            version=task.version,
            step=view.name,
            attempt=view.attempts,
            max_attempts=view.max_attempts,
            context=task.context,
            step_config=view.config,
            dependencies=run.dependency_results(view),
            logger=logging.LoggerAdapter(_step_log, {"task_id": task.id, "step": view.name}),
            publish=functools.partial(self._custom_event, run, view.name),
        )
        job = Job(task.id, view.name, view.attempts, view.fn, ctx, view.timeout, started_at=now)
        self._in_flight[(task.id, view.name)] = _InFlight(run, view, job, claim)
        self._executor.submit(job)

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

    # -- phase 3: finalize -------------------------------------------------------------------

    def _finalize(self, now: float) -> None:
        changes: list[Change] = []
        effects: list[Effect] = []
        for run in list(self.runs.values()):
            if not run.dirty:
                continue
            run.dirty = False
            ready = sum(1 for i in run.candidates if run.is_ready(run.views[i], now))
            context = run.context(ready)
            state = run.task.state
            if (
                context.status is Status.ALL_COMPLETE
                or context.status is Status.BLOCKED_BY_FAILURES
            ):
                if state == TaskState.PENDING:
                    self._task_change(run, TaskState.IN_PROGRESS, "resumed", changes, effects, now)
                done = context.status is Status.ALL_COMPLETE
                target = TaskState.COMPLETE if done else TaskState.ERROR
                reason = "all steps complete" if done else "steps failed permanently"
                self._task_change(run, target, reason, changes, effects, now)
            elif context.status is Status.WAITING_FOR_BACKOFF and state == TaskState.IN_PROGRESS:
                self._task_change(
                    run,
                    TaskState.PENDING,
                    "waiting for backoff",
                    changes,
                    effects,
                    now,
                    wake_at=context.next_retry_at,
                )
        self._commit(changes, effects, now)

    def _task_change(
        self,
        run: TaskRun,
        target: str,
        reason: str,
        changes: list[Change],
        effects: list[Effect],
        now: float,
        wake_at: float | None = None,
    ) -> None:
        from_state = run.task.state
        changes.append(TaskChange(run.task_id, from_state, target, reason=reason, wake_at=wake_at))
        # The view moves now so that later changes of this batch start from the new state.
        run.task = _evolve_task(run.task, target, now, wake_at)

        def done(applied: bool) -> None:
            if not applied:
                return self._stale(run)
            self._task_event(run, target, now, wake_at)
            if target in (TaskState.COMPLETE, TaskState.ERROR):
                self.runs.pop(run.task_id, None)
                self._notify_finished()

        effects.append(done)

    def _task_event(self, run: TaskRun, target: str, now: float, wake_at: float | None) -> None:
        if target == TaskState.IN_PROGRESS:
            if run.started_at is None:
                run.started_at = now
            self._event(run, "task.started")
        elif target == TaskState.COMPLETE:
            self._event(run, "task.completed", duration=now - (run.started_at or now))
        elif target == TaskState.ERROR:
            self._event(run, "task.failed", steps=[v.name for v in run.failed_steps()])
        elif target == TaskState.PENDING:
            self._event(run, "workflow.waiting", retry_at=wake_at)

    # -- committing --------------------------------------------------------------------------

    def _commit(self, changes: list[Change], effects: list[Effect], now: float) -> None:
        """Apply a batch in one store transaction, then run each change's effect."""
        if not effects:
            return
        real = [c for c in changes if c is not _NO_CHANGE]
        applied = iter(self.store.apply(real, now) if real else [])
        for change, effect in zip(changes, effects, strict=True):
            effect(True if change is _NO_CHANGE else next(applied))
        self.bus.emit(self._pending_events)
        self._pending_events = []

    def _stale(self, run: TaskRun) -> None:
        """A compare-and-set missed: someone else changed this task; re-read it."""
        log.info("task %s changed outside this engine; reloading it", run.task_id)
        self.reload(run.task_id)

    def _notify_finished(self) -> None:
        with self._finished:
            self._finished.notify_all()

    def _event(self, run: TaskRun, name: str, **data: JSON) -> None:
        task = run.task
        self._pending_events.append(
            self.bus.make(
                name,
                task_id=task.id,
                namespace=task.namespace,
                workflow=task.name,
                version=task.version,
                time=self.clock.now(),
                **data,
            )
        )

    def _later(self, run: TaskRun, name: str, **data: JSON) -> Effect:
        """An effect that only emits an event (paired with _NO_CHANGE in a batch)."""
        return lambda applied: self._event(run, name, **data)

    def _custom_event(self, run: TaskRun, step: str, name: str, payload: JSON) -> None:
        task = run.task
        self.bus.emit(
            [
                self.bus.make(
                    f"custom.{name}",
                    task_id=task.id,
                    namespace=task.namespace,
                    workflow=task.name,
                    version=task.version,
                    time=self.clock.now(),
                    step=step,
                    payload=payload,
                )
            ]
        )


class _NoChange:
    """Marks an effect in a batch that has no store change of its own (an event to emit)."""


_NO_CHANGE: Any = _NoChange()


def _evolve_task(task: Task, state: str, now: float, wake_at: float | None) -> Task:
    started = task.started_at if task.started_at is not None or state != "in_progress" else now
    return attrs.evolve(task, state=state, updated_at=now, started_at=started, wake_at=wake_at)
