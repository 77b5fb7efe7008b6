"""The Engine: the one handle that owns store, queue, sinks, registry and config.

Typical embedded use::

    engine = Engine()                       # tasker.yaml or defaults: SQLite under ./.tasker/
    engine.load_template("workflows/order.yml")
    task = engine.run(TaskRequest("ecommerce", "order_fulfillment", context={"order_id": 7}))

``run`` drives the task in the calling thread; ``start()`` drives every submitted task on a
background thread instead. Manual operations (cancel, retry, resolve) act on the store with
compare-and-set, so they are safe while another process runs the task.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tasker_core.clock import Clock, SystemClock
from tasker_core.config import Config, load_config
from tasker_core.errors import StaleStateError, StepNotFoundError, TemplateNotFoundError
from tasker_core.events import EventBus, SinkStats, Subscriber
from tasker_core.fsm import StepState, TaskState
from tasker_core.handlers import decorated_handlers
from tasker_core.models import JSON, Step, StepChange, Task, TaskChange, TaskRequest, Transition
from tasker_core.orchestration.coordinator import Coordinator
from tasker_core.orchestration.finalizer import ExecutionContext, context_from_steps
from tasker_core.orchestration.leases import new_owner_id
from tasker_core.plugin import PluginHost
from tasker_core.protocols import Change, EventSink, Queue, Store
from tasker_core.registry import Registry
from tasker_core.solver import WorkflowGraph, build_graph
from tasker_core.templates import TaskTemplate, load_template_file

ACTIVE_TASK_STATES = (TaskState.PENDING.value, TaskState.IN_PROGRESS.value)


class Engine:
    def __init__(
        self,
        config: Config | None = None,
        *,
        store: Store | None = None,
        queue: Queue | None = None,
        sinks: Sequence[EventSink] | None = None,
        clock: Clock | None = None,
        plugins: PluginHost | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        self.plugins = plugins if plugins is not None else PluginHost.create()
        self.plugins.configure(self.config)
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.store = (
            store
            if store is not None
            else self.plugins.make_store(self.config.store.url, self.config)
        )
        self.queue = (
            queue
            if queue is not None
            else self.plugins.make_queue(self.config.queue.url, self.config)
        )
        ev = self.config.events
        if sinks is None:
            sinks = self.plugins.make_sinks(list(ev.sinks), self.config)
        self.bus = EventBus(
            sinks,
            buffer_size=ev.buffer_size,
            batch_size=ev.batch_size,
            flush_interval=ev.flush_interval,
        )
        self.registry = registry if registry is not None else Registry()
        for name, fn in {**decorated_handlers(), **self.plugins.handlers()}.items():
            self.registry.register_handler(name, fn)
        self.owner = self.config.execution.worker_id or new_owner_id()
        self._graphs: dict[str, WorkflowGraph] = {}
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._drive_lock = threading.Lock()
        self._background: threading.Thread | None = None
        self._stop = threading.Event()
        self.coordinator = Coordinator(
            store=self.store,
            queue=self.queue,
            bus=self.bus,
            clock=self.clock,
            config=self.config,
            owner=self.owner,
            template_for=self._template_of,
            graph_for=self._graph_of,
            handler_for=self._handler,
        )

    # -- templates and handlers -------------------------------------------------------------

    def register_handler(self, name: str, fn: Callable[..., Any]) -> None:
        self.registry.register_handler(name, fn)

    def register_template(self, template: TaskTemplate) -> TaskTemplate:
        self.registry.register_template(template)
        return template

    def load_template(self, path: str | os.PathLike[str]) -> TaskTemplate:
        default = self.config.execution.default_max_attempts
        return self.register_template(load_template_file(path, default_max_attempts=default))

    def get_template(self, namespace: str, name: str, version: str | None = None) -> TaskTemplate:
        """The registry first, then template-finder plugins (e.g. YAML files on disk)."""
        try:
            return self.registry.get_template(namespace, name, version)
        except TemplateNotFoundError:
            found = self.plugins.find_template(namespace, name, version, self.config)
            if found is None:
                raise
            return found

    def _template_of(self, task: Task) -> TaskTemplate:
        return self.get_template(task.namespace, task.name, task.version)

    def _graph_of(self, template: TaskTemplate) -> WorkflowGraph:
        key = f"{template.namespace}/{template.name}@{template.version}"
        graph = self._graphs.get(key)
        if graph is None:
            graph = build_graph([(s.name, s.depends_on) for s in template.steps])
            self._graphs[key] = graph
        return graph

    def _handler(self, ref: str) -> Callable[..., Any]:
        fn = self._handlers.get(ref)
        if fn is None:
            fn = self.registry.resolve_handler(ref)
            self._handlers[ref] = fn
        return fn

    # -- submitting and running ----------------------------------------------------------------

    def submit(self, request: TaskRequest) -> Task:
        """Validate and persist a task; a duplicate (same identity key) returns the existing one."""
        return self._create(request)[0]

    def _create(self, request: TaskRequest) -> tuple[Task, list[Step] | None]:
        """``submit``, also giving the steps stored when the task is new (None for a duplicate)."""
        template = self.get_template(request.namespace, request.name, request.version)
        template.validate_context(request.context)
        self.coordinator.specs_of(template)  # resolves every handler: fail at submission
        self._graph_of(template)
        now = self.clock.now()
        task = Task(
            id=os.urandom(16).hex(),
            namespace=template.namespace,
            name=template.name,
            version=template.version,
            state=TaskState.PENDING.value,
            context=dict(request.context),
            created_at=now,
            updated_at=now,
            idempotency_key=self._identity(request, template),
        )
        task_id = task.id
        pending = StepState.PENDING.value
        steps = [  # positional (attempts, retry, lease owner/expiry, results, error): per step
            Step(
                task_id,
                i,
                s.name,
                s.handler,
                pending,
                s.retry.max_attempts,
                s.retry.retryable,
                0,
                None,
                None,
                None,
                None,
                None,
                now,
            )
            for i, s in enumerate(template.steps)
        ]
        stored, created = self.store.create_task(task, steps)
        if created:
            self._emit(stored, "task.created")
        return stored, steps if created else None

    def _identity(self, request: TaskRequest, template: TaskTemplate) -> str | None:
        strategy = self.config.identity.strategy
        if strategy == "none":
            return None
        if request.idempotency_key is not None or strategy == "key":
            return request.idempotency_key
        material = json.dumps(
            [template.namespace, template.name, template.version, request.context],
            sort_keys=True,
            separators=(",", ":"),
            default=str,
        )
        return "sha256:" + hashlib.sha256(material.encode()).hexdigest()

    def run(self, request: TaskRequest, timeout: float | None = None) -> Task:
        """Submit (idempotently) and drive the task until it completes or fails."""
        task, created = self._create(request)
        return self._run(task.id, timeout, created)

    def run_task(self, task_id: str, timeout: float | None = None) -> Task:
        """Drive a stored task (new, waiting, interrupted or retried) to a final state."""
        return self._run(task_id, timeout, None)

    def _run(self, task_id: str, timeout: float | None, created: list[Step] | None) -> Task:
        task = self.store.get_task(task_id)
        if task.state not in ACTIVE_TASK_STATES:
            return task
        self.coordinator.track(task_id, created)
        self._drive_until(lambda: not self.coordinator.is_active(task_id), timeout, task_id)
        return self.store.get_task(task_id)

    def resume(self, timeout: float | None = None) -> list[Task]:
        """Pick up every unfinished task in the store (after a crash, say) and finish them."""
        active = self.store.list_tasks(ACTIVE_TASK_STATES, limit=1_000_000)
        for task in active:
            self.coordinator.track(task.id)
        ids = [t.id for t in active]
        self._drive_until(
            lambda: not any(self.coordinator.is_active(i) for i in ids), timeout, None
        )
        return [self.store.get_task(i) for i in ids]

    def _drive_until(
        self, until: Callable[[], bool], timeout: float | None, task_id: str | None
    ) -> None:
        if self._background is not None:
            if task_id is not None:
                self.coordinator.wait_finished(task_id, timeout)
            return
        deadline = None if timeout is None else self.clock.now() + timeout
        with self._drive_lock:
            self.coordinator.drive(
                lambda: until() or (deadline is not None and self.clock.now() >= deadline),
                deadline=deadline,
            )

    def start(self) -> None:
        """Drive every tracked task on a background thread until :meth:`stop`."""
        if self._background is not None:
            return
        self._stop.clear()

        def loop() -> None:
            with self._drive_lock:
                self.coordinator.drive(lambda: False, stop=self._stop)

        self._background = threading.Thread(target=loop, name="tasker-coordinator", daemon=True)
        self._background.start()

    def submit_background(self, request: TaskRequest) -> Task:
        """Submit and hand the task to the background loop (see :meth:`start`)."""
        task, created = self._create(request)
        self.coordinator.track(task.id, created)
        return task

    def stop(self, timeout: float = 10.0) -> None:
        if self._background is None:
            return
        self._stop.set()
        self.coordinator.interrupt()
        self._background.join(timeout)
        self._background = None

    # -- manual operations -----------------------------------------------------------------------

    def cancel(self, task_id: str, reason: str = "cancelled by operator") -> Task:
        task = self.store.get_task(task_id)
        changes: list[Change] = [TaskChange(task_id, task.state, TaskState.CANCELLED, reason)]
        cancellable = (StepState.PENDING, StepState.ENQUEUED, StepState.ERROR)
        for step in self.store.get_steps(task_id):
            if step.state in cancellable:
                changes.append(
                    StepChange(task_id, step.name, step.state, StepState.CANCELLED, reason=reason)
                )
        return self._manual(task, changes, reason)

    def retry(self, task_id: str, reason: str = "manual retry") -> Task:
        """Put a failed task back to work, granting each failed step a fresh attempt budget."""
        task = self.store.get_task(task_id)
        template = self._template_of(task)
        changes: list[Change] = [TaskChange(task_id, task.state, TaskState.PENDING, reason)]
        for step in self.store.get_steps(task_id):
            if step.state == StepState.ERROR:
                budget = template.steps[step.index].retry.max_attempts if step.retryable else 1
                changes.append(
                    StepChange(
                        task_id,
                        step.name,
                        step.state,
                        StepState.ENQUEUED,
                        reason=reason,
                        max_attempts=step.attempts + budget,
                    )
                )
        return self._manual(task, changes, reason)

    def resolve(
        self,
        task_id: str,
        step: str | None = None,
        results: JSON = None,
        reason: str = "resolved by operator",
    ) -> Task:
        """Resolve one step (its dependents may then run) or, without ``step``, the whole task."""
        task = self.store.get_task(task_id)
        if step is None:
            changes: list[Change] = [
                TaskChange(task_id, task.state, TaskState.RESOLVED_MANUALLY, reason)
            ]
            return self._manual(task, changes, reason)
        current = {s.name: s for s in self.store.get_steps(task_id)}
        if step not in current:
            raise StepNotFoundError(task_id, step, list(current))
        changes = [
            StepChange(
                task_id,
                step,
                current[step].state,
                StepState.RESOLVED_MANUALLY,
                reason=reason,
                results=results,
            )
        ]
        if task.state == TaskState.ERROR:
            changes.append(
                TaskChange(task_id, task.state, TaskState.PENDING, f"step {step} resolved manually")
            )
        return self._manual(task, changes, reason)

    def _manual(self, task: Task, changes: list[Change], reason: str) -> Task:
        applied = self.store.apply(changes, self.clock.now())
        if not all(applied):
            raise StaleStateError(
                f"task {task.id} changed while {reason!r} was being applied; nothing was changed "
                "where the state had moved — read it again and retry"
            )
        for change in changes:
            if isinstance(change, TaskChange):
                name = {
                    TaskState.CANCELLED: "task.cancelled",
                    TaskState.RESOLVED_MANUALLY: "task.resolved",
                    TaskState.PENDING: "task.retried",
                }[TaskState(change.to_state)]
                self._emit(task, name, reason=reason)
            else:
                name = {
                    StepState.CANCELLED: "step.cancelled",
                    StepState.RESOLVED_MANUALLY: "step.resolved",
                    StepState.ENQUEUED: "step.enqueued",
                }[StepState(change.to_state)]
                self._emit(task, name, step=change.step, reason=reason)
        self.coordinator.reload(task.id)
        return self.store.get_task(task.id)

    # -- reading ---------------------------------------------------------------------------------

    def get_task(self, task_id: str) -> Task:
        return self.store.get_task(task_id)

    def get_steps(self, task_id: str) -> list[Step]:
        return self.store.get_steps(task_id)

    def transitions(self, task_id: str) -> list[Transition]:
        return self.store.get_transitions(task_id)

    def list_tasks(self, states: Sequence[str] | None = None, limit: int = 100) -> list[Task]:
        return self.store.list_tasks(states, limit=limit)

    def execution_context(self, task_id: str) -> ExecutionContext:
        task = self.store.get_task(task_id)
        graph = self._graph_of(self._template_of(task))
        return context_from_steps(
            self.store.get_steps(task_id),
            graph,
            self.clock.now(),
            stop_on_failure=self.config.execution.on_failure == "stop",
        )

    # -- events ----------------------------------------------------------------------------------

    def subscribe(self, pattern: str, fn: Subscriber) -> Callable[[], None]:
        """Call ``fn(event)`` for every event matching the glob ``pattern``; returns unsubscribe."""
        return self.bus.subscribe(pattern, fn)

    def flush_events(self, timeout: float = 5.0) -> bool:
        return self.bus.flush(timeout)

    def event_stats(self) -> Mapping[str, SinkStats]:
        return self.bus.stats()

    def _emit(self, task: Task, name: str, **data: JSON) -> None:
        self.bus.emit(
            [
                self.bus.make(
                    name,
                    task_id=task.id,
                    namespace=task.namespace,
                    workflow=task.name,
                    version=task.version,
                    time=self.clock.now(),
                    **data,
                )
            ]
        )

    # -- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        self.stop()
        self.coordinator.close()
        self.bus.close()
        self.queue.close()
        self.store.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
