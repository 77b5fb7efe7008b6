"""pytest-tasker: the conformance kit for tasker-core and its backends.

- ``pytest_tasker.suites``: abstract Store, Queue, EventSink and TemplateFinder suites a backend
  subclasses (override one fixture that builds the backend; declare ``capabilities``);
- ``pytest_tasker.reference``: a readable pure-Python model of the native core's semantics;
- ``pytest_tasker.strategies``: hypothesis strategies for workflow graphs and readiness inputs;
- ``pytest_tasker.workflows``: template mappings, handler behaviours and invalid templates;
- ``pytest_tasker.assert_legal_history``: every recorded history is a legal path of the spec;
- ``pytest_tasker.plugin``: the pytest11 entry point (hypothesis profiles dev, ci, fast).

Names are imported on first use, so loading the pytest plugin stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_tasker.history import assert_legal_history, history_problems

__version__ = "0.1.0"
__all__ = ["__version__", "assert_legal_history", "history_problems"]


def __getattr__(name: str) -> Any:
    if name in ("assert_legal_history", "history_problems"):
        from pytest_tasker import history

        return getattr(history, name)
    raise AttributeError(f"module 'pytest_tasker' has no attribute {name!r}")
