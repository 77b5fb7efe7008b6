"""The ``tasker`` command, run for real in subprocesses with a temporary working directory.

Every command is exercised, ``--json`` output is parsed back and held to the documented shapes,
and exit statuses are checked: 0 success, 1 a task ended in error, 2 bad usage or input (one line
on stderr, no traceback). Plugins are restricted to the builtins plus the ones a test installs
(``TASKER_LOAD_PLUGINS``), so whatever else is installed in the environment cannot interfere.
"""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tasker_core import Config, load_config
from tasker_core.cli import parse_workflow
from tasker_core.cli_init import CONFIG_KEYS, config_text
from tasker_core.cli_render import Style, graph_data, human_duration, to_dot, to_mermaid
from tasker_core.config import SECTIONS
from tasker_core.models import Step, Task
from tasker_core.templates import template_from_mapping

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_TEMPLATES = EXAMPLES / "tasker_examples" / "templates"
BUILTINS = "memory,sqlite,inprocess,log"

SUMMARY_KEYS = {
    "id", "workflow", "namespace", "name", "version", "state", "created_at", "started_at",
    "completed_at", "duration", "idempotency_key", "steps_total", "steps_done", "steps_by_state",
    "attempts", "failed_steps",
}  # fmt: skip
DETAIL_KEYS = SUMMARY_KEYS | {"context", "steps", "execution"}
STEP_KEYS = {
    "name", "index", "handler", "state", "attempts", "max_attempts", "retryable",
    "next_retry_at", "results", "error",
}  # fmt: skip


def tasker(
    cwd: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    path: tuple[Path, ...] = (),
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``tasker ARGS`` (the same ``main`` the console script calls) in ``cwd``."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TASKER") and k not in ("NO_COLOR", "PYTHONPATH")
    }
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (ROOT, EXAMPLES, *path))
    environ["TASKER_LOAD_PLUGINS"] = BUILTINS
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tasker_core.cli", *args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok_json(result: subprocess.CompletedProcess[str], status: int = 0) -> Any:
    assert result.returncode == status, result.stderr
    return json.loads(result.stdout)


def usage_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit status 2 with exactly one line on stderr naming the problem, and no traceback."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


ORDER = EXAMPLE_TEMPLATES / "ecommerce" / "order_fulfillment.yml"
ORDER_CONTEXT = {
    "order_id": "ORD-7",
    "customer": {"email": "ada@shop.example.com", "name": "Ada"},
    "items": [{"sku": "MUG-RED", "quantity": 1, "unit_price_cents": 1250}],
    "payment_token": "tok_visa_4242",
}


