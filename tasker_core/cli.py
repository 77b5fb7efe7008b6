"""The ``tasker`` command: run, inspect and repair workflows from a shell.

Conventions every command follows (docs/cli.md is the reference):

- exit status 0 on success, 1 when a task the command ran (or reports on, for ``run``-like
  commands) ends in error, 2 on bad usage or bad input: one line on stderr, never a traceback
  (``--debug`` shows it);
- ``--json`` on every read command prints one documented, stable JSON document on stdout;
- live progress on one updating line only when stdout is a terminal, colour only on a terminal
  and never with ``NO_COLOR`` set;
- ``--config PATH`` (else ``$TASKER_CONFIG``, else ``./tasker.yaml``) picks the configuration.

Plugins add sub-commands through the ``tasker_add_cli_commands`` hook; each sets ``run=fn`` with
``fn(args) -> int``, and receives the global options as ``args.config``, ``args.json``,
``args.verbose``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TextIO, TypeVar

from tasker_core import __version__
from tasker_core.cli_args import positive_int
from tasker_core.cli_init import write_starter
from tasker_core.cli_logging import configure_logging
from tasker_core.cli_progress import Progress
from tasker_core.cli_render import (
    Style,
    format_capabilities,
    format_detail,
    format_failures,
    format_plugins,
    format_tasks,
    graph_data,
    human_duration,
    plugin_dict,
    plural,
    task_detail,
    task_summary,
    to_dot,
    to_mermaid,
    write_json,
)
from tasker_core.config import load_config
from tasker_core.engine import ACTIVE_TASK_STATES, Engine
from tasker_core.errors import StaleStateError, TaskerError, TemplateNotFoundError
from tasker_core.fsm import StepState, TaskState
from tasker_core.models import JSON, Task, TaskRequest
from tasker_core.orchestration.finalizer import ExecutionContext
from tasker_core.plugin import PluginHost

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

T = TypeVar("T")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

WORKFLOW_REF = re.compile(
    r"(?P<namespace>[A-Za-z_][A-Za-z0-9_-]*)/(?P<name>[A-Za-z_][A-Za-z0-9_-]*)"
    r"(?:@(?P<version>[^\s@]+))?\Z"
)
_TEMPLATE_SUFFIXES = (".yml", ".yaml")


class UsageError(ValueError):
    """Bad input on the command line; reported in one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit 2) instead of usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- parsing -----------------------------------------------------------------------------------


