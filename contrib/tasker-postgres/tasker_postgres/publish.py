"""Lifecycle events of a worker: built from what a committed transaction recorded and decided.

The database decides (schema version 3 reports each decision in the same round trip), the worker
publishes — only after the transaction committed, so every event stands for a stored change.
Within one transaction the order per task is the embedded engine's: the outcomes
(``step.completed`` | ``step.failed`` then ``step.retry_scheduled``), then ``task.started``,
``step.enqueued`` for each step dispatched and one ``workflow.steps_ready``, then
``task.completed`` | ``task.failed`` | ``workflow.waiting``; claims follow as ``step.started``.
An event's ``time`` is the time the transaction recorded on its transitions, so that events of
one task published by different workers order by it (a step is claimable only from the time it
was enqueued at).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tasker_core import JSON, Event, EventBus, Task

from tasker_postgres.work import ClaimedStep, Decision, Settlement

__all__ = ["Publisher"]

TaskLookup = Callable[[Sequence[str]], Mapping[str, Task]]
"""Tasks by id (the worker's cache, reading the ones it lacks)."""


class Publisher:
    """Builds and emits one transaction's events; cheap when nothing listens."""

    def __init__(self, bus: EventBus, tasks: TaskLookup) -> None:
        self.bus = bus
        self._tasks = tasks

    @property
    def listening(self) -> bool:
        return self.bus.listening

    def settled(
        self,
        outcomes: Sequence[Settlement],
        lost: Sequence[tuple[str, str]],
        decisions: Sequence[Decision],
        now: float,
    ) -> None:
        """Events of a committed settle: the recorded outcomes and what they led to."""
        if not self.bus.listening:
            return
        gone = set(lost)
        recorded = [o for o in outcomes if (o.task_id, o.step) not in gone]
        ids = {o.task_id for o in recorded} | {d.task_id for d in decisions}
        tasks = self._tasks(sorted(ids))
        failures = {(d.task_id, d.step): d for d in decisions if d.kind in ("retry", "permanent")}
        out: list[Event] = []
        for o in recorded:
            task = tasks.get(o.task_id)
            if task is None:
                continue
            if o.ok:
                out.append(
                    self._make(
                        task,
                        "step.completed",
                        now,
                        {"step": o.step, "attempt": o.attempt, "duration": o.duration},
                    )
                )
                continue
            error_class = o.error.error_class if o.error else "Error"
            message = o.error.message if o.error else ""
            out.append(
                self._make(
                    task,
                    "step.failed",
                    now,
                    {
                        "step": o.step,
                        "attempt": o.attempt,
                        "duration": o.duration,
                        "error_class": error_class,
                        "error_message": message,
                    },
                )
            )
            failure = failures.get((o.task_id, o.step))
            if failure is not None and failure.kind == "retry":
                out.append(
                    self._make(
                        task,
                        "step.retry_scheduled",
                        now,
                        {
                            "step": o.step,
                            "attempt": o.attempt,
                            "retry_at": failure.at,
                            "error_class": error_class,
                            "error_message": message,
                        },
                    )
                )
        self._dispatched(decisions, tasks, now, out)
        self.bus.emit(out)

    def activated(self, decisions: Sequence[Decision], now: float) -> None:
        """Events of a committed activation (dispatch and finalize of whole tasks)."""
        if not self.bus.listening or not decisions:
            return
        tasks = self._tasks(sorted({d.task_id for d in decisions}))
        out: list[Event] = []
        self._dispatched(decisions, tasks, now, out)
        self.bus.emit(out)

    def started(self, claims: Sequence[ClaimedStep], now: float) -> None:
        """``step.started`` for committed claims."""
        if not self.bus.listening or not claims:
            return
        tasks = self._tasks(sorted({c.task_id for c in claims}))
        out = [
            self._make(
                tasks[c.task_id], "step.started", now, {"step": c.name, "attempt": c.attempt}
            )
            for c in claims
            if c.task_id in tasks
        ]
        self.bus.emit(out)

    def custom(self, task: Task, step: str, name: str, payload: JSON, now: float) -> None:
        """A handler's own event (``ctx.publish``), from its thread."""
        if self.bus.listening:
            self.bus.emit(
                [self._make(task, f"custom.{name}", now, {"step": step, "payload": payload})]
            )

    def _dispatched(
        self,
        decisions: Sequence[Decision],
        tasks: Mapping[str, Task],
        now: float,
        out: list[Event],
    ) -> None:
        """Per task, in order of first mention: start, enqueues, steps_ready, the final move."""
        by_task: dict[str, list[Decision]] = {}
        for d in decisions:
            if d.kind in ("enqueued", "move"):
                by_task.setdefault(d.task_id, []).append(d)
        for task_id, found in by_task.items():
            task = tasks.get(task_id)
            if task is None:
                continue
            moves = {d.detail: d for d in found if d.kind == "move"}
            if "started" in moves:
                out.append(self._make(task, "task.started", now))
            ready = [d for d in found if d.kind == "enqueued" and d.step is not None]
            for d in ready:
                out.append(
                    self._make(task, "step.enqueued", now, {"step": d.step, "attempt": d.attempt})
                )
            if ready:
                names: list[JSON] = [d.step for d in ready]
                out.append(self._make(task, "workflow.steps_ready", now, {"steps": names}))
            if "completed" in moves:
                started = moves["completed"].at
                duration = now - started if started is not None else 0.0
                out.append(self._make(task, "task.completed", now, {"duration": duration}))
            elif "failed" in moves:
                failed: list[JSON] = list(moves["failed"].steps or [])
                out.append(self._make(task, "task.failed", now, {"steps": failed}))
            elif "waiting" in moves:
                out.append(
                    self._make(task, "workflow.waiting", now, {"retry_at": moves["waiting"].at})
                )

    def _make(
        self, task: Task, name: str, now: float, data: dict[str, JSON] | None = None
    ) -> Event:
        return self.bus.task_event(task, name, now, data)
