"""pytest-tasker: the conformance kit for tasker-core and its backends.

- ``pytest_tasker.reference``: a readable pure-Python model of the native core's semantics;
- ``pytest_tasker.strategies``: hypothesis strategies for workflow graphs and readiness inputs;
- ``pytest_tasker.plugin``: the pytest11 entry point (hypothesis profiles dev, ci, fast).

Import the submodule you need; this package imports nothing on its own so that loading the
pytest plugin stays cheap.
"""

__version__ = "0.1.0"