def write_flaky_workflow(cwd: Path) -> Path:
    """A two-step workflow whose second step fails for good until a file named ``fixed`` exists."""
    (cwd / "flaky_handlers.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            from tasker_core import PermanentError

            def prepare(ctx):
                return {"prepared": ctx.context.get("n", 0)}

            def finish(ctx):
                if not Path("fixed").exists():
                    raise PermanentError("upstream not fixed yet")
                return {"finished": ctx.result_of("prepare")["prepared"]}
            """
        )
    )
    template = cwd / "flaky.yml"
    template.write_text(
        textwrap.dedent(
            """
            namespace: test
            name: flaky
            version: 1.0.0
            steps:
              - {name: prepare, handler: "flaky_handlers:prepare"}
              - {name: finish, handler: "flaky_handlers:finish", depends_on: [prepare]}
            """
        )
    )
    return template


# --- demo and init -----------------------------------------------------------------------------


def test_demo_runs_every_example_to_its_expected_state(tmp_path: Path) -> None:
    data = ok_json(tasker(tmp_path, "demo", "--json"))
    assert data["ok"] is True
    states = {t["workflow"]: t["state"] for t in data["tasks"]}
    assert states == {
        "ecommerce/order_fulfillment@1.0.0": "complete",
        "data/pipeline@1.0.0": "complete",
        "onboarding/user_onboarding@1.0.0": "error",
    }
    for task in data["tasks"]:
        assert task.keys() >= SUMMARY_KEYS
        assert task["as_expected"] is True
    order = next(t for t in data["tasks"] if t["name"] == "order_fulfillment")
    assert order["attempts"] == 6  # five steps, the charge twice
    onboarding = next(t for t in data["tasks"] if t["name"] == "user_onboarding")
    assert onboarding["failed_steps"] == ["sync_crm"]
    assert onboarding["steps_done"] == 4
    assert (tmp_path / ".tasker" / "tasker.db").is_file()  # the default store, in the cwd


def test_demo_text_summary_and_exit_status(tmp_path: Path) -> None:
    result = tasker(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("as expected") == 3
    assert "\x1b[" not in result.stdout  # not a terminal: no colour, no progress line
    listed = ok_json(tasker(tmp_path, "tasks", "--json"))["tasks"]
    assert len(listed) == 3


def test_demo_without_the_examples_package_says_how_to_install_them(tmp_path: Path) -> None:
    shadow = tmp_path / "shadow"
    (shadow / "tasker_examples").mkdir(parents=True)
    (shadow / "tasker_examples" / "__init__.py").write_text("raise ImportError('not here')\n")
    result = tasker(tmp_path, "demo", path=(), env={"PYTHONPATH": f"{shadow}{os.pathsep}{ROOT}"})
    usage_error(result, "pip install -e examples")


def test_init_writes_a_runnable_project_and_refuses_to_overwrite(tmp_path: Path) -> None:
    result = tasker(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tasker.yaml").is_file()
    assert (tmp_path / "workflows" / "hello" / "greet.yml").is_file()
    config = load_config(tmp_path / "tasker.yaml", env={})
    assert config.templates.paths == ("workflows",)

    again = tasker(tmp_path, "init")
    usage_error(again, "refusing to overwrite", "--force")
    (tmp_path / "tasker.yaml").write_text("default: {}\n")
    forced = tasker(tmp_path, "init", "--force")
    assert forced.returncode == 0
    assert "templates:" in (tmp_path / "tasker.yaml").read_text()

    # The handlers import from the working directory, as with `python -m`.
    ran = ok_json(
        tasker(
            tmp_path,
            "run",
            "hello/greet",
            "--template",
            "workflows/hello/greet.yml",
            "--context",
            '{"name": "ada lovelace", "language": "fr"}',
            "--json",
        )
    )
    assert ran["state"] == "complete"
    steps = {s["name"]: s for s in ran["steps"]}
    assert steps["compose"]["results"] == "Bonjour, Ada Lovelace!"
    assert steps["deliver"]["attempts"] == 2


def test_init_into_another_directory(tmp_path: Path) -> None:
    assert tasker(tmp_path, "init", "--dir", "proj").returncode == 0
    assert (tmp_path / "proj" / "workflows" / "hello" / "handlers.py").is_file()


# --- run and submit ----------------------------------------------------------------------------


def test_run_prints_the_documented_detail_shape(tmp_path: Path) -> None:
    detail = ok_json(
        tasker(tmp_path, "run", "ecommerce/order_fulfillment@1.0.0", "-t", str(ORDER),
               "--context", json.dumps(ORDER_CONTEXT), "--json")
    )  # fmt: skip
    assert detail.keys() >= DETAIL_KEYS
    assert detail["state"] == "complete"
    assert detail["context"] == ORDER_CONTEXT
    assert detail["steps_done"] == detail["steps_total"] == 5
    assert detail["duration"] is not None and detail["duration"] >= 0
    assert [s["name"] for s in detail["steps"]] == [
        "validate_order", "charge_payment", "reserve_inventory", "ship_order", "send_confirmation",
    ]  # fmt: skip
    for step in detail["steps"]:
        assert step.keys() == STEP_KEYS
    charge = detail["steps"][1]
    assert charge["attempts"] == 2
    assert charge["error"] is None
    assert detail["execution"]["status"] == "all_complete"


def test_run_reads_the_context_from_a_file_and_from_stdin(tmp_path: Path) -> None:
    (tmp_path / "ctx.json").write_text(json.dumps(ORDER_CONTEXT))
    common = ("run", "ecommerce/order_fulfillment", "-t", str(ORDER), "--json")
    from_file = ok_json(tasker(tmp_path, *common, "--context", "@ctx.json"))
    assert from_file["context"] == ORDER_CONTEXT
    from_stdin = ok_json(tasker(tmp_path, *common, "-c", "@-", stdin=json.dumps(ORDER_CONTEXT)))
    assert from_stdin["state"] == "complete"


def test_run_that_ends_in_error_exits_1_naming_the_failed_step(tmp_path: Path) -> None:
    template = write_flaky_workflow(tmp_path)
    result = tasker(tmp_path, "run", "test/flaky", "-t", str(template))
    assert result.returncode == 1
    assert "error" in result.stdout
    assert "step finish failed after 1 attempt" in result.stdout
    assert "PermanentError: upstream not fixed yet" in result.stdout
    as_json = ok_json(tasker(tmp_path, "run", "test/flaky", "-t", str(template), "--json",
                             "-c", '{"n": 2}'), status=1)  # fmt: skip
    assert as_json["failed_steps"] == ["finish"]
    assert as_json["steps"][1]["error"] == {
        "class": "PermanentError",
        "message": "upstream not fixed yet",
        "retryable": False,
    }
    assert as_json["execution"]["status"] == "blocked_by_failures"


def test_submit_prints_the_id_and_resume_finishes_it(tmp_path: Path) -> None:
    pipeline = str(EXAMPLE_TEMPLATES / "data")
    submitted = tasker(tmp_path, "submit", "data/pipeline", "-t", pipeline, "-c", '{"orders": 30}')
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    assert len(task_id) == 32 and submitted.stdout.count("\n") == 1

    pending = ok_json(tasker(tmp_path, "status", task_id, "-t", pipeline, "--json"))
    assert pending["state"] == "pending"
    assert pending["execution"]["status"] == "has_ready_steps"
    assert pending["execution"]["ready"] == 3  # the three extracts

    resumed = ok_json(tasker(tmp_path, "resume", "-t", pipeline, "--json"))
    assert [(t["id"], t["state"]) for t in resumed["tasks"]] == [(task_id, "complete")]
    assert resumed["tasks"][0].keys() >= SUMMARY_KEYS
    nothing = tasker(tmp_path, "resume")
    assert nothing.returncode == 0 and "nothing to resume" in nothing.stdout


def test_submit_with_the_same_key_returns_the_same_task(tmp_path: Path) -> None:
    args = ("submit", "data/pipeline", "-t", str(EXAMPLE_TEMPLATES), "--key", "nightly-42")
    first = tasker(tmp_path, *args).stdout.strip()
    second = ok_json(tasker(tmp_path, *args, "--json"))
    assert second["id"] == first
    assert second["idempotency_key"] == "nightly-42"
    assert len(ok_json(tasker(tmp_path, "tasks", "--json"))["tasks"]) == 1


def test_resume_exits_1_when_a_resumed_task_ends_in_error(tmp_path: Path) -> None:
    template = write_flaky_workflow(tmp_path)
    assert tasker(tmp_path, "submit", "test/flaky", "-t", str(template)).returncode == 0
    result = tasker(tmp_path, "resume", "-t", str(template))
    assert result.returncode == 1
    assert "test/flaky@1.0.0" in result.stdout and "error" in result.stdout


# --- reading -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A directory whose store holds one finished run of each example, by workflow name."""
    cwd = tmp_path_factory.mktemp("demo")
    data = ok_json(tasker(cwd, "demo", "--json"))
    return cwd, {t["name"]: t["id"] for t in data["tasks"]}


def test_status_text_and_json(demo_dir: tuple[Path, dict[str, str]]) -> None:
    cwd, ids = demo_dir
    task_id = ids["user_onboarding"]
    text = tasker(cwd, "status", task_id, "-t", str(EXAMPLE_TEMPLATES))
    assert text.returncode == 0
    assert task_id in text.stdout
    assert "sync_crm" in text.stdout and "reserved test domain" in text.stdout
    detail = ok_json(tasker(cwd, "status", task_id, "--json", "-t", str(EXAMPLE_TEMPLATES)))
    assert detail.keys() >= DETAIL_KEYS
    assert detail["state"] == "error"
    assert detail["execution"]["status"] == "blocked_by_failures"
    assert detail["execution"]["action"] == "fail_task"


def test_status_without_the_template_still_reports_the_steps(
    demo_dir: tuple[Path, dict[str, str]],
) -> None:
    cwd, ids = demo_dir
    detail = ok_json(tasker(cwd, "status", ids["pipeline"], "--json"))
    assert detail["execution"] is None
    assert detail["steps_done"] == 5


def test_global_options_work_before_and_after_the_command(
    demo_dir: tuple[Path, dict[str, str]],
) -> None:
    cwd, ids = demo_dir
    before = ok_json(tasker(cwd, "--json", "status", ids["pipeline"]))
    after = ok_json(tasker(cwd, "status", ids["pipeline"], "--json"))
    assert before == after


def test_tasks_filters_by_state_and_limits(demo_dir: tuple[Path, dict[str, str]]) -> None:
    cwd, ids = demo_dir
    errors = ok_json(tasker(cwd, "tasks", "--state", "error", "--json"))["tasks"]
    assert [t["id"] for t in errors] == [ids["user_onboarding"]]
    both = ok_json(tasker(cwd, "tasks", "-s", "error", "complete", "--json"))["tasks"]
    assert {t["id"] for t in both} == set(ids.values())
    assert len(ok_json(tasker(cwd, "tasks", "--limit", "1", "--json"))["tasks"]) == 1
    table = tasker(cwd, "tasks")
    assert table.returncode == 0 and table.stdout.splitlines()[0].startswith("ID")
    usage_error(tasker(cwd, "tasks", "--state", "done"), "invalid choice")
    usage_error(tasker(cwd, "tasks", "--limit", "0"), "at least 1")


def test_graph_in_every_format(demo_dir: tuple[Path, dict[str, str]]) -> None:
    cwd, ids = demo_dir
    common = ("graph", ids["user_onboarding"], "-t", str(EXAMPLE_TEMPLATES))
    mermaid = tasker(cwd, *common)
    assert mermaid.returncode == 0
    assert "flowchart TD" in mermaid.stdout
    assert "classDef state_error" in mermaid.stdout
    dot = tasker(cwd, *common, "--format", "dot")
    assert dot.stdout.startswith('digraph "onboarding/user_onboarding@1.0.0"')
    assert '"create_account" -> "sync_crm";' in dot.stdout
    data = ok_json(tasker(cwd, *common, "--json"))
    assert {n["name"]: n["state"] for n in data["nodes"]}["sync_crm"] == "error"
    assert {"from": "provision_workspace", "to": "invite_team"} in data["edges"]
    usage_error(tasker(cwd, "graph", ids["pipeline"]), "--template")


def test_plugins_lists_builtins_with_their_hooks(tmp_path: Path) -> None:
    data = ok_json(tasker(tmp_path, "plugins", "--json"))
    by_name = {p["name"]: p for p in data["plugins"]}
    assert set(BUILTINS.split(",")) <= by_name.keys()
    assert by_name["sqlite"]["hooks"] == ["tasker_register_stores"]
    assert by_name["log"]["distribution"] == "tasker-core"
    assert all(p.keys() == {"name", "distribution", "version", "hooks"} for p in data["plugins"])
    text = tasker(tmp_path, "plugins")
    assert "tasker_register_queues" in text.stdout


def test_plugins_says_when_no_template_finder_is_installed(tmp_path: Path) -> None:
    data = ok_json(tasker(tmp_path, "plugins", "--json"))
    assert data["capabilities"] == {
        "stores": ["memory", "sqlite"],
        "queues": ["memory"],
        "event_sinks": ["log"],
        "template_finders": [],
    }
    text = tasker(tmp_path, "plugins").stdout
    assert "template finders: none installed" in text
    assert "pip install tasker-fs-templates" in text


def test_plugins_never_prints_configuration_values(tmp_path: Path) -> None:
    secret = "postgresql://app:hunter2@db.example/tasks"
    (tmp_path / "tasker.yaml").write_text(f"default:\n  store:\n    url: {secret}\n")
    for args in (("plugins",), ("plugins", "--json"), ("-v", "plugins")):
        result = tasker(tmp_path, *args)
        assert result.returncode == 0
        assert "hunter2" not in result.stdout + result.stderr


# --- repairing ---------------------------------------------------------------------------------


def test_retry_runs_the_task_to_the_end(tmp_path: Path) -> None:
    template = str(write_flaky_workflow(tmp_path))
    failed = ok_json(tasker(tmp_path, "run", "test/flaky", "-t", template, "--json"), status=1)
    usage_error(tasker(tmp_path, "retry", failed["id"]), "no workflow template test/flaky")
    still = ok_json(tasker(tmp_path, "retry", failed["id"], "-t", template, "--json"), status=1)
    assert still["steps"][1]["attempts"] == 2
    (tmp_path / "fixed").touch()
    parked = ok_json(
        tasker(tmp_path, "retry", failed["id"], "-t", template, "--no-run", "--json"), status=1
    )
    assert parked["state"] == "pending"
    fixed = ok_json(tasker(tmp_path, "resume", "-t", template, "--json"))
    assert fixed["tasks"][0]["state"] == "complete"
    assert fixed["tasks"][0]["attempts"] == 4  # prepare once, finish three times
    usage_error(tasker(tmp_path, "retry", failed["id"], "-t", template), "is complete")


def test_resolve_a_failed_step_then_the_task_completes(tmp_path: Path) -> None:
    template = str(write_flaky_workflow(tmp_path))
    failed = ok_json(tasker(tmp_path, "run", "test/flaky", "-t", template, "--json"), status=1)
    usage_error(
        tasker(tmp_path, "resolve", failed["id"], "--results", "{}", "-t", template), "--step"
    )
    usage_error(
        tasker(tmp_path, "resolve", failed["id"], "--step", "nope", "-t", template),
        "no step 'nope'",
        "prepare, finish",
    )
    usage_error(
        tasker(tmp_path, "resolve", failed["id"], "--step", "prepare", "-t", template),
        "is complete",
    )
    resolved = ok_json(
        tasker(tmp_path, "resolve", failed["id"], "--step", "finish", "--results",
               '{"finished": "by hand"}', "--run", "-t", template, "--json")
    )  # fmt: skip
    assert resolved["state"] == "complete"
    finish = resolved["steps"][1]
    assert finish["state"] == "resolved_manually"
    assert finish["results"] == {"finished": "by hand"}


def test_resolve_a_whole_failed_task(tmp_path: Path) -> None:
    template = str(write_flaky_workflow(tmp_path))
    failed = ok_json(tasker(tmp_path, "run", "test/flaky", "-t", template, "--json"), status=1)
    resolved = ok_json(tasker(tmp_path, "resolve", failed["id"], "--json", "-t", template))
    assert resolved["state"] == "resolved_manually"
    usage_error(tasker(tmp_path, "resolve", failed["id"], "-t", template), "resolved_manually")


def test_cancel_a_pending_task_once(tmp_path: Path) -> None:
    task_id = tasker(tmp_path, "submit", "data/pipeline", "-t", str(EXAMPLE_TEMPLATES)).stdout
    cancelled = ok_json(tasker(tmp_path, "cancel", task_id.strip(), "--json"))
    assert cancelled["state"] == "cancelled"
    assert {s["state"] for s in cancelled["steps"]} == {"cancelled"}
    usage_error(tasker(tmp_path, "cancel", task_id.strip()), "is cancelled")


# --- bad usage and bad input: exit 2, one line, no traceback ----------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("run", "nope/missing"), "no workflow template nope/missing"),
        (("run", "not-a-ref"), "NAMESPACE/NAME"),
        (("run", "ecommerce/order_fulfillment", "-t", str(ORDER), "-c", "{oops"), "invalid JSON"),
        (("run", "ecommerce/order_fulfillment", "-t", str(ORDER), "-c", "[1]"), "JSON object"),
        (("run", "data/pipeline", "-t", str(EXAMPLE_TEMPLATES), "-c", "@no.json"), "cannot read"),
        (("run", "ecommerce/order_fulfillment", "-t", str(ORDER), "-c", "{}"), "required property"),
        (("run", "data/pipeline", "-t", "missing.yml"), "no such file"),
        (("status", "0123"), "no task '0123'"),
        (("frobnicate",), "invalid choice"),
        (("run",), "required"),
        (("--config", "absent.yaml", "tasks"), "absent.yaml"),
    ],
)  # fmt: skip
def test_bad_input_exits_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    usage_error(tasker(tmp_path, *args), fragment)