def _json_arg(value: str, what: str) -> JSON:
    """Parse ``JSON``, ``@file`` or ``@-`` (stdin) given for option ``what``."""
    if value.startswith("@"):
        source = value[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{what}: cannot read {source!r}: {exc.strerror or exc}") from exc
    else:
        source, text = "", value
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f" in {source}" if source else ""
        raise UsageError(
            f"{what}: invalid JSON{where} at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc


def parse_workflow(ref: str) -> tuple[str, str, str | None]:
    """``namespace/name[@version]`` -> its parts; UsageError otherwise."""
    match = WORKFLOW_REF.match(ref)
    if match is None:
        raise UsageError(f"workflow {ref!r}: expected NAMESPACE/NAME or NAMESPACE/NAME@VERSION")
    return match["namespace"], match["name"], match["version"]


def _request(args: argparse.Namespace) -> TaskRequest:
    namespace, name, version = parse_workflow(args.workflow)
    context = _json_arg(args.context, "--context") if args.context is not None else {}
    if not isinstance(context, dict):
        raise UsageError(f"--context must be a JSON object, got {type(context).__name__}")
    return TaskRequest(namespace, name, version, context=context, idempotency_key=args.key)


def build_parser(host: PluginHost) -> argparse.ArgumentParser:
    """The whole command line: builtin commands, then the ones plugins add."""
    parser = _Parser(
        prog="tasker",
        description="Run, inspect and repair tasker workflows.",
        epilog="Exit status: 0 success, 1 a task ended in error, 2 bad usage or input.",
    )
    parser.add_argument("--version", action="version", version=f"tasker-core {__version__}")
    _add_globals(parser, default=None)
    common: argparse.ArgumentParser = _Parser(add_help=False)
    _add_globals(common, default=argparse.SUPPRESS)
    templates = _Parser(add_help=False)
    templates.add_argument(
        "--template",
        "-t",
        action="append",
        default=[],
        metavar="FILE",
        help="register a template file (or every .yml/.yaml under a directory); repeatable",
    )
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    cli = _Commands(host)

    def command(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help, parents=[common, *parents])
        p.set_defaults(run=getattr(cli, name))
        return p

    command("demo", "run the bundled example workflows and summarize them", templates)
    p = command("init", "write a starter tasker.yaml and an example workflow here")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    p.add_argument("--dir", default=".", help="where to write (default: the current directory)")
    for name, what in (
        ("run", "submit a task and run it to the end"),
        ("submit", "store a task without running it; prints its id"),
    ):
        p = command(name, what, templates)
        p.add_argument("workflow", metavar="NAMESPACE/NAME[@VERSION]")
        p.add_argument(
            "--context",
            "-c",
            metavar="JSON|@FILE",
            help="the task context: a JSON object, @file.json, or @- for stdin",
        )
        p.add_argument(
            "--key",
            "-k",
            metavar="KEY",
            help="idempotency key: a second submission returns the first task",
        )
    command("resume", "run every unfinished task in the store to the end", templates)
    p = command("status", "show one task, its steps and what happens next", templates)
    p.add_argument("task_id", metavar="ID")
    p = command("tasks", "list tasks, newest first")
    p.add_argument(
        "--state",
        "-s",
        action="extend",
        nargs="+",
        default=[],
        metavar="STATE",
        choices=[s.value for s in TaskState],
        help="only tasks in these states",
    )
    p.add_argument("--limit", "-n", type=positive_int, default=50, help="most tasks to list")
    p = command("graph", "print a task's step graph, steps coloured by state", templates)
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--format", "-f", choices=("mermaid", "dot"), default="mermaid")
    p = command("retry", "retry a failed task's failed steps, then run it to the end", templates)
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--no-run", action="store_true", help="only put it back to work")
    p = command("resolve", "resolve a failed step (or a whole failed task) manually", templates)
    p.add_argument("task_id", metavar="ID")
    p.add_argument("--step", metavar="NAME", help="the step to resolve (default: the task)")
    p.add_argument("--results", metavar="JSON|@FILE", help="results recorded for the step")
    p.add_argument(
        "--run", dest="then_run", action="store_true", help="then run the task to the end"
    )
    p = command("cancel", "cancel a pending or running task", templates)
    p.add_argument("task_id", metavar="ID")
    command("plugins", "list the installed plugins and the hooks they implement")
    host.add_cli_commands(sub)
    return parser


def _add_globals(parser: argparse.ArgumentParser, default: Any) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="configuration file (default: $TASKER_CONFIG, then ./tasker.yaml)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default or False,
        help="print one JSON document (shapes in docs/cli.md)",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="count",
        default=default or 0,
        help="log at the configured level (-vv: DEBUG) on stderr",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default or False,
        help="show tracebacks instead of one-line errors",
    )


# --- the commands ------------------------------------------------------------------------------


class _Commands:
    """One method per builtin command; each returns the exit status."""

    def __init__(self, host: PluginHost) -> None:
        self.host = host

    @property
    def out(self) -> TextIO:
        return sys.stdout

    def style(self) -> Style:
        return Style.for_stream(self.out)

    @contextlib.contextmanager
    def engine(self, args: argparse.Namespace) -> Iterator[Engine]:
        """An engine on the configured store, with the ``--template`` files registered."""
        config = load_config(args.config)
        configure_logging(config, args.verbose)
        # Like `python -m`: handler modules next to the templates ("workflows.x:fn") import.
        cwd = os.getcwd()
        if cwd not in sys.path and "" not in sys.path:
            sys.path.insert(0, cwd)
        engine = Engine(config, plugins=self.host)
        try:
            for path in getattr(args, "template", []):
                register_templates(engine, Path(path))
            yield engine
        finally:
            engine.close()

    # -- running --

    def _drive(
        self,
        args: argparse.Namespace,
        engine: Engine,
        tasks: Sequence[Task],
        drive: Callable[[], T],
    ) -> T:
        """Call ``drive()`` with a progress line for ``tasks`` when stdout is a terminal."""
        if args.json or not self.out.isatty():
            return drive()
        progress = Progress(self.out, self.style())
        progress.watch(engine, tasks)
        try:
            return drive()
        finally:
            engine.flush_events()
            progress.close()

    def _report(self, args: argparse.Namespace, engine: Engine, task: Task) -> int:
        """Print a task's final state; exit status 1 when it ended in error or was cancelled."""
        detail = _detail(engine, task)
        if args.json:
            write_json(self.out, detail)
        else:
            style = self.style()
            print(
                f"task {task.id} {task.workflow_key}: {style.state(task.state)}"
                f" in {human_duration(detail['duration'])}"
                f" ({detail['steps_done']}/{detail['steps_total']} steps,"
                f" {plural(detail['attempts'], 'attempt')})",
                file=self.out,
            )
            for line in format_failures(detail):
                print("  " + line, file=self.out)
            if task.state in ACTIVE_TASK_STATES:
                print("  the task is not finished: `tasker resume` continues it", file=self.out)
        return EXIT_OK if task.state in _SUCCESS_STATES else EXIT_FAILED

    def run(self, args: argparse.Namespace) -> int:
        request = _request(args)
        with self.engine(args) as engine:
            task = engine.submit(request)
            final = self._drive(args, engine, [task], lambda: engine.run_task(task.id))
            return self._report(args, engine, final)

    def submit(self, args: argparse.Namespace) -> int:
        request = _request(args)
        with self.engine(args) as engine:
            task = engine.submit(request)
            if args.json:
                write_json(self.out, _detail(engine, task))
            else:
                print(task.id, file=self.out)
        return EXIT_OK

    def resume(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            active = engine.list_tasks(list(ACTIVE_TASK_STATES), limit=_RESUME_LIMIT)
            finished = self._drive(args, engine, active, engine.resume)
            summaries = [task_summary(t, engine.get_steps(t.id)) for t in finished]
        if args.json:
            write_json(self.out, {"tasks": summaries})
        elif summaries:
            print(format_tasks(summaries, self.style()), file=self.out)
        else:
            print("nothing to resume: no pending or running tasks", file=self.out)
        ok = all(s["state"] in _SUCCESS_STATES for s in summaries)
        return EXIT_OK if ok else EXIT_FAILED

    def demo(self, args: argparse.Namespace) -> int:
        try:
            examples: Any = importlib.import_module("tasker_examples")
        except ImportError as exc:
            raise UsageError(
                "tasker demo needs the bundled examples: pip install -e examples "
                f"(from a tasker-core checkout) or pip install tasker-examples ({exc})"
            ) from exc
        with self.engine(args) as engine:
            for path in examples.template_files():
                engine.load_template(path)
            planned = [
                (
                    demo,
                    engine.submit(
                        TaskRequest(demo.namespace, demo.name, context=dict(demo.context))
                    ),
                )
                for demo in examples.DEMOS
            ]
            tasks = [task for _, task in planned]
            finals = self._drive(
                args, engine, tasks, lambda: [engine.run_task(t.id) for t in tasks]
            )
            results = []
            for (demo, _), task in zip(planned, finals, strict=True):
                summary = task_summary(task, engine.get_steps(task.id))
                summary["expected_state"] = demo.expected_state
                summary["as_expected"] = task.state == demo.expected_state
                summary["about"] = demo.summary
                results.append(summary)
        ok = all(r["as_expected"] for r in results)
        if args.json:
            write_json(self.out, {"ok": ok, "tasks": results})
            return EXIT_OK if ok else EXIT_FAILED
        style = self.style()
        for r in results:
            mark = "as expected" if r["as_expected"] else f"EXPECTED {r['expected_state']}"
            print(
                f"{r['workflow']:<34} {style.state(r['state'], r['state'].ljust(9))}"
                f" {r['steps_done']}/{r['steps_total']} steps  {plural(r['attempts'], 'attempt')}"
                f"  {human_duration(r['duration']):>7}  {mark}",
                file=self.out,
            )
            print(f"    {r['id']}: {r['about']}", file=self.out)
        print(
            "\nInspect one with `tasker status ID` or `tasker graph ID`; the failed onboarding "
            "can be fixed with `tasker resolve ID --step sync_crm`.",
            file=self.out,
        )
        return EXIT_OK if ok else EXIT_FAILED

    def init(self, args: argparse.Namespace) -> int:
        directory = Path(args.dir)
        try:
            written = write_starter(directory, force=args.force)
        except FileExistsError as exc:
            raise UsageError(str(exc)) from exc
        for path in written:
            print(f"wrote {path}", file=self.out)
        where = "" if directory == Path(".") else f"cd {directory} && "
        print(
            "\nTry it:\n"
            f'  {where}tasker run hello/greet --context \'{{"name": "ada"}}\''
            " --template workflows/hello/greet.yml",
            file=self.out,
        )
        return EXIT_OK

    # -- reading --

    def status(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            detail = _detail(engine, engine.get_task(args.task_id))
        if args.json:
            write_json(self.out, detail)
        else:
            print(format_detail(detail, self.style()), file=self.out)
        return EXIT_OK

    def tasks(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            found = engine.list_tasks(args.state or None, limit=args.limit)
            summaries = [task_summary(t, engine.get_steps(t.id)) for t in found]
        if args.json:
            write_json(self.out, {"tasks": summaries})
        else:
            print(format_tasks(summaries, self.style()), file=self.out)
        return EXIT_OK

    def graph(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            task = engine.get_task(args.task_id)
            try:
                template = engine.get_template(task.namespace, task.name, task.version)
            except TemplateNotFoundError as exc:
                raise UsageError(f"{exc}: the graph needs the task's template; {_HINT}") from exc
            data = graph_data(task, engine.get_steps(task.id), template)
        if args.json:
            write_json(self.out, data)
        else:
            print(to_mermaid(data) if args.format == "mermaid" else to_dot(data), file=self.out)
        return EXIT_OK

    def plugins(self, args: argparse.Namespace) -> int:
        described = self.host.describe()
        infos = [plugin_dict(info) for info in described]
        capabilities = {
            "stores": sorted(self.host.store_factories()),
            "queues": sorted(self.host.queue_factories()),
            "event_sinks": sorted(self.host.sink_factories()),
            "template_finders": [i.name for i in described if "tasker_find_template" in i.hooks],
        }
        if args.json:
            write_json(self.out, {"plugins": infos, "capabilities": capabilities})
        else:
            print(format_plugins(infos), file=self.out)
            print(format_capabilities(capabilities), file=self.out)
        return EXIT_OK

    # -- repairing --

    def retry(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            task = engine.get_task(args.task_id)
            _require(task, (TaskState.ERROR,), "retried")
            task = engine.retry(task.id)
            if not args.no_run:
                task = self._drive(args, engine, [task], lambda: engine.run_task(task.id))
            return self._report(args, engine, task)

    def resolve(self, args: argparse.Namespace) -> int:
        results = _json_arg(args.results, "--results") if args.results is not None else None
        if results is not None and args.step is None:
            raise UsageError("--results needs --step: results belong to a step")
        with self.engine(args) as engine:
            task = engine.get_task(args.task_id)
            if args.step is None:
                _require(task, (TaskState.ERROR,), "resolved")
            else:
                _require_step(engine, task, args.step)
            task = engine.resolve(task.id, args.step, results)
            if args.then_run:
                task = self._drive(args, engine, [task], lambda: engine.run_task(task.id))
            return self._report(args, engine, task)

    def cancel(self, args: argparse.Namespace) -> int:
        with self.engine(args) as engine:
            task = engine.get_task(args.task_id)
            _require(task, (TaskState.PENDING, TaskState.IN_PROGRESS), "cancelled")
            task = engine.cancel(task.id)
            detail = _detail(engine, task)
        if args.json:
            write_json(self.out, detail)
        else:
            print(
                f"task {task.id} {task.workflow_key}: {self.style().state(task.state)}",
                file=self.out,
            )
        return EXIT_OK


_SUCCESS_STATES = frozenset({TaskState.COMPLETE.value, TaskState.RESOLVED_MANUALLY.value})
_RESUME_LIMIT = 1_000_000
_HINT = "pass --template FILE, or install a template-finder plugin (see `tasker plugins`)"


def _detail(engine: Engine, task: Task) -> dict[str, Any]:
    context: ExecutionContext | None
    try:
        context = engine.execution_context(task.id)
    except TemplateNotFoundError:
        context = None
    return task_detail(task, engine.get_steps(task.id), context)


def _require(task: Task, states: Sequence[str], verb: str) -> None:
    if task.state not in states:
        allowed = " or ".join(str(s) for s in states)
        raise UsageError(
            f"task {task.id} is {task.state}: only a task that is {allowed} can be {verb}"
        )


def _require_step(engine: Engine, task: Task, name: str) -> None:
    steps = {step.name: step for step in engine.get_steps(task.id)}
    step = steps.get(name)
    if step is None:
        raise UsageError(f"task {task.id} has no step {name!r} (steps: {', '.join(steps)})")
    if step.state not in (StepState.ERROR, StepState.PENDING):
        raise UsageError(
            f"step {name!r} of task {task.id} is {step.state}: only a step that is error or "
            "pending can be resolved"
        )


def register_templates(engine: Engine, path: Path) -> None:
    """Register one template file, or every template file below a directory."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in _TEMPLATE_SUFFIXES)
        if not files:
            raise UsageError(f"--template {path}: no .yml or .yaml files in this directory")
    elif path.is_file():
        files = [path]
    else:
        raise UsageError(f"--template {path}: no such file or directory")
    for file in files:
        engine.load_template(file)


# --- entry point -------------------------------------------------------------------------------


def _message(exc: BaseException) -> str:
    notes = getattr(exc, "__notes__", [])
    return "; ".join([str(exc) or type(exc).__name__, *notes])


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: parse, run the command, map failures to exit statuses."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        host = PluginHost.create()
        parser = build_parser(host)
    except TaskerError as exc:
        if debug:
            raise
        print(f"tasker: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except BrokenPipeError:
        # The reader went away (`tasker tasks | head`): not an error worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            "\ntasker: interrupted; unfinished tasks stay stored: `tasker resume` finishes them",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except StaleStateError as exc:
        if args.debug:
            raise
        print(f"tasker: error: {_message(exc)}", file=sys.stderr)
        return EXIT_FAILED
    except (TaskerError, UsageError, OSError) as exc:
        # What the user can fix. Anything else is a bug: its traceback is the useful report.
        if args.debug:
            raise
        print(f"tasker: error: {_message(exc)}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
