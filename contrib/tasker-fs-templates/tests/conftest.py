"""Fixtures: a templates directory and helpers that write template files into it.

Helpers are fixtures returning callables (not an importable module) because the suite runs
with ``--import-mode=importlib`` next to other suites.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

Put = Callable[..., Path]


def template_yaml(
    namespace: str, name: str, version: str, *, step: str = "only", description: str = ""
) -> str:
    """A small valid template; ``step`` and ``description`` tell otherwise equal files apart."""
    lines = [
        f"namespace: {namespace}",
        f"name: {name}",
        f"version: '{version}'",
    ]
    if description:
        lines.append(f"description: {description}")
    lines += ["steps:", f"  - name: {step}", "    handler: demo.work", ""]
    return "\n".join(lines)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "templates"
    path.mkdir()
    return path


@pytest.fixture
def put(root: Path) -> Put:
    """``put(relpath, namespace, name, version, **kw)`` writes a template below ``root``."""

    def write(
        relpath: str,
        namespace: str,
        name: str,
        version: str,
        *,
        base: Path | None = None,
        **kwargs: str,
    ) -> Path:
        path = (base or root) / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template_yaml(namespace, name, version, **kwargs), encoding="utf-8")
        return path

    return write


@pytest.fixture
def settle(tmp_path: Path) -> Callable[[], None]:
    """Date every file and directory below tmp_path an hour back, as if written long ago.

    Signatures younger than the racy window are not trusted alone (see cache.py); tests that
    check what the cache keeps call this so the cache may keep everything.
    """

    def age() -> None:
        past = time.time_ns() - 3600 * 10**9
        for directory, dirs, files in os.walk(tmp_path):
            for entry in [*dirs, *files]:
                os.utime(os.path.join(directory, entry), ns=(past, past))
            os.utime(directory, ns=(past, past))

    return age