def test_bad_config_key_exits_2_naming_key_and_line(tmp_path: Path) -> None:
    (tmp_path / "tasker.yaml").write_text("default:\n  execution:\n    leese: 30s\n")
    line = usage_error(tasker(tmp_path, "tasks"), "execution.leese", "did you mean 'lease'")
    assert "tasker.yaml:3:" in line
    other = tmp_path / "other.yaml"
    other.write_text("default:\n  store:\n    pool_size: lots\n")
    usage_error(tasker(tmp_path, "--config", str(other), "tasks"), "store.pool_size")
    usage_error(tasker(tmp_path, "tasks", env={"TASKER_CONFIG": str(other)}), "store.pool_size")
    (tmp_path / "tasker.yaml").unlink()
    usage_error(tasker(tmp_path, "tasks", env={"TASKER__STORE__URLL": "x"}), "did you mean 'url'")


def test_bad_template_file_exits_2_with_its_location(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("namespace: t\nname: bad\nversion: 1.0.0\nsteps:\n  - {name: a, handlr: x}\n")
    usage_error(tasker(tmp_path, "run", "t/bad", "-t", str(bad)), "bad.yml:5:", "did you mean")


def test_no_command_prints_help_and_exits_2(tmp_path: Path) -> None:
    result = tasker(tmp_path)
    assert result.returncode == 2
    assert "demo" in result.stderr and "plugins" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = tasker(tmp_path, "--debug", "status", "nope")
    assert result.returncode != 0
    assert "Traceback" in result.stderr and "TaskNotFoundError" in result.stderr


# --- plugins add commands ----------------------------------------------------------------------


def install_cli_plugin(site: Path) -> None:
    """A real installed plugin: a module plus a dist-info with an entry point in group tasker."""
    site.mkdir()
    (site / "clitest_plugin.py").write_text(
        textwrap.dedent(
            """
            from tasker_core.plugin import hookimpl

            def hello(args):
                print(f"hello {args.who} json={args.json}")
                return 3

            @hookimpl
            def tasker_add_cli_commands(subparsers):
                p = subparsers.add_parser("hello", help="say hello")
                p.add_argument("who")
                p.set_defaults(run=hello)
            """
        )
    )
    dist = site / "clitest_plugin-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: clitest-plugin\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[tasker]\nclitest = clitest_plugin\n")


