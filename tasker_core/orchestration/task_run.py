"""One running task as the coordinator sees it: step views, counters and the dependency tracker.

The views mirror what the store holds (they change only after the store accepted a change), and the
counters make the finalizer's question O(1). Readiness is incremental: the steps a tick completed
are handed to the native tracker in one call, which answers which children they unblocked in
O(out-degree) each; nothing here rescans all steps after the run was loaded.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from tasker_core.fsm import StepState
from tasker_core.models import JSON, Step, Task
from tasker_core.orchestration.finalizer import ExecutionContext, can_retry, evaluate
from tasker_core.solver import DependencyTracker, WorkflowGraph
from tasker_core.templates import TaskTemplate

PENDING = StepState.PENDING.value
ENQUEUED = StepState.ENQUEUED.value
IN_PROGRESS = StepState.IN_PROGRESS.value
COMPLETE = StepState.COMPLETE.value
ERROR = StepState.ERROR.value
CANCELLED = StepState.CANCELLED.value
RESOLVED = StepState.RESOLVED_MANUALLY.value
SATISFIED = frozenset({COMPLETE, RESOLVED})


class StepView:
    """Mutable mirror of one stored step plus what the coordinator needs to run it."""

    __slots__ = (
        "attempts",
        "backoff",
        "config",
        "error",
        "fn",
        "index",
        "is_async",
        "lease_owner",
        "max_attempts",
        "name",
        "next_retry_at",
        "results",
        "retryable",
        "state",
        "timeout",
    )

    def __init__(
        self,
        step: Step,
        fn: Callable[..., Any],
        timeout: float | None,
        config: dict[str, JSON],
        backoff: tuple[float | None, float | None],
        is_async: bool,
    ) -> None:
        self.index = step.index
        self.name = step.name
        self.state = step.state
        self.attempts = step.attempts
        self.max_attempts = step.max_attempts
        self.retryable = step.retryable
        self.next_retry_at = step.next_retry_at
        self.results = step.results
        self.error = step.error
        self.lease_owner = step.lease_owner
        self.fn = fn
        self.is_async = is_async
        self.timeout = timeout
        self.config = config
        self.backoff = backoff
        """(base, max) overriding the configured backoff for this step; None = configured."""

    def may_retry(self) -> bool:
        """In ``error`` with a retry scheduled and attempts left (not failed for good)."""
        return can_retry(self)


class TaskRun:
    """A task being driven by this engine."""

    def __init__(
        self,
        task: Task,
        template: TaskTemplate,
        graph: WorkflowGraph,
        views: list[StepView],
        stop_on_failure: bool,
    ) -> None:
        self.task = task
        self.task_id = task.id
        """Constant for the run (``task`` is replaced as the task moves)."""
        self.template = template
        self.graph = graph
        self.views = views
        self.by_name = {v.name: v for v in views}
        self.stop_on_failure = stop_on_failure
        # A plain dict with every state present: Counter's item access is slower (a dict
        # subclass misses the interpreter's dict fast paths), and this runs three times a step.
        self.counts: dict[str, int] = dict.fromkeys([s.value for s in StepState], 0)
        for view in views:
            self.counts[view.state] += 1
        self.retrying = sum(1 for v in views if v.state == ERROR and v.may_retry())
        self.tracker: DependencyTracker = graph.tracker(
            [v.index for v in views if v.state in SATISFIED]
        )
        self._newly_satisfied: list[int] = []
        self.candidates: set[int] = set()
        """Steps to look at on the next dispatch (unblocked children, due retries)."""
        self.dirty = True
        self.started_at: float | None = task.started_at

    @property
    def failed_permanently(self) -> int:
        return self.counts[ERROR] - self.retrying

    def initial_candidates(self) -> None:
        """Pending steps whose parents are all satisfied, and every errored step (start-up scan)."""
        views = self.views
        self.candidates.update(i for i in self.tracker.unblocked() if views[i].state == PENDING)
        self.candidates.update(v.index for v in views if v.state == ERROR)

    def set_state(self, view: StepView, state: str) -> None:
        """Move a view (after the store accepted it), keeping counters and the tracker in step."""
        old = view.state
        was_retrying = old == ERROR and view.may_retry()
        counts = self.counts
        counts[old] -= 1
        counts[state] += 1
        view.state = state
        if state in SATISFIED:
            self._newly_satisfied.append(view.index)
        elif state == ERROR:
            self.retrying += view.may_retry() - was_retrying
            self.dirty = True
            return
        self.retrying -= was_retrying
        self.dirty = True

    def settle_dependencies(self) -> None:
        """Tell the tracker about the steps satisfied since the last call, in one native call
        (O(out-degree) each), and make their newly unblocked pending children candidates."""
        if self._newly_satisfied:
            views = self.views
            for child in self.tracker.mark_satisfied_many(self._newly_satisfied):
                if views[child].state == PENDING:
                    self.candidates.add(child)
            self._newly_satisfied.clear()

    def is_ready(self, view: StepView, now: float) -> bool:
        if self.stop_on_failure and self.failed_permanently:
            return False
        if view.state == PENDING:
            return self.tracker.remaining_parents(view.index) == 0
        if view.state == ERROR and view.may_retry():
            assert view.next_retry_at is not None
            return now >= view.next_retry_at and self.tracker.remaining_parents(view.index) == 0
        return False

    def dependency_results(self, view: StepView) -> dict[str, JSON]:
        views = self.views
        return {views[p].name: views[p].results for p in self.graph.parents(view.index)}

    def next_retry_at(self) -> float | None:
        times = [v.next_retry_at for v in self.views if v.may_retry() and v.next_retry_at]
        return min(times) if times else None

    def context(self, ready: int) -> ExecutionContext:
        return evaluate(
            total=len(self.views),
            by_state=self.counts,
            ready=ready,
            waiting_for_retry=self.retrying,
            failed_permanently=self.failed_permanently,
            next_retry_at=self.next_retry_at() if self.retrying else None,
            stop_on_failure=self.stop_on_failure,
        )

    def failed_steps(self) -> list[StepView]:
        return [v for v in self.views if v.state == ERROR and not v.may_retry()]


StepSpec = tuple[Callable[..., Any], bool, "float | None", dict[str, JSON], tuple[Any, Any]]
"""What a template says about running one step: (handler, is it async, timeout, config,
(backoff base, backoff max)); the same for every task of the template."""


def step_specs(
    template: TaskTemplate, resolve: Callable[[str], Callable[..., Any]], default_timeout: float
) -> dict[str, StepSpec]:
    """Each step's :data:`StepSpec` by name, handlers resolved once per distinct handler."""
    handlers: dict[str, tuple[Callable[..., Any], bool]] = {}
    specs: dict[str, StepSpec] = {}
    for spec in template.steps:
        handler = handlers.get(spec.handler)
        if handler is None:
            fn = resolve(spec.handler)
            handler = handlers[spec.handler] = (fn, inspect.iscoroutinefunction(fn))
        timeout = spec.timeout if spec.timeout is not None else default_timeout
        backoff = (spec.retry.backoff_base, spec.retry.backoff_max)
        specs[spec.name] = (handler[0], handler[1], timeout, dict(spec.config), backoff)
    return specs


def build_views(steps: Sequence[Step], specs: dict[str, StepSpec]) -> list[StepView]:
    """A view of each stored step; every view gets its own copy of the step's config."""
    views = []
    for step in steps:
        fn, is_async, timeout, config, backoff = specs[step.name]
        views.append(StepView(step, fn, timeout, dict(config), backoff, is_async))
    return views
