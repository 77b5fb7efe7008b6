"""Output of the ``tasker`` command: the stable JSON shapes and their text renderings.

The JSON shapes are a public contract (docs/cli.md documents them): scripts parse them, so fields
are only ever added, never renamed or removed. Text output is for people and may change. Colour is
applied by :class:`Style`, which is a no-op unless stdout is a terminal and ``NO_COLOR`` is unset.
"""

from __future__ import annotations

import datetime
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from tasker_core.fsm import StepState, TaskState
from tasker_core.models import Step, Task
from tasker_core.orchestration.finalizer import ExecutionContext
from tasker_core.plugin.manager import PluginInfo
from tasker_core.templates import TaskTemplate

__all__ = [
    "Style",
    "format_detail",
    "format_plugins",
    "format_tasks",
    "graph_data",
    "human_duration",
    "plugin_dict",
    "plural",
    "task_detail",
    "task_summary",
    "to_dot",
    "to_mermaid",
    "write_json",
]

SATISFIED = frozenset({StepState.COMPLETE.value, StepState.RESOLVED_MANUALLY.value})

# ANSI colours per state (terminal) and fill colours (graphs); one table so they agree.
_ANSI = {
    "complete": "32",
    "resolved_manually": "36",
    "in_progress": "33",
    "enqueued": "33",
    "pending": "37",
    "error": "31",
    "cancelled": "35",
}
_FILL = {
    "complete": "#a5d6a7",
    "resolved_manually": "#80deea",
    "in_progress": "#fff59d",
    "enqueued": "#ffe082",
    "pending": "#e0e0e0",
    "error": "#ef9a9a",
    "cancelled": "#ce93d8",
}


