"""``tasker templates list`` and ``tasker templates validate``.

Exit codes follow the ``tasker`` conventions: 0 success, 1 when some template file is invalid
(every problem is printed to stderr as ``file:line:column: message``), 2 for bad input (a path
that does not exist, an unreadable configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from packaging.version import Version
from tasker_core import ConfigError, TaskTemplate, TemplateError, load_config, load_template_file

from tasker_fs_templates.cache import signature
from tasker_fs_templates.finder import FilesystemTemplateFinder
from tasker_fs_templates.layout import check_placement, split_extension

__all__ = ["add_commands", "run_list", "run_validate"]

_PROG = "tasker templates"
_LAYOUT_DEPTH = 3  # <dir>/{namespace}/{name}/{version}.yml is the deepest rule


def add_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``templates`` command and its two sub-commands."""
    parser = subparsers.add_parser(
        "templates",
        help="list and validate workflow template files",
        description="Workflow template files found through templates.paths.",
    )
    commands = parser.add_subparsers(dest="templates_command", metavar="COMMAND", required=True)
    listing = commands.add_parser(
        "list",
        help="the templates in templates.paths: namespace, name, versions, file",
        description="List the templates the filesystem finder serves, in search order; "
        "problem files are reported on stderr (exit 1).",
    )
    listing.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    listing.add_argument(
        "--path",
        action="append",
        metavar="DIR",
        help="search DIR instead of templates.paths (repeatable, in order)",
    )
    listing.set_defaults(run=run_list)
    validate = commands.add_parser(
        "validate",
        help="check template files (directories: every .yml/.yaml below)",
        description="Load and check each template file; files below a templates.paths "
        "directory must also match their path. Exit 1 if any file is invalid.",
    )
    validate.add_argument("paths", nargs="+", metavar="PATH", help="a template file or directory")
    validate.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    validate.set_defaults(run=run_validate)


def _fail(message: str) -> int:
    print(f"{_PROG}: {message}", file=sys.stderr)
    return 2


def _config_values(args: argparse.Namespace) -> tuple[tuple[str, ...], int]:
    """(templates.paths, execution.default_max_attempts) from the configuration."""
    config = load_config(getattr(args, "config", None))
    return config.templates.paths, config.execution.default_max_attempts


# --------------------------------------------------------------------------------------- list


def run_list(args: argparse.Namespace) -> int:
    """Print every template the finder serves; report files it cannot serve (exit 1)."""
    try:
        paths, attempts = _config_values(args)
    except ConfigError as exc:
        return _fail(str(exc))
    if args.path:
        paths = tuple(args.path)
    missing = [path for path in paths if not os.path.isdir(path)]
    if missing:
        return _fail(f"not a directory: {', '.join(missing)} (from templates.paths or --path)")
    finder = FilesystemTemplateFinder(paths, default_max_attempts=attempts)
    identities, problems = _survey(finder)
    found = (_row(finder, ns, name, identities[ns, name]) for ns, name in sorted(identities))
    rows = [row for row in found if row is not None]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not paths:
        print("templates.paths is empty: set it in tasker.yaml or pass --path DIR", file=sys.stderr)
    elif rows:
        _print_table(rows)
    else:
        print(f"no templates in {', '.join(paths)}")
    for problem in problems:
        print(str(problem), file=sys.stderr)
    return 1 if problems else 0


def _template_files(root: str, depth: int) -> Iterator[str]:
    """Template files below ``root`` down to ``depth`` levels, sorted, hidden ones skipped."""
    try:
        entries = sorted(os.scandir(root), key=lambda entry: entry.name)
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if depth > 1:
                yield from _template_files(entry.path, depth - 1)
        elif split_extension(entry.name) is not None:
            yield entry.path


def _survey(
    finder: FilesystemTemplateFinder,
) -> tuple[dict[tuple[str, str], set[str]], list[TemplateError]]:
    """The versions files declare per (namespace, name), and the files the finder cannot serve."""
    identities: dict[tuple[str, str], set[str]] = {}
    problems: list[TemplateError] = []
    for root in finder.paths:
        for path in _template_files(root, _LAYOUT_DEPTH):
            sig = signature(path)
            if sig is None:
                continue
            try:
                template = finder.files.load(path, sig)
                check_placement(root, path, template)
            except TemplateError as exc:
                problems.append(exc)
                continue
            identities.setdefault((template.namespace, template.name), set()).add(template.version)
    return identities, problems


