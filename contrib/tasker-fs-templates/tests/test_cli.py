"""``tasker templates list|validate``: in-process through the plugin host, and as the real
``tasker`` command in a subprocess."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tasker_core.plugin import PluginHost

Put = Callable[..., Path]
Run = Callable[..., tuple[int, str, str]]

BROKEN_YAML = "namespace: shop\nname: order: bad\nversion: 1.0.0\nsteps: []\n"
UNKNOWN_KEY = (
    "namespace: shop\nname: refund\nversion: 1.0.0\nsteps:\n"
    "  - name: a\n    handler: demo.work\n    retires: 3\n"
)


@pytest.fixture
def workdir(tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory whose configuration (env overrides) points templates.paths at root."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("TASKER_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("TASKER__TEMPLATES__PATHS", json.dumps([root.name]))
    return tmp_path


@pytest.fixture
def run(workdir: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    """Parse and run a ``tasker`` command line in-process, with the installed plugin's commands."""
    host = PluginHost.create(env={"TASKER_LOAD_PLUGINS": "fs_templates"}, default_plugins={})
    parser = argparse.ArgumentParser(prog="tasker")
    parser.add_argument("--config")
    host.add_cli_commands(parser.add_subparsers(dest="command", required=True))

    def invoke(*argv: str) -> tuple[int, str, str]:
        capsys.readouterr()
        args = parser.parse_args(argv)
        code = args.run(args)
        out, err = capsys.readouterr()
        return code, out, err

    return invoke


def fill(put: Put) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    put("shop/order/1.2.0.yml", "shop", "order", "1.2.0")
    put("shop/order.yml", "shop", "order", "1.1.0")
    put("invoice.yml", "billing", "invoice", "2.0.0")