def test_a_plugin_adds_a_subcommand(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_cli_plugin(site)
    env = {"TASKER_LOAD_PLUGINS": f"{BUILTINS},clitest"}
    result = tasker(tmp_path, "--json", "hello", "world", env=env, path=(site,))
    assert result.returncode == 3, result.stderr
    assert result.stdout.strip() == "hello world json=True"
    assert "hello" in tasker(tmp_path, "--help", env=env, path=(site,)).stdout
    plugins = ok_json(tasker(tmp_path, "plugins", "--json", env=env, path=(site,)))["plugins"]
    mine = next(p for p in plugins if p["name"] == "clitest")
    assert mine == {
        "name": "clitest",
        "distribution": "clitest-plugin",
        "version": "1.2.3",
        "hooks": ["tasker_add_cli_commands"],
    }
    blocked = tasker(tmp_path, "hello", "world", path=(site,))  # not allowed: no such command
    usage_error(blocked, "invalid choice")


def test_a_plugin_taking_a_builtin_command_name_fails_in_one_line(tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_cli_plugin(site)
    module = site / "clitest_plugin.py"
    module.write_text(module.read_text().replace('add_parser("hello"', 'add_parser("status"'))
    env = {"TASKER_LOAD_PLUGINS": f"{BUILTINS},clitest"}
    usage_error(tasker(tmp_path, "tasks", env=env, path=(site,)), "clitest")


# --- terminals: progress line and colour only on a TTY, never with NO_COLOR --------------------


def run_on_terminal(cwd: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    """Run ``tasker`` with stdout on a pseudo-terminal; return everything it wrote there."""
    primary, secondary = pty.openpty()
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("TASKER") and k != "NO_COLOR"
    }
    environ.update(
        {
            "PYTHONPATH": f"{ROOT}{os.pathsep}{EXAMPLES}",
            "TASKER_LOAD_PLUGINS": BUILTINS,
            **(env or {}),
        }
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tasker_core.cli", *args],
        cwd=cwd, env=environ, stdout=secondary, stderr=subprocess.PIPE, text=False,
    )  # fmt: skip
    os.close(secondary)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(primary)
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    return b"".join(chunks).decode()


def test_terminal_gets_a_progress_line_and_colour(tmp_path: Path) -> None:
    output = run_on_terminal(tmp_path, "demo")
    assert "\r\x1b[K" in output  # the line was drawn and finally erased
    assert "order_fulfillment 5/5" in output
    assert "\x1b[32m" in output  # complete, in green


def test_no_color_turns_colour_off_but_keeps_progress(tmp_path: Path) -> None:
    output = run_on_terminal(tmp_path, "demo", env={"NO_COLOR": "1"})
    assert "\x1b[3" not in output
    assert "order_fulfillment 5/5" in output


# --- in-process units: rendering, parsing, the starter config --------------------------------


def test_style_is_off_without_a_terminal_or_with_no_color() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    tty: Any = Tty()
    assert Style.for_stream(tty, {}).enabled
    assert not Style.for_stream(tty, {"NO_COLOR": "1"}).enabled
    assert Style.for_stream(tty, {"NO_COLOR": ""}).enabled  # set but empty means unset
    assert not Style.for_stream(io.StringIO(), {}).enabled
    assert Style(False).state("error") == "error"
    assert Style(True).state("error") == "\x1b[31merror\x1b[0m"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "-"),
        (0.0042, "4ms"),
        (0.25, "250ms"),
        (1.5, "1.50s"),
        (125, "2m05s"),
        (3720, "1h02m"),
    ],
)
def test_human_duration(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,15}", fullmatch=True)
versions = st.from_regex(r"[0-9]{1,3}(\.[0-9]{1,3}){0,2}", fullmatch=True)


