"""tasker-core: dependency-ordered, retried, observable multi-step work, with a Rust core.

The public API is what this module exports; everything else is an implementation detail.
Plugin authors also use :mod:`tasker_core.plugin` (``hookimpl``) and :mod:`tasker_core.protocols`.
Names are imported on first use (PEP 562), so ``import tasker_core`` and the CLI start fast and
importing one submodule never drags in the engine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tasker_core.builtin.inprocess_queue import InProcessQueue
    from tasker_core.builtin.memory_store import MemoryStore
    from tasker_core.clock import Clock, ManualClock, SystemClock
    from tasker_core.config import Config, load_config
    from tasker_core.durations import format_duration, parse_duration
    from tasker_core.engine import Engine
    from tasker_core.errors import (
        ConfigError,
        ContextValidationError,
        CycleError,
        DuplicateStepError,
        GraphError,
        HandlerNotFoundError,
        InvalidTransitionError,
        PluginError,
        SelfDependencyError,
        StaleStateError,
        StepNotFoundError,
        TaskerError,
        TaskNotFoundError,
        TemplateError,
        TemplateNotFoundError,
        UnknownDependencyError,
        UnknownStateError,
    )
    from tasker_core.events import EventBus
    from tasker_core.fsm import (
        SPEC_EVENTS_TOML,
        SPEC_STATES_TOML,
        STEP_MACHINE,
        TASK_MACHINE,
        StepState,
        TaskState,
    )
    from tasker_core.handlers import PermanentError, RetryableError, StepContext, handler
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
        TaskRequest,
        Transition,
        WorkItem,
    )
    from tasker_core.orchestration.backoff import retry_delay
    from tasker_core.orchestration.executor import Executor, Job, timeout_outcome
    from tasker_core.orchestration.finalizer import Action, ExecutionContext, Status, evaluate
    from tasker_core.orchestration.leases import new_owner_id
    from tasker_core.protocols import EventSink, Queue, Store, TemplateFinder
    from tasker_core.registry import Registry
    from tasker_core.serialization import (
        check_json,
        copy_json,
        dumps_json,
        encode_event_payloads,
        encode_event_runs,
        loads_json,
    )
    from tasker_core.solver import DependencyTracker, WorkflowGraph, build_graph
    from tasker_core.templates import (
        RetryPolicy,
        StepTemplate,
        TaskTemplate,
        load_template_file,
        load_template_text,
        template_from_mapping,
    )

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "Registry": "tasker_core.registry",
    "template_from_mapping": "tasker_core.templates",
    "load_template_text": "tasker_core.templates",
    "STEP_MACHINE": "tasker_core.fsm",
    "TASK_MACHINE": "tasker_core.fsm",
    "WorkflowGraph": "tasker_core.solver",
    "DependencyTracker": "tasker_core.solver",
    "build_graph": "tasker_core.solver",
    "dumps_json": "tasker_core.serialization",
    "loads_json": "tasker_core.serialization",
    "check_json": "tasker_core.serialization",
    "copy_json": "tasker_core.serialization",
    "encode_event_payloads": "tasker_core.serialization",
    "encode_event_runs": "tasker_core.serialization",
    "retry_delay": "tasker_core.orchestration.backoff",
    "Executor": "tasker_core.orchestration.executor",
    "Job": "tasker_core.orchestration.executor",
    "timeout_outcome": "tasker_core.orchestration.executor",
    "new_owner_id": "tasker_core.orchestration.leases",
    "evaluate": "tasker_core.orchestration.finalizer",
    "MemoryStore": "tasker_core.builtin.memory_store",
    "InProcessQueue": "tasker_core.builtin.inprocess_queue",
    "JSON": "tasker_core.models",
    "format_duration": "tasker_core.durations",
    "parse_duration": "tasker_core.durations",
    "SPEC_EVENTS_TOML": "tasker_core.fsm",
    "SPEC_STATES_TOML": "tasker_core.fsm",
    "Action": "tasker_core.orchestration.finalizer",
    "Claim": "tasker_core.models",
    "Clock": "tasker_core.clock",
    "Config": "tasker_core.config",
    "ConfigError": "tasker_core.errors",
    "ContextValidationError": "tasker_core.errors",
    "CycleError": "tasker_core.errors",
    "DuplicateStepError": "tasker_core.errors",
    "Engine": "tasker_core.engine",
    "Event": "tasker_core.models",
    "EventBus": "tasker_core.events",
    "EventSink": "tasker_core.protocols",
    "ExecutionContext": "tasker_core.orchestration.finalizer",
    "GraphError": "tasker_core.errors",
    "HandlerNotFoundError": "tasker_core.errors",
    "InvalidTransitionError": "tasker_core.errors",
    "ManualClock": "tasker_core.clock",
    "PermanentError": "tasker_core.handlers",
    "PluginError": "tasker_core.errors",
    "Queue": "tasker_core.protocols",
    "RetryPolicy": "tasker_core.templates",
    "RetryableError": "tasker_core.handlers",
    "SelfDependencyError": "tasker_core.errors",
    "StaleStateError": "tasker_core.errors",
    "StepNotFoundError": "tasker_core.errors",
    "Status": "tasker_core.orchestration.finalizer",
    "Step": "tasker_core.models",
    "StepChange": "tasker_core.models",
    "StepContext": "tasker_core.handlers",
    "StepError": "tasker_core.models",
    "StepOutcome": "tasker_core.models",
    "StepState": "tasker_core.fsm",
    "StepTemplate": "tasker_core.templates",
    "Store": "tasker_core.protocols",
    "SystemClock": "tasker_core.clock",
    "Task": "tasker_core.models",
    "TaskChange": "tasker_core.models",
    "TaskNotFoundError": "tasker_core.errors",
    "TaskRequest": "tasker_core.models",
    "TaskState": "tasker_core.fsm",
    "TaskTemplate": "tasker_core.templates",
    "TaskerError": "tasker_core.errors",
    "TemplateError": "tasker_core.errors",
    "TemplateFinder": "tasker_core.protocols",
    "TemplateNotFoundError": "tasker_core.errors",
    "Transition": "tasker_core.models",
    "UnknownDependencyError": "tasker_core.errors",
    "UnknownStateError": "tasker_core.errors",
    "WorkItem": "tasker_core.models",
    "handler": "tasker_core.handlers",
    "load_config": "tasker_core.config",
    "load_template_file": "tasker_core.templates",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tasker_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "JSON",
    "SPEC_EVENTS_TOML",
    "SPEC_STATES_TOML",
    "STEP_MACHINE",
    "TASK_MACHINE",
    "Action",
    "Claim",
    "Clock",
    "Config",
    "ConfigError",
    "ContextValidationError",
    "CycleError",
    "DependencyTracker",
    "DuplicateStepError",
    "Engine",
    "Event",
    "EventBus",
    "EventSink",
    "ExecutionContext",
    "Executor",
    "GraphError",
    "HandlerNotFoundError",
    "InProcessQueue",
    "InvalidTransitionError",
    "Job",
    "ManualClock",
    "MemoryStore",
    "PermanentError",
    "PluginError",
    "Queue",
    "Registry",
    "RetryPolicy",
    "RetryableError",
    "SelfDependencyError",
    "StaleStateError",
    "Status",
    "Step",
    "StepChange",
    "StepContext",
    "StepError",
    "StepNotFoundError",
    "StepOutcome",
    "StepState",
    "StepTemplate",
    "Store",
    "SystemClock",
    "Task",
    "TaskChange",
    "TaskNotFoundError",
    "TaskRequest",
    "TaskState",
    "TaskTemplate",
    "TaskerError",
    "TemplateError",
    "TemplateFinder",
    "TemplateNotFoundError",
    "Transition",
    "UnknownDependencyError",
    "UnknownStateError",
    "WorkItem",
    "WorkflowGraph",
    "__version__",
    "build_graph",
    "check_json",
    "copy_json",
    "dumps_json",
    "encode_event_payloads",
    "encode_event_runs",
    "evaluate",
    "format_duration",
    "handler",
    "load_config",
    "load_template_file",
    "load_template_text",
    "loads_json",
    "new_owner_id",
    "parse_duration",
    "retry_delay",
    "template_from_mapping",
    "timeout_outcome",
]
