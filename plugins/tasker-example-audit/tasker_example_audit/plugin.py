"""The plugin module named by the ``tasker`` entry point: registers the ``audit`` sink."""

from __future__ import annotations

from tasker_core import Config
from tasker_core.plugin import RegisterEventSink, hookimpl

from tasker_example_audit.options import SECTION, AuditOptions
from tasker_example_audit.sink import AuditSink

__all__ = ["make_audit_sink", "tasker_register_event_sinks"]


def make_audit_sink(config: Config) -> AuditSink:
    """Build the sink from ``events.audit`` (tasker passes it in ``events.sink_options``)."""
    return AuditSink(AuditOptions.from_mapping(config.events.sink_options.get(SECTION) or {}))


@hookimpl
def tasker_register_event_sinks(register: RegisterEventSink) -> None:
    register(SECTION, make_audit_sink)
