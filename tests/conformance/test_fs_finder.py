"""The filesystem template finder (contrib/tasker-fs-templates) passes the conformance kit.

Skipped when that distribution is not installed (it is in CI).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_tasker.suites import TemplateFinderSuite

from tasker_core.protocols import TemplateFinder

finder_module = pytest.importorskip("tasker_fs_templates.finder")


class TestFilesystemFinderNested(TemplateFinderSuite):
    """``<dir>/{namespace}/{name}/{version}.yml``, the layout with one file per version."""

    @pytest.fixture
    def finder(self, templates: list[dict[str, Any]], tmp_path: Path) -> TemplateFinder:
        for t in templates:
            path = tmp_path / t["namespace"] / t["name"] / f"{t['version']}.yml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(t), encoding="utf-8")  # JSON is YAML
        finder: TemplateFinder = finder_module.FilesystemTemplateFinder([tmp_path])
        return finder


class TestFilesystemFinderUncached(TemplateFinderSuite):
    """The same, split across two directories (.yaml files) and with the cache off."""

    @pytest.fixture
    def finder(self, templates: list[dict[str, Any]], tmp_path: Path) -> TemplateFinder:
        roots = [tmp_path / "a", tmp_path / "b"]
        for n, t in enumerate(templates):
            path = roots[n % 2] / t["namespace"] / t["name"] / f"{t['version']}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(t), encoding="utf-8")
        finder: TemplateFinder = finder_module.FilesystemTemplateFinder(roots, cache=False)
        return finder
