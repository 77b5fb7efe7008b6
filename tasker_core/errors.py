"""The exceptions tasker raises.

One small hierarchy under :class:`TaskerError` so callers can catch everything tasker means with
one ``except``. The native module raises the graph and transition errors defined here (it imports
this module), so a user never meets a Rust-specific exception type. Each exception keeps the facts
it reports as attributes, so tools can act on them without parsing messages.
"""

from __future__ import annotations

from collections.abc import Sequence


class TaskerError(Exception):
    """Base of every exception tasker raises on purpose."""


class InvalidTransitionError(TaskerError, ValueError):
    """A state transition the spec's state table does not allow; nothing was changed."""

    def __init__(
        self,
        kind: str,
        from_state: str,
        to_state: str | None = None,
        event: str | None = None,
    ) -> None:
        self.kind = kind
        self.from_state = from_state
        self.to_state = to_state
        self.event = event
        if to_state is not None:
            what = f"from {from_state!r} to {to_state!r}"
        else:
            what = f"by event {event!r} from {from_state!r}"
        super().__init__(f"illegal {kind} transition {what}")


class UnknownStateError(TaskerError, ValueError):
    """A state or event name (or code) that the state table does not define."""

    def __init__(self, kind: str, what: str, value: object) -> None:
        self.kind = kind
        self.what = what
        self.value = value
        super().__init__(f"unknown {kind} {what} {value!r}")


class GraphError(TaskerError, ValueError):
    """A workflow's step graph is not a valid DAG."""


class DuplicateStepError(GraphError):
    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(f"duplicate step name {step!r}")


class UnknownDependencyError(GraphError):
    def __init__(self, step: str, dependency: str) -> None:
        self.step = step
        self.dependency = dependency
        super().__init__(f"step {step!r} depends on unknown step {dependency!r}")


class SelfDependencyError(GraphError):
    def __init__(self, step: str) -> None:
        self.step = step
        super().__init__(f"step {step!r} depends on itself")


class CycleError(GraphError):
    """The graph has a cycle; ``path`` names it, first step repeated last (a -> b -> a)."""

    def __init__(self, path: Sequence[str]) -> None:
        self.path = list(path)
        super().__init__("dependency cycle: " + " -> ".join(self.path))


class ConfigError(TaskerError, ValueError):
    """Bad configuration: names the key path (``execution.lease``) and where it came from."""

    def __init__(self, message: str, key_path: str = "", location: str = "") -> None:
        self.key_path = key_path
        self.location = location
        where = f"{location}: " if location else ""
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}")


class TemplateError(TaskerError, ValueError):
    """A workflow template is invalid: names file:line:column where the source has one."""

    def __init__(
        self,
        message: str,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        parts = [p for p in (file, line, column) if p is not None]
        where = ":".join(str(p) for p in parts)
        super().__init__(f"{where}: {message}" if where else message)


class TemplateNotFoundError(TaskerError, LookupError):
    def __init__(self, namespace: str, name: str, version: str | None) -> None:
        self.namespace = namespace
        self.name = name
        self.version = version
        at = f"@{version}" if version else ""
        super().__init__(f"no workflow template {namespace}/{name}{at}")


class HandlerNotFoundError(TaskerError, LookupError):
    """A step names a handler that is neither registered nor importable."""


class ContextValidationError(TaskerError, ValueError):
    """A task context does not match its template's context_schema."""


class TaskNotFoundError(TaskerError, LookupError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"no task {task_id!r}")


class StepNotFoundError(TaskerError, LookupError):
    def __init__(self, task_id: str, step: str, known: list[str]) -> None:
        self.task_id = task_id
        self.step = step
        super().__init__(f"task {task_id} has no step {step!r} (steps: {', '.join(known)})")


class StaleStateError(TaskerError):
    """A compare-and-set lost: the record was no longer in the expected state. Nothing changed."""


class PluginError(TaskerError):
    """A plugin is missing, duplicated, or misbehaved at registration."""
