"""tasker-example-audit: every lifecycle event, one JSON object per line, in rotated files.

An example third-party tasker plugin, written only against tasker's public API. Enable it with
``events: {sinks: [log, audit], audit: {path: audit/tasker.jsonl}}`` in tasker.yaml.
"""

from tasker_example_audit.options import AuditOptions, parse_size
from tasker_example_audit.sink import AuditSink, read_audit_log

__all__ = ["AuditOptions", "AuditSink", "parse_size", "read_audit_log"]
__version__ = "0.1.0"
