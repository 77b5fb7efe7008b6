"""Where the ``tasker`` command sends tasker's own log records: stderr, quiet by default.

The command reports outcomes itself, so by default only warnings are logged and lifecycle
events only when they are errors; ``-v`` applies the configured ``logging.level`` and ``-vv``
DEBUG. ``logging.format: json`` writes one JSON object per line for log collectors.
"""

from __future__ import annotations

import json
import logging
import sys

from tasker_core.config import Config

__all__ = ["configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


_log_handler: logging.Handler | None = None


def configure_logging(config: Config, verbose: int) -> None:
    """tasker's loggers to stderr. Quiet by default (the command reports outcomes itself):
    warnings only, and task events only when they are errors; ``-v`` applies the configured
    ``logging.level``, ``-vv`` DEBUG."""
    global _log_handler
    root = logging.getLogger("tasker")
    if _log_handler is not None:
        root.removeHandler(_log_handler)
    handler = logging.StreamHandler(sys.stderr)
    if config.logging.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.propagate = False
    _log_handler = handler
    events = logging.getLogger("tasker.events")
    if verbose >= 2:
        root.setLevel(logging.DEBUG)
        events.setLevel(logging.NOTSET)
    elif verbose == 1:
        root.setLevel(config.logging.level)
        events.setLevel(logging.NOTSET)
    else:
        root.setLevel(max(logging.WARNING, logging.getLevelName(config.logging.level)))
        events.setLevel(logging.ERROR)