class Style:
    """ANSI styling that switches itself off when it would be noise (no-color.org)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    @classmethod
    def for_stream(cls, stream: TextIO, environ: Mapping[str, str] = os.environ) -> Style:
        """Colour only on a terminal, and never when ``NO_COLOR`` is set to anything non-empty."""
        isatty = getattr(stream, "isatty", None)
        tty = bool(isatty()) if callable(isatty) else False
        return cls(tty and not environ.get("NO_COLOR"))

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled else text

    def state(self, state: str, text: str | None = None) -> str:
        return self._wrap(_ANSI.get(state, "0"), state if text is None else text)

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


def human_duration(seconds: float | None) -> str:
    """``350ms``, ``1.42s``, ``2m05s``, ``1h02m``: short and unambiguous for people."""
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _timestamp(value: float | None) -> str:
    if value is None:
        return "-"
    return datetime.datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")


# --- JSON shapes -------------------------------------------------------------------------------


def _duration(task: Task) -> float | None:
    if task.started_at is None:
        return None
    end = task.completed_at if task.completed_at is not None else task.updated_at
    return max(0.0, end - task.started_at)


def task_summary(task: Task, steps: Sequence[Step]) -> dict[str, Any]:
    """The ``task`` shape: one task without its steps (``tasks``, ``resume``, ``demo``)."""
    by_state = Counter(step.state for step in steps)
    return {
        "id": task.id,
        "workflow": task.workflow_key,
        "namespace": task.namespace,
        "name": task.name,
        "version": task.version,
        "state": task.state,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "completed_at": task.completed_at,
        "duration": _duration(task),
        "idempotency_key": task.idempotency_key,
        "steps_total": len(steps),
        "steps_done": sum(by_state[s] for s in SATISFIED),
        "steps_by_state": dict(sorted(by_state.items())),
        "attempts": sum(step.attempts for step in steps),
        "failed_steps": [s.name for s in steps if s.state == StepState.ERROR],
    }


def step_dict(step: Step) -> dict[str, Any]:
    error = None
    if step.error is not None:
        error = {
            "class": step.error.error_class,
            "message": step.error.message,
            "retryable": step.error.retryable,
        }
    return {
        "name": step.name,
        "index": step.index,
        "handler": step.handler,
        "state": step.state,
        "attempts": step.attempts,
        "max_attempts": step.max_attempts,
        "retryable": step.retryable,
        "next_retry_at": step.next_retry_at,
        "results": step.results,
        "error": error,
    }


def execution_dict(context: ExecutionContext | None) -> dict[str, Any] | None:
    if context is None:
        return None
    return {
        "status": context.status.value,
        "action": context.action.value,
        "ready": context.ready,
        "in_flight": context.in_flight,
        "waiting_for_retry": context.waiting_for_retry,
        "failed_permanently": context.failed_permanently,
        "next_retry_at": context.next_retry_at,
    }


def task_detail(
    task: Task, steps: Sequence[Step], context: ExecutionContext | None
) -> dict[str, Any]:
    """The ``task detail`` shape: the summary plus context, steps and execution context.

    ``execution`` is null when the task's template cannot be found by this process.
    """
    detail = task_summary(task, steps)
    detail["context"] = task.context
    detail["steps"] = [step_dict(step) for step in steps]
    detail["execution"] = execution_dict(context)
    return detail


def plugin_dict(info: PluginInfo) -> dict[str, Any]:
    """One plugin: where it came from and the hooks it implements (never its configuration)."""
    return {
        "name": info.name,
        "distribution": info.distribution,
        "version": info.version,
        "hooks": list(info.hooks),
    }


def write_json(out: TextIO, data: Any) -> None:
    json.dump(data, out, indent=2, sort_keys=False, default=str)
    out.write("\n")


# --- text renderings ---------------------------------------------------------------------------


def _attempts(step: Mapping[str, Any]) -> str:
    text = plural(int(step["attempts"]), "attempt")
    error = step["error"]
    if step["state"] == StepState.ERROR and error is not None:
        if step["retryable"] and error["retryable"]:
            text += f" of {step['max_attempts']}"
        else:
            text += ", not retryable"
    return text


def format_detail(detail: Mapping[str, Any], style: Style) -> str:
    """``tasker status``: a header, the execution context, then one line per step."""
    state = str(detail["state"])
    lines = [
        f"{style.bold('task')} {detail['id']}  {detail['workflow']}",
        f"  state     {style.state(state)}"
        + (f"  ({human_duration(detail['duration'])})" if detail["duration"] is not None else ""),
        f"  created   {_timestamp(detail['created_at'])}",
        f"  steps     {detail['steps_done']}/{detail['steps_total']} done, "
        f"{plural(detail['attempts'], 'attempt')}",
    ]
    execution = detail.get("execution")
    if execution is not None and state not in _FINAL_TASK_STATES:
        lines.append(f"  status    {execution['status']} (next: {execution['action']})")
        if execution["next_retry_at"] is not None:
            lines.append(f"  retry at  {_timestamp(execution['next_retry_at'])}")
    steps: list[Mapping[str, Any]] = list(detail.get("steps", []))
    width = max((len(str(s["name"])) for s in steps), default=0)
    for step in steps:
        name = str(step["name"]).ljust(width)
        step_state = str(step["state"])
        line = f"    {name}  {style.state(step_state, step_state.ljust(17))} {_attempts(step)}"
        error = step.get("error")
        if error is not None and step_state == StepState.ERROR:
            line += f"  {error['class']}: {error['message']}"
        lines.append(line)
    return "\n".join(lines)


_FINAL_TASK_STATES = frozenset(
    {TaskState.COMPLETE, TaskState.ERROR, TaskState.CANCELLED, TaskState.RESOLVED_MANUALLY}
)


def format_failures(detail: Mapping[str, Any]) -> list[str]:
    """One line per failed step and why: what ``run`` prints when a task ends in error."""
    lines = []
    for step in detail.get("steps", []):
        error = step.get("error")
        if step["state"] == StepState.ERROR and error is not None:
            lines.append(
                f"step {step['name']} failed after {_attempts(step)}: "
                f"{error['class']}: {error['message']}"
            )
    return lines


def format_tasks(summaries: Sequence[Mapping[str, Any]], style: Style) -> str:
    """``tasker tasks``: a table, newest first."""
    if not summaries:
        return "no tasks"
    header = ("ID", "WORKFLOW", "STATE", "STEPS", "ATTEMPTS", "CREATED", "DURATION")
    rows = [
        (
            str(s["id"]),
            str(s["workflow"]),
            str(s["state"]),
            f"{s['steps_done']}/{s['steps_total']}",
            str(s["attempts"]),
            _timestamp(s["created_at"]),
            human_duration(s["duration"]),
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row, widths, strict=True)]
        cells[2] = style.state(row[2], cells[2])
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def format_plugins(plugins: Iterable[Mapping[str, Any]]) -> str:
    """``tasker plugins``: name, distribution and version, then the hooks indented below."""
    lines = []
    for plugin in plugins:
        origin = plugin["distribution"] or "(registered in code)"
        if plugin["version"]:
            origin += f" {plugin['version']}"
        lines.append(f"{plugin['name']}  {origin}")
        for hook in plugin["hooks"]:
            lines.append(f"    {hook}")
    return "\n".join(lines) if lines else "no plugins"


_NO_FINDER = (
    "none installed: templates come only from --template files and code "
    "(pip install tasker-fs-templates to find YAML files under templates.paths)"
)


def format_capabilities(capabilities: Mapping[str, list[str]]) -> str:
    """What the installed plugins provide, by kind, so a missing piece is visible at a glance."""
    labels = {
        "stores": "store schemes",
        "queues": "queue schemes",
        "event_sinks": "event sinks",
        "template_finders": "template finders",
    }
    lines = [""]
    for key, label in labels.items():
        names = capabilities.get(key, [])
        shown = ", ".join(names) if names else (_NO_FINDER if key == "template_finders" else "none")
        lines.append(f"{label}: {shown}")
    return "\n".join(lines)


# --- graphs -----------------------------------------------------------------------------------


def graph_data(task: Task, steps: Sequence[Step], template: TaskTemplate) -> dict[str, Any]:
    """The ``graph`` shape: nodes (steps with state) and edges (dependency -> dependent)."""
    states = {step.name: step for step in steps}
    nodes = []
    for step in template.steps:
        stored = states.get(step.name)
        nodes.append(
            {
                "name": step.name,
                "handler": step.handler,
                "state": stored.state if stored is not None else StepState.PENDING.value,
                "attempts": stored.attempts if stored is not None else 0,
            }
        )
    edges = [
        {"from": parent, "to": step.name} for step in template.steps for parent in step.depends_on
    ]
    return {
        "task_id": task.id,
        "workflow": task.workflow_key,
        "state": task.state,
        "nodes": nodes,
        "edges": edges,
    }


def to_mermaid(graph: Mapping[str, Any]) -> str:
    """A Mermaid flowchart; each step is classed (and so coloured) by its state.

    Node ids are positional (``s0``, ``s1`` ...) because a step may be called ``end`` or
    ``class``, which Mermaid reserves; the label carries the name.
    """
    ids = {str(node["name"]): f"s{i}" for i, node in enumerate(graph["nodes"])}
    lines = [f"%% {graph['workflow']} task {graph['task_id']} ({graph['state']})", "flowchart TD"]
    for node in graph["nodes"]:
        lines.append(f'    {ids[node["name"]]}["{node["name"]}<br/>{node["state"]}"]')
    for edge in graph["edges"]:
        lines.append(f"    {ids[edge['from']]} --> {ids[edge['to']]}")
    used = sorted({str(node["state"]) for node in graph["nodes"]})
    for state in used:
        lines.append(f"    classDef state_{state} fill:{_FILL.get(state, '#ffffff')},stroke:#555")
    for state in used:
        members = ",".join(ids[n["name"]] for n in graph["nodes"] if n["state"] == state)
        lines.append(f"    class {members} state_{state}")
    return "\n".join(lines)


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: Mapping[str, Any]) -> str:
    """A Graphviz digraph; each step is filled with its state's colour."""
    title = f"{graph['workflow']} task {graph['task_id']} ({graph['state']})"
    lines = [
        f"digraph {_dot_id(str(graph['workflow']))} {{",
        f"    label={_dot_id(title)};",
        "    rankdir=LR;",
        '    node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for node in graph["nodes"]:
        label = f"{node['name']}\\n{node['state']}"
        fill = _FILL.get(str(node["state"]), "#ffffff")
        lines.append(f'    {_dot_id(node["name"])} [label="{label}", fillcolor="{fill}"];')
    for edge in graph["edges"]:
        lines.append(f"    {_dot_id(edge['from'])} -> {_dot_id(edge['to'])};")
    lines.append("}")
    return "\n".join(lines)
