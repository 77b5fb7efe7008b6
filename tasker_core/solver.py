"""The dependency solver: a workflow's step graph and incremental readiness, both native.

:class:`WorkflowGraph` validates a step graph once (duplicates, unknown dependencies, self-edges,
cycles with their path) and answers order, level and readiness queries by step index;
:class:`DependencyTracker` keeps remaining-parent counters so that completing a step costs
O(out-degree). See tasker_core/_native.pyi for the full contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from tasker_core._native import DependencyTracker, WorkflowGraph

__all__ = ["DependencyTracker", "WorkflowGraph", "build_graph"]


def build_graph(steps: Sequence[tuple[str, Sequence[str]]]) -> WorkflowGraph:
    """Build a graph from ``(name, depends_on)`` pairs, in step order.

    A bare string as ``depends_on`` is refused (it would be read as one dependency per
    character), with the step named.
    """
    names: list[str] = []
    dependencies: list[list[str]] = []
    for name, depends_on in steps:
        if isinstance(depends_on, str):
            raise TypeError(
                f"step {name!r}: depends_on must be a sequence of step names, not the string "
                f"{depends_on!r}"
            )
        names.append(name)
        dependencies.append(list(depends_on))
    return WorkflowGraph(names, dependencies)