def _row(
    finder: FilesystemTemplateFinder, namespace: str, name: str, versions: set[str]
) -> dict[str, Any] | None:
    """One template's versions, each with the file that serves it, as the finder sees them.

    ``latest`` and ``path`` are None when asking for the latest version fails (the file at
    fault is among the reported problems).
    """
    served: dict[Version, TaskTemplate] = {}
    for version in sorted(versions):
        try:
            found = finder.find(namespace, name, version)
        except TemplateError:
            continue
        if found is not None:
            served.setdefault(found.parsed_version, found)
    if not served:
        return None
    try:
        latest = finder.find(namespace, name, None)
    except TemplateError:
        latest = None
    ordered = sorted(served.values(), key=lambda t: t.parsed_version)
    return {
        "namespace": namespace,
        "name": name,
        "latest": None if latest is None else latest.version,
        "path": None if latest is None else latest.source,
        "versions": [{"version": t.version, "path": t.source} for t in ordered],
    }


def _print_table(rows: Sequence[dict[str, Any]]) -> None:
    table = [("NAMESPACE", "NAME", "VERSIONS", "PATH")]
    for row in rows:
        versions = ", ".join(v["version"] for v in row["versions"])
        path = row["path"] or "(latest version is invalid: see the errors)"
        table.append((row["namespace"], row["name"], versions, path))
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        print("  ".join([*cells, line[3]]))


# ----------------------------------------------------------------------------------- validate


def run_validate(args: argparse.Namespace) -> int:
    """Check each file; print ``ok`` lines on stdout and every error on stderr."""
    try:
        roots, attempts = _config_values(args)
    except ConfigError as exc:
        return _fail(str(exc))
    files: list[str] = []
    for arg in args.paths:
        if os.path.isdir(arg):
            found = sorted(_template_files(arg, sys.maxsize))
            if not found:
                return _fail(f"no template files (*.yml, *.yaml) below {arg}")
            files.extend(found)
        elif os.path.isfile(arg):
            files.append(arg)
        else:
            return _fail(f"no such file or directory: {arg}")
    results = [_validate_file(path, roots, attempts) for path in files]
    if args.json:
        print(json.dumps([_result_json(path, outcome) for path, outcome in results], indent=2))
    for path, outcome in results:
        if isinstance(outcome, TemplateError):
            print(str(outcome), file=sys.stderr)
        elif not args.json:
            print(f"ok  {path}  {outcome.key}")
    invalid = sum(isinstance(outcome, TemplateError) for _, outcome in results)
    if invalid:
        print(f"{invalid} of {len(results)} template file(s) invalid", file=sys.stderr)
    return 1 if invalid else 0


def _validate_file(
    path: str, roots: Sequence[str], attempts: int
) -> tuple[str, TaskTemplate | TemplateError]:
    try:
        template = load_template_file(path, default_max_attempts=attempts)
        root = _root_of(path, roots)
        if root is not None:
            check_placement(root, path, template)
    except TemplateError as exc:
        return path, exc
    return path, template


def _root_of(path: str, roots: Sequence[str]) -> str | None:
    """The first configured templates directory that ``path`` lies below, if any."""
    absolute = os.path.abspath(path)
    for root in roots:
        base = os.path.abspath(root)
        if os.path.commonpath([base, absolute]) == base:
            return root
    return None


def _result_json(path: str, outcome: TaskTemplate | TemplateError) -> dict[str, Any]:
    if isinstance(outcome, TemplateError):
        error = {
            "message": str(outcome),
            "file": outcome.file,
            "line": outcome.line,
            "column": outcome.column,
        }
        return {"path": path, "valid": False, "template": None, "error": error}
    return {"path": path, "valid": True, "template": outcome.key, "error": None}