@given(namespace=names, name=names, version=st.none() | versions)
def test_workflow_references_parse_back(namespace: str, name: str, version: str | None) -> None:
    ref = f"{namespace}/{name}" + (f"@{version}" if version else "")
    assert parse_workflow(ref) == (namespace, name, version)


@given(st.text(max_size=20).filter(lambda s: s.count("/") != 1 or s.startswith("/")))
def test_anything_without_one_separator_is_rejected(ref: str) -> None:
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        parse_workflow(ref)


def graph_fixture(step_names: list[str]) -> dict[str, Any]:
    template = template_from_mapping(
        {
            "namespace": "t",
            "name": "g",
            "version": "1.0.0",
            "steps": [
                {"name": n, "handler": "m:f", **({"depends_on": [step_names[0]]} if i else {})}
                for i, n in enumerate(step_names)
            ],
        }
    )
    task = Task("tid", "t", "g", "1.0.0", "in_progress", {}, 0.0, 0.0)
    steps = [
        Step("tid", i, n, "m:f", "complete" if i == 0 else "pending", 3, True)
        for i, n in enumerate(step_names)
    ]
    return graph_data(task, steps, template)


def test_mermaid_uses_safe_ids_for_reserved_step_names() -> None:
    text = to_mermaid(graph_fixture(["start", "end", "class"]))
    assert "    s0 --> s1" in text and "    s0 --> s2" in text
    assert 's1["end<br/>pending"]' in text
    assert "class s1,s2 state_pending" in text
    assert "class s0 state_complete" in text


