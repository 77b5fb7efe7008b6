"""The step-handler API: what a handler receives, how it signals failure, how it is registered.

A handler is a plain function, sync or ``async def``, taking one :class:`StepContext` and returning
a JSON-serializable value (stored as the step's results). Raising :class:`RetryableError` asks for
another attempt (optionally after ``retry_after`` seconds); :class:`PermanentError` fails the step
for good; any other exception is retried as the template's retry policy allows. Handlers never see
the store or the queue: everything they may know is on the context.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from attrs import field, frozen

from tasker_core.models import JSON

F = TypeVar("F", bound=Callable[..., Any])


class RetryableError(Exception):
    """The attempt failed but may succeed later; ``retry_after`` (seconds) overrides backoff."""

    def __init__(self, message: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        if retry_after is not None and retry_after < 0:
            raise ValueError(f"retry_after must be >= 0, got {retry_after!r}")
        self.retry_after = retry_after


class PermanentError(Exception):
    """The step cannot succeed: no further attempts are made whatever the retry policy says."""


Publisher = Callable[[str, JSON], None]


_step_log = logging.getLogger("tasker.step")


@frozen(slots=False)
class StepContext:
    """Everything a handler may know about the attempt it runs.

    ``logger`` may be given as None: the adapter is then built on first use (most handlers never
    log, and building one per attempt is a measurable share of a no-op step's cost).
    """

    task_id: str
    namespace: str
    workflow: str
    version: str
    step: str
    attempt: int
    """1 for the first attempt."""
    max_attempts: int
    context: Mapping[str, JSON]
    """The task's context, as submitted (read-only by convention)."""
    step_config: Mapping[str, JSON]
    """The step's ``config`` mapping from the template."""
    dependencies: Mapping[str, JSON]
    """Results of the steps this step depends on, by step name."""
    _logger: logging.LoggerAdapter[logging.Logger] | None = field(alias="logger", eq=False)
    _publish: Publisher

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        """Logger ``tasker.step``; records carry ``task_id`` and ``step`` as extra attributes."""
        adapter = self._logger
        if adapter is None:
            adapter = logging.LoggerAdapter(_step_log, {"task_id": self.task_id, "step": self.step})
            object.__setattr__(self, "_logger", adapter)  # a cache: equal and hash ignore it
        return adapter

    def result_of(self, step: str) -> JSON:
        """The results of dependency ``step``; KeyError naming the known ones otherwise."""
        try:
            return self.dependencies[step]
        except KeyError:
            known = ", ".join(sorted(self.dependencies)) or "none"
            raise KeyError(
                f"step {self.step!r} has no dependency {step!r} (known: {known})"
            ) from None

    def publish(self, name: str, payload: JSON = None) -> None:
        """Emit a custom event ``custom.<name>`` carrying ``payload`` (JSON)."""
        self._publish(name, payload)


_decorated: dict[str, Callable[..., Any]] = {}
_decorated_lock = threading.Lock()


def handler(name: str) -> Callable[[F], F]:
    """Register the decorated function as step handler ``name`` for every engine in this process.

    >>> @handler("ecommerce.validate_order")
    ... def validate_order(ctx): ...
    """

    def register(fn: F) -> F:
        with _decorated_lock:
            existing = _decorated.get(name)
            if existing is not None and existing is not fn and not _same_function(existing, fn):
                raise ValueError(
                    f"handler name {name!r} is already used by "
                    f"{existing.__module__}.{existing.__qualname__}"
                )
            _decorated[name] = fn
        return fn

    return register


def decorated_handlers() -> dict[str, Callable[..., Any]]:
    """A snapshot of the handlers registered with :func:`handler` so far."""
    with _decorated_lock:
        return dict(_decorated)


def _same_function(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True when a module was imported twice (e.g. as script and module) and re-registers."""
    return (a.__module__, a.__qualname__) == (b.__module__, b.__qualname__)
