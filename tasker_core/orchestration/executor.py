"""Runs step handlers: sync ones on a pool of threads, async ones on one event loop thread.

The executor knows nothing of stores or states. It turns a :class:`Job` into a
:class:`~tasker_core.models.StepOutcome` and hands it to ``on_done`` (the coordinator's inbox).
A sync handler cannot be interrupted, so a timed-out job is *abandoned*: its late outcome is
dropped and a replacement thread keeps the pool at full strength.

``on_idle`` lets the owner use a pool thread that has just reported an outcome and found no job
waiting: the coordinator records outcomes and dispatches the next steps right there, so a step's
outcome reaches the store without waking another thread (under the GIL, every such hand-over
costs more than a no-op step itself).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from attrs import Factory, define, field

from tasker_core.handlers import PermanentError, RetryableError, StepContext
from tasker_core.models import StepError, StepOutcome
from tasker_core.serialization import check_json

log = logging.getLogger("tasker.executor")

_SCALARS = (str, int, bool, type(None))  # floats are checked: NaN and Infinity are not JSON


@define(eq=False)
class Job:
    task_id: str
    step: str
    attempt: int
    fn: Callable[..., Any]
    ctx: StepContext
    timeout: float | None
    started_at: float = 0.0
    abandoned: bool = field(default=False)
    is_async: bool = field(
        default=Factory(lambda job: inspect.iscoroutinefunction(job.fn), takes_self=True)
    )
    """Whether ``fn`` is ``async def``: a caller that knows it (per step, not per attempt) passes
    it, saving an ``inspect`` call per job on the hot path."""


def _failure(job: Job, exc: BaseException, started: float, duration: float) -> StepOutcome:
    retry_after = exc.retry_after if isinstance(exc, RetryableError) else None
    error = StepError(
        error_class=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        retryable=not isinstance(exc, PermanentError),
    )
    return StepOutcome(
        task_id=job.task_id,
        step=job.step,
        attempt=job.attempt,
        ok=False,
        error=error,
        retry_after=retry_after,
        started_at=started,
        duration=duration,
    )


def _success(job: Job, result: Any, started: float, duration: float) -> StepOutcome:
    if not isinstance(result, _SCALARS):
        try:
            check_json(result)
        except TypeError as exc:
            message = f"step {job.step!r} of task {job.task_id} returned a non-JSON result: {exc}"
            return _failure(job, PermanentError(message), started, duration)
    # Positional (task_id, step, attempt, ok, results, error, retry_after, started_at, duration):
    # this runs once per attempt.
    return StepOutcome(
        job.task_id, job.step, job.attempt, True, result, None, None, started, duration
    )


def timeout_outcome(job: Job, now: float) -> StepOutcome:
    """The outcome recorded when ``job`` overran its timeout (a retryable failure)."""
    message = f"step {job.step!r} of task {job.task_id} exceeded its timeout of {job.timeout}s"
    return StepOutcome(
        task_id=job.task_id,
        step=job.step,
        attempt=job.attempt,
        ok=False,
        error=StepError("StepTimeoutError", message, retryable=True),
        started_at=job.started_at,
        duration=now - job.started_at,
    )


class Executor:
    """A fixed-size thread pool plus an event loop, reporting every outcome to ``on_done``."""

    def __init__(
        self,
        max_workers: int,
        on_done: Callable[[StepOutcome], None],
        *,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        """``on_done(outcome)`` receives every outcome, from whichever thread produced it.

        ``on_idle()``, when given, is called by a pool thread after it reported an outcome and
        found no job waiting (never by the event loop thread of async jobs). An exception it
        raises is logged, and the thread goes on serving jobs.
        """
        if max_workers < 1:
            raise ValueError("max_workers must be >= 1")
        self._on_done = on_done
        self._on_idle = on_idle
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._wanted = max_workers
        self._alive = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._closed = False
        for _ in range(max_workers):
            self._spawn()

    # -- public -------------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Run ``job`` (its ``started_at`` is set by the caller, on the engine's clock)."""
        self.submit_many([job])

    def submit_many(self, jobs: Sequence[Job]) -> None:
        """Run ``jobs`` (a tick's worth)."""
        for job in jobs:
            if job.is_async:
                loop = self._event_loop()
                asyncio.run_coroutine_threadsafe(self._run_async(job), loop)
            else:
                self._jobs.put(job)

    def abandon(self, job: Job) -> None:
        """Stop waiting for ``job``: drop its outcome, and keep the pool's strength for others."""
        job.abandoned = True
        if not job.is_async:
            with self._lock:
                self._wanted += 1
            self._spawn()

    def shutdown(self, wait: bool = True, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._alive
        for _ in range(threads):
            self._jobs.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            if wait and self._loop_thread is not None:
                self._loop_thread.join(timeout)

    # -- internals ----------------------------------------------------------------------------

    def _spawn(self) -> None:
        with self._lock:
            self._alive += 1
        threading.Thread(target=self._work, name="tasker-step", daemon=True).start()

    def _work(self) -> None:
        jobs = self._jobs
        run_one = self._run_one
        on_idle = self._on_idle
        while True:
            job = jobs.get()
            if job is None:
                break
            if not run_one(job):
                return
            del job  # an idle worker must not keep its last job (and the task's data) alive
            if on_idle is not None and jobs.empty():
                try:
                    on_idle()
                except Exception:
                    log.exception("the executor's on_idle callback failed")
        with self._lock:
            self._alive -= 1

    def _run_one(self, job: Job) -> bool:
        """Run ``job`` and report it; False when this thread must exit (it was replaced)."""
        started = job.started_at
        t0 = time.perf_counter()
        try:
            result = job.fn(job.ctx)
        except Exception as exc:
            outcome = _failure(job, exc, started, time.perf_counter() - t0)
        else:
            outcome = _success(job, result, started, time.perf_counter() - t0)
        if not job.abandoned:
            self._on_done(outcome)
            return True
        log.warning("dropped late outcome of abandoned step %s/%s", job.task_id, job.step)
        with self._lock:
            if self._alive > self._wanted:
                self._wanted -= 1  # the replacement took our place
                self._alive -= 1
                return False
        return True

    async def _run_async(self, job: Job) -> None:
        started = job.started_at
        t0 = time.perf_counter()
        try:
            coro = job.fn(job.ctx)
            if job.timeout is not None:
                result = await asyncio.wait_for(coro, job.timeout)
            else:
                result = await coro
        except TimeoutError:
            outcome = timeout_outcome(job, started + (time.perf_counter() - t0))
        except Exception as exc:
            outcome = _failure(job, exc, started, time.perf_counter() - t0)
        else:
            outcome = _success(job, result, started, time.perf_counter() - t0)
        if not job.abandoned:
            self._on_done(outcome)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()
                    loop.close()

                self._loop_thread = threading.Thread(target=run, name="tasker-async", daemon=True)
                self._loop_thread.start()
                ready.wait()
                self._loop = loop
            return self._loop
