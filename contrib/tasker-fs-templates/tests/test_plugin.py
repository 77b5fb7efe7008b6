"""The installed plugin: found through its entry point, answering tasker_find_template from
the configuration, with relative paths resolved against the working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from tasker_core import Config, TemplateError, TemplateFinder
from tasker_core.plugin import PluginHost

import tasker_fs_templates.plugin as plugin
from tasker_fs_templates import FilesystemTemplateFinder

Put = Callable[..., Path]
Settle = Callable[[], None]


def config(paths: list[str], **templates: object) -> Config:
    return Config.from_mapping({"templates": {"paths": paths, **templates}})


@pytest.fixture
def host() -> PluginHost:
    return PluginHost.create(env={})


def test_discovered_through_its_entry_point(host: PluginHost) -> None:
    infos = {info.name: info for info in host.describe()}
    assert "fs_templates" in infos
    info = infos["fs_templates"]
    assert (info.distribution, info.version) == ("tasker-fs-templates", "0.1.0")
    assert info.hooks == ["tasker_add_cli_commands", "tasker_find_template"]


def test_tasker_plugins_lists_it_as_the_template_finder(tmp_path: Path) -> None:
    """The installed distribution, as a user sees it: `tasker plugins` in a fresh process."""
    env = {**os.environ, "TASKER_LOAD_PLUGINS": "memory,sqlite,inprocess,log,fs_templates"}
    result = subprocess.run(
        [sys.executable, "-m", "tasker_core.cli", "--json", "plugins"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout)["capabilities"]["template_finders"] == ["fs_templates"]


def test_can_be_blocked_by_name() -> None:
    host = PluginHost.create(env={"TASKER_DISABLE_PLUGINS": "fs_templates"})
    assert "fs_templates" not in {info.name for info in host.describe()}


def test_hook_answers_from_templates_paths(host: PluginHost, root: Path, put: Put) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    cfg = config([str(root)])
    found = host.find_template("shop", "order", None, cfg)
    assert found is not None and found.key == "shop/order@1.0.0"
    assert host.find_template("shop", "missing", None, cfg) is None
    assert host.find_template("shop", "order", None, Config.default()) is None


def test_relative_paths_resolve_against_the_working_directory(
    host: PluginHost, tmp_path: Path, put: Put, monkeypatch: pytest.MonkeyPatch
) -> None:
    put("order.yml", "shop", "order", "1.0.0", base=tmp_path / "one" / "templates")
    put("order.yml", "shop", "order", "2.0.0", base=tmp_path / "two" / "templates")
    cfg = config(["templates"])
    monkeypatch.chdir(tmp_path / "one")
    found = host.find_template("shop", "order", None, cfg)
    assert found is not None and (found.version, found.source) == ("1.0.0", "templates/order.yml")
    monkeypatch.chdir(tmp_path / "two")
    found = host.find_template("shop", "order", None, cfg)
    assert found is not None and found.version == "2.0.0"


def test_errors_reach_the_caller_unchanged(host: PluginHost, root: Path, put: Put) -> None:
    path = put("order.yml", "shop", "orders", "1.0.0")
    with pytest.raises(TemplateError) as info:
        host.find_template("shop", "order", "1.0.0", config([str(root)]))
    assert info.value.file == str(path) and "path says name 'order'" in str(info.value)


def test_one_finder_per_configuration(root: Path) -> None:
    first = plugin.finder_for(config([str(root)]))
    assert first is not None
    assert plugin.finder_for(config([str(root)])) is first
    uncached = plugin.finder_for(config([str(root)], cache=False))
    assert uncached is not None and uncached is not first and not uncached.cache
    attempts = plugin.finder_for(
        Config.from_mapping(
            {"templates": {"paths": [str(root)]}, "execution": {"default_max_attempts": 9}}
        )
    )
    assert attempts is not None and attempts.files.default_max_attempts == 9
    assert plugin.finder_for(Config.default()) is None


def test_templates_cache_false_rereads(
    host: PluginHost, root: Path, put: Put, settle: Settle
) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    settle()
    cfg = config([str(root)], cache=False)
    for _ in range(3):
        host.find_template("shop", "order", None, cfg)
    finder = plugin.finder_for(cfg)
    assert finder is not None and finder.files.parses >= 3


def test_the_finder_is_a_template_finder(root: Path, put: Put) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    finder: TemplateFinder = FilesystemTemplateFinder([root])  # checked by mypy
    found = finder.find("shop", "order", None)
    assert found is not None and found.key == "shop/order@1.0.0"
