"""The workflow the schema-upgrade tests put in flight across versions: a, b -> c -> d."""

from __future__ import annotations

from typing import Any


def join_template(namespace: str) -> dict[str, Any]:
    """The join workflow under ``namespace`` (each test module its own), name ``join``."""
    return {
        "namespace": namespace,
        "name": "join",
        "version": "1.0.0",
        "steps": [
            {"name": "a", "handler": "ok"},
            {"name": "b", "handler": "ok"},
            {"name": "c", "handler": "ok", "depends_on": ["a", "b"]},
            {"name": "d", "handler": "ok", "depends_on": ["c"]},
        ],
    }


JOIN_GRAPH = [[[], [2]], [[], [2]], [[0, 1], [3]], [[2], []]]
"""The join's (parents, children) by step index, as ``tasker_load_graph`` takes it."""