def test_list_prints_namespace_name_versions_path(run: Run, put: Put) -> None:
    fill(put)
    code, out, err = run("templates", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["NAMESPACE", "NAME", "VERSIONS", "PATH"]
    assert lines[1].split() == ["billing", "invoice", "2.0.0", "templates/invoice.yml"]
    assert lines[2].split() == [
        "shop",
        "order",
        "1.0.0,",
        "1.1.0,",
        "1.2.0",
        "templates/shop/order/1.2.0.yml",
    ]


def test_list_json(run: Run, put: Put) -> None:
    fill(put)
    code, out, _err = run("templates", "list", "--json")
    assert code == 0
    rows: list[dict[str, Any]] = json.loads(out)
    assert rows == [
        {
            "namespace": "billing",
            "name": "invoice",
            "latest": "2.0.0",
            "path": "templates/invoice.yml",
            "versions": [{"version": "2.0.0", "path": "templates/invoice.yml"}],
        },
        {
            "namespace": "shop",
            "name": "order",
            "latest": "1.2.0",
            "path": "templates/shop/order/1.2.0.yml",
            "versions": [
                {"version": "1.0.0", "path": "templates/shop/order/1.0.0.yml"},
                {"version": "1.1.0", "path": "templates/shop/order.yml"},
                {"version": "1.2.0", "path": "templates/shop/order/1.2.0.yml"},
            ],
        },
    ]


def test_list_shows_the_file_that_wins(run: Run, put: Put, workdir: Path) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    put("order/1.0.0.yml", "shop", "order", "1.0.0", base=workdir / "more")
    code, out, _ = run("templates", "list", "--json", "--path", "templates", "--path", "more")
    assert code == 0
    [row] = json.loads(out)
    assert row["versions"] == [{"version": "1.0.0", "path": "templates/order.yml"}]
    code, out, _ = run("templates", "list", "--json", "--path", "more", "--path", "templates")
    assert json.loads(out)[0]["path"] == "more/order/1.0.0.yml"


def test_list_reports_files_it_cannot_serve(run: Run, put: Put, root: Path) -> None:
    put("invoice.yml", "billing", "invoice", "2.0.0")
    (root / "order.yml").write_text(BROKEN_YAML)
    put("shop/refund/1.0.0.yml", "shop", "refund", "1.0.1")
    put("shop/refund/notes/x.yml", "shop", "x", "1.0.0")  # too deep: not a template place
    code, out, err = run("templates", "list")
    assert code == 1
    assert "billing" in out and "refund" not in out
    problems = err.splitlines()
    assert len(problems) == 2
    assert problems[0].startswith("templates/order.yml:2:12: ") and "invalid YAML" in problems[0]
    assert problems[1].startswith("templates/shop/refund/1.0.0.yml:3:10: ")
    assert "path says version '1.0.0', file says '1.0.1'" in problems[1]


def test_list_without_paths_says_how_to_set_them(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASKER__TEMPLATES__PATHS")
    code, out, err = run("templates", "list")
    assert (code, out) == (0, "")
    assert "templates.paths is empty" in err


def test_list_missing_directory_is_bad_input(run: Run) -> None:
    code, _out, err = run("templates", "list", "--path", "nowhere")
    assert code == 2 and "not a directory: nowhere" in err


def test_validate_all_valid(run: Run, put: Put) -> None:
    fill(put)
    code, out, err = run("templates", "validate", "templates")
    assert (code, err) == (0, "")
    assert len(out.splitlines()) == 4
    assert "ok  templates/shop/order.yml  shop/order@1.1.0" in out


def test_validate_reports_every_error_with_file_line_column(
    run: Run, put: Put, tmp_path: Path
) -> None:
    good = put("good.yml", "shop", "good", "1.0.0", base=tmp_path / "elsewhere")
    broken = tmp_path / "broken.yml"
    broken.write_text(BROKEN_YAML)
    unknown = tmp_path / "unknown.yml"
    unknown.write_text(UNKNOWN_KEY)
    code, out, err = run("templates", "validate", str(good), "broken.yml", "unknown.yml")
    assert code == 1
    assert out.startswith(f"ok  {good}  shop/good@1.0.0")
    lines = err.splitlines()
    assert lines[0].startswith("broken.yml:2:12: ") and "invalid YAML" in lines[0]
    assert lines[1].startswith("unknown.yml:7:5: ") and "did you mean 'retry'" in lines[1]
    assert lines[2] == "2 of 3 template file(s) invalid"


def test_validate_checks_placement_below_templates_paths(run: Run, put: Put) -> None:
    put("shop/order/1.0.0.yml", "shop", "orders", "1.0.0")
    code, _out, err = run("templates", "validate", "templates/shop/order/1.0.0.yml")
    assert code == 1
    assert err.startswith("templates/shop/order/1.0.0.yml:2:7: ")
    assert "path says name 'order', file says 'orders'" in err


def test_validate_json(run: Run, put: Put, tmp_path: Path) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    (tmp_path / "broken.yml").write_text(BROKEN_YAML)
    code, out, _err = run("templates", "validate", "--json", "templates/order.yml", "broken.yml")
    assert code == 1
    good, bad = json.loads(out)
    assert good == {
        "path": "templates/order.yml",
        "valid": True,
        "template": "shop/order@1.0.0",
        "error": None,
    }
    assert bad["valid"] is False and bad["error"]["file"] == "broken.yml"
    assert (bad["error"]["line"], bad["error"]["column"]) == (2, 12)


def test_validate_missing_path_is_bad_input(run: Run) -> None:
    code, _out, err = run("templates", "validate", "nope.yml")
    assert code == 2 and "no such file or directory: nope.yml" in err


def test_templates_needs_a_subcommand(run: Run) -> None:
    with pytest.raises(SystemExit) as info:
        run("templates")
    assert info.value.code == 2


# ------------------------------------------------------------------ the real `tasker` command


def tasker(workdir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run the installed ``tasker`` script (next to this interpreter) in ``workdir``."""
    script = Path(sys.executable).with_name("tasker")
    command = [str(script)] if script.exists() else ["tasker"]
    return subprocess.run(
        [*command, *argv],
        cwd=workdir,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tasker_templates_list_subprocess(workdir: Path, put: Put) -> None:
    fill(put)
    result = tasker(workdir, "templates", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [(r["namespace"], r["name"], r["latest"]) for r in rows] == [
        ("billing", "invoice", "2.0.0"),
        ("shop", "order", "1.2.0"),
    ]


def test_tasker_templates_validate_subprocess(workdir: Path, put: Put) -> None:
    fill(put)
    ok = tasker(workdir, "templates", "validate", "templates")
    assert ok.returncode == 0, ok.stderr
    (workdir / "broken.yml").write_text(BROKEN_YAML)
    bad = tasker(workdir, "templates", "validate", "templates", "broken.yml")
    assert bad.returncode == 1
    assert "broken.yml:2:12: invalid YAML" in bad.stderr and "Traceback" not in bad.stderr


def test_list_keeps_servable_versions_when_latest_fails(run: Run, put: Put) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    put("shop/order/1.1.0.yml", "shop", "order", "1.2.0")
    code, out, err = run("templates", "list", "--json")
    assert code == 1 and "path says version '1.1.0', file says '1.2.0'" in err
    [row] = json.loads(out)
    assert (row["latest"], row["path"]) == (None, None)
    assert row["versions"] == [{"version": "1.0.0", "path": "templates/shop/order/1.0.0.yml"}]
    code, out, _ = run("templates", "list")
    assert out.splitlines()[1].split(maxsplit=3)[3] == "(latest version is invalid: see the errors)"
