"""Meta-tests: every hook is tested, documented, and called only through PluginHost.

A hook added to hookspecs.py without a test in test_plugin_manager.py (a test function whose
source names the hook) or without a ``## tasker_...`` heading in docs/hooks.md fails here, and so
does a docs heading for a hook that no longer exists.
"""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pytest

from tasker_core.plugin import PROJECT, hookspecs

ROOT = Path(__file__).resolve().parents[2]
HOOKS_DOC = ROOT / "docs" / "hooks.md"
MANAGER_TESTS = Path(__file__).with_name("test_plugin_manager.py")
KERNEL = ROOT / "tasker_core"
HEADING = re.compile(r"^## (\S+)", re.MULTILINE)


def hook_names() -> list[str]:
    marker = f"{PROJECT}_spec"
    return sorted(
        name
        for name, obj in vars(hookspecs).items()
        if callable(obj) and getattr(obj, marker, None) is not None
    )


def function_sources(path: Path) -> dict[str, str]:
    """Source of every ``test_*`` function in a module, including methods of test classes."""
    text = path.read_text()
    sources = {}
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            sources[node.name] = ast.get_source_segment(text, node) or ""
    return sources


HOOKS = hook_names()


def test_hookspecs_are_found() -> None:
    assert "tasker_register_handlers" in HOOKS
    assert len(HOOKS) == 7
    assert all(name.startswith(f"{PROJECT}_") for name in HOOKS)


def test_function_sources_sees_tests_only(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "def test_a():\n    tasker_x()\n\n"
        "class TestB:\n    def test_b(self):\n        tasker_y()\n\n"
        "def helper():\n    tasker_z()\n"
    )
    sources = function_sources(sample)
    assert set(sources) == {"test_a", "test_b"}
    assert "tasker_y" in sources["test_b"]


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_test(hook: str) -> None:
    testing = [name for name, src in function_sources(MANAGER_TESTS).items() if hook in src]
    assert testing, f"no test in {MANAGER_TESTS.name} mentions hook {hook}"


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_has_a_docs_heading(hook: str) -> None:
    assert hook in HEADING.findall(HOOKS_DOC.read_text()), f"docs/hooks.md lacks '## {hook}'"


def test_docs_headings_name_real_hooks() -> None:
    stale = [h for h in HEADING.findall(HOOKS_DOC.read_text()) if h.startswith(f"{PROJECT}_")]
    assert sorted(stale) == HOOKS


@pytest.mark.parametrize("hook", HOOKS)
def test_hookspec_documents_when_called_and_what_to_return(hook: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, hook)) or ""
    assert "Called:" in doc and "Return:" in doc, f"{hook} docstring lacks Called:/Return:"


def test_only_the_manager_calls_hooks() -> None:
    """The design rule: no kernel module but plugin/manager.py touches ``pm.hook``."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in KERNEL.rglob("*.py")
        if path != KERNEL / "plugin" / "manager.py"
        and re.search(r"\.hook\.tasker_|\bpm\.hook\b|_pm\.hook\b", path.read_text())
    ]
    assert offenders == []