def test_dot_quotes_names_and_colours_by_state() -> None:
    text = to_dot(graph_fixture(["a", "b"]))
    assert '"a" [label="a\\ncomplete", fillcolor="#a5d6a7"];' in text
    assert '"a" -> "b";' in text


def test_starter_config_lists_every_key_with_its_real_default() -> None:
    listed = {(section, key) for section, key, _, _ in CONFIG_KEYS}
    expected = {
        (section, a.name)
        for section, cls in SECTIONS.items()
        for a in attrs.fields(cls)
        if a.name != "sink_options"  # not written directly: collected from events.<sink>
    }
    assert listed == expected
    data: dict[str, dict[str, Any]] = {}
    for section, key, default, _ in CONFIG_KEYS:
        data.setdefault(section, {})[key] = YAML(typ="safe").load(default)
    assert Config.from_mapping(data) == Config.default()


def test_starter_config_file_loads(tmp_path: Path) -> None:
    (tmp_path / "tasker.yaml").write_text(config_text())
    config = load_config(tmp_path / "tasker.yaml", env={})
    assert config.with_overrides({"templates": {"paths": []}}) == Config.default()


def test_logging_is_quiet_by_default_and_verbose_on_request(tmp_path: Path) -> None:
    args = ("run", "data/pipeline", "-t", str(EXAMPLE_TEMPLATES), "-c", '{"orders": 5}')
    quiet = tasker(tmp_path, *args)
    assert quiet.returncode == 0 and quiet.stderr == ""
    verbose = tasker(tmp_path, "-v", *args)
    assert "task.completed" in verbose.stderr and " INFO tasker.events: " in verbose.stderr
    as_json = tasker(tmp_path, "-v", *args, env={"TASKER__LOGGING__FORMAT": "json"})
    records = [json.loads(line) for line in as_json.stderr.splitlines()]
    assert {"time", "level", "logger", "message"} <= records[0].keys()
    assert any(r["message"].startswith("task.completed") for r in records)
