"""Workflows ready to run: template mappings, real handler callables, and invalid templates.

``workflow_templates()`` turns any graph strategy (random DAGs with size/width/depth limits, or
the named shapes) into a template mapping that ``tasker_core.templates.template_from_mapping``
accepts. ``behaviours()`` draws what a handler does (succeed, fail N times then succeed, fail
permanently, sleep, return a large result); ``Behaviour.handler()`` is the real callable, and
``workflow_cases()`` bundles a template, its handlers and the outcome the engine must reach.
``invalid_templates()`` draws broken mappings together with the error they must raise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from hypothesis import strategies as st
from tasker_core import (
    CycleError,
    DuplicateStepError,
    PermanentError,
    RetryableError,
    SelfDependencyError,
    StepContext,
    TemplateError,
    UnknownDependencyError,
)

from pytest_tasker.strategies import (
    Graph,
    chains,
    dags,
    defective_graphs,
    diamonds,
    fan_out_fan_ins,
    mixed_dags,
    trees,
)

__all__ = [
    "SHAPES",
    "Behaviour",
    "InvalidTemplate",
    "WorkflowCase",
    "behaviours",
    "expected_states",
    "invalid_templates",
    "named_shapes",
    "template_mapping",
    "workflow_cases",
    "workflow_templates",
]

SHAPES: dict[str, Callable[[], st.SearchStrategy[Graph]]] = {
    "chain": lambda: chains(1, 12),
    "diamond": diamonds,
    "tree": lambda: trees(3, 3),
    "fan_out_fan_in": lambda: fan_out_fan_ins(8, 2),
    "mixed": lambda: mixed_dags(3, 3, 3),
}
"""The classic workflow shapes by name, at sizes a test can run."""


def template_mapping(
    graph: Graph,
    *,
    namespace: str = "kit",
    name: str = "generated",
    version: str = "1.0.0",
    handler: str | Callable[[str], str] = "kit.work",
    max_attempts: int = 3,
) -> dict[str, Any]:
    """A template mapping for ``graph``; step i is named ``step_i`` (valid whatever the graph
    called it), in graph order, each with its dependencies renamed alike."""
    names, deps = graph
    renamed = {n: f"step_{i}" for i, n in enumerate(names)}
    steps: list[dict[str, Any]] = []
    for i, parents in enumerate(deps):
        step_name = f"step_{i}"
        entry: dict[str, Any] = {
            "name": step_name,
            "handler": handler(step_name) if callable(handler) else handler,
            "retry": {"max_attempts": max_attempts, "backoff": {"base": "1s", "max": "1s"}},
        }
        unique = list(dict.fromkeys(renamed[p] for p in parents))
        if unique:
            entry["depends_on"] = unique
        steps.append(entry)
    return {"namespace": namespace, "name": name, "version": version, "steps": steps}


def named_shapes(shape: str | None = None) -> st.SearchStrategy[Graph]:
    """Graphs of one named shape (chain, diamond, tree, fan_out_fan_in, mixed), or any."""
    if shape is None:
        return st.one_of(*(make() for make in SHAPES.values()))
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; known: {sorted(SHAPES)}")
    return SHAPES[shape]()


@st.composite
def workflow_templates(
    draw: st.DrawFn,
    graphs: st.SearchStrategy[Graph] | None = None,
    *,
    max_steps: int = 20,
    max_width: int | None = None,
    max_depth: int | None = None,
    name: str = "generated",
) -> dict[str, Any]:
    """Template mappings for random DAGs (within size/width/depth) or the given graphs."""
    chosen = (
        graphs
        if graphs is not None
        else st.one_of(dags(1, max_steps, max_width=max_width, max_depth=max_depth), named_shapes())
    )
    graph = draw(chosen.filter(lambda g: len(g[0]) > 0))
    return template_mapping(graph, name=name)


# -- handler behaviours ------------------------------------------------------------------------


@attrs.frozen
class Behaviour:
    """What one step's handler does. ``kind``: succeed, flaky, fail, sleep, large.

    ``failures`` is how many attempts fail before success (flaky), ``seconds`` the sleep,
    ``size`` the length of a large result's payload.
    """

    kind: str
    failures: int = 0
    seconds: float = 0.0
    size: int = 0

    def result(self, step: str) -> Any:
        """What the handler returns when it succeeds."""
        if self.kind == "large":
            return {"step": step, "blob": "x" * self.size, "items": list(range(self.size // 100))}
        return {"step": step, "ok": True}

    def attempts_needed(self) -> int | None:
        """Attempts until success, or None if it never succeeds."""
        if self.kind == "fail":
            return None
        return self.failures + 1 if self.kind == "flaky" else 1

    def handler(self) -> Callable[[StepContext], Any]:
        """The real handler callable (decides by ``ctx.attempt``, so it keeps no state)."""

        def run(ctx: StepContext) -> Any:
            if self.kind == "fail":
                raise PermanentError(f"{ctx.step} always fails")
            if self.kind == "flaky" and ctx.attempt <= self.failures:
                raise RetryableError(f"{ctx.step} attempt {ctx.attempt} fails")
            if self.kind == "sleep":
                time.sleep(self.seconds)
            return self.result(ctx.step)

        return run


def behaviours(
    *,
    max_failures: int = 2,
    max_sleep: float = 0.01,
    large: int = 100_000,
    kinds: tuple[str, ...] = ("succeed", "flaky", "fail", "sleep", "large"),
) -> st.SearchStrategy[Behaviour]:
    """Handler behaviours; success is the most common, as in real workflows."""
    options: list[st.SearchStrategy[Behaviour]] = []
    if "succeed" in kinds:
        options += [st.just(Behaviour("succeed"))] * 3
    if "flaky" in kinds:
        options.append(st.builds(Behaviour, st.just("flaky"), st.integers(1, max_failures)))
    if "fail" in kinds:
        options.append(st.just(Behaviour("fail")))
    if "sleep" in kinds:
        options.append(st.builds(Behaviour, st.just("sleep"), seconds=st.floats(0, max_sleep)))
    if "large" in kinds:
        options.append(st.just(Behaviour("large", size=large)))
    return st.one_of(options)


@attrs.frozen
class WorkflowCase:
    """A template, what each step does, the handlers to register, and the expected outcome."""

    template: dict[str, Any]
    behaviour: dict[str, Behaviour]
    handlers: dict[str, Callable[[StepContext], Any]]
    expected: dict[str, str]
    """Final state of every step (``complete``, ``error`` or ``pending`` when blocked)."""
    expected_task: str
    """``complete`` or ``error``."""


def expected_states(
    template: Mapping[str, Any], behaviour: Mapping[str, Behaviour]
) -> dict[str, str]:
    """Final step states with maximal progress: a step runs once every parent completed; it
    completes if its behaviour succeeds within ``max_attempts``, else ends in error; a step
    below a failure never runs (pending)."""
    steps = {s["name"]: s for s in template["steps"]}
    out: dict[str, str] = {}

    def state(name: str) -> str:
        if name not in out:
            parents = steps[name].get("depends_on", [])
            if any(state(p) != "complete" for p in parents):
                out[name] = "pending"
            else:
                needed = behaviour[name].attempts_needed()
                budget = steps[name].get("retry", {}).get("max_attempts", 3)
                out[name] = "complete" if needed is not None and needed <= budget else "error"
        return out[name]

    for name in steps:
        state(name)
    return out


@st.composite
def workflow_cases(
    draw: st.DrawFn,
    templates: st.SearchStrategy[dict[str, Any]] | None = None,
    behaviour: st.SearchStrategy[Behaviour] | None = None,
) -> WorkflowCase:
    """A runnable workflow: each step gets its own handler name and drawn behaviour."""
    template = draw(templates if templates is not None else workflow_templates(max_steps=12))
    pick = behaviour if behaviour is not None else behaviours()
    chosen: dict[str, Behaviour] = {}
    handlers: dict[str, Callable[[StepContext], Any]] = {}
    for step in template["steps"]:
        b = draw(pick)
        chosen[step["name"]] = b
        handler_name = f"{template['namespace']}.{step['name']}"
        step["handler"] = handler_name
        handlers[handler_name] = b.handler()
    expected = expected_states(template, chosen)
    task = "complete" if all(s == "complete" for s in expected.values()) else "error"
    return WorkflowCase(template, chosen, handlers, expected, task)


# -- invalid templates -------------------------------------------------------------------------


@attrs.frozen
class InvalidTemplate:
    """A template mapping that must be rejected: with ``error`` (always TemplateError from
    template_from_mapping), caused by ``cause`` when a graph check rejects it, and a message
    matching ``match`` (a regex)."""

    kind: str
    mapping: dict[str, Any]
    error: type[Exception]
    cause: type[Exception] | None
    match: str


_GRAPH_CAUSES: dict[str, tuple[type[Exception], str]] = {
    "cycle": (CycleError, "dependency cycle"),
    "self": (SelfDependencyError, "depends on itself"),
    "unknown": (UnknownDependencyError, "depends on unknown step"),
    "duplicate": (DuplicateStepError, "duplicate step name"),
}


@st.composite
def _graph_defect(draw: st.DrawFn, defect: str) -> InvalidTemplate:
    names, deps = draw(defective_graphs(max_steps=10, defects=(defect,)))
    # Names become valid identifiers; duplicates stay duplicates, unknown names stay unknown.
    ident = {n: f"s_{i}" for i, n in enumerate(dict.fromkeys(names))}
    unknown_ident = {p: f"ghost_{i}" for i, p in enumerate(sorted({p for d in deps for p in d}))}
    steps: list[dict[str, Any]] = []
    for n, parents in zip(names, deps, strict=True):
        entry: dict[str, Any] = {"name": ident[n], "handler": "kit.work"}
        renamed = [ident.get(p, unknown_ident[p]) for p in parents]
        if renamed:
            entry["depends_on"] = renamed
        steps.append(entry)
    mapping = {"namespace": "kit", "name": "broken", "version": "1.0.0", "steps": steps}
    cause, match = _GRAPH_CAUSES[defect]
    return InvalidTemplate(defect, mapping, TemplateError, cause, match)


def _valid(**top: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "namespace": "kit",
        "name": "broken",
        "version": "1.0.0",
        "steps": [{"name": "only", "handler": "kit.work"}],
    }
    base.update(top)
    return base


_FIELD_DEFECTS: list[InvalidTemplate] = [
    InvalidTemplate("bad_version", _valid(version="one"), TemplateError, None, "invalid version"),
    InvalidTemplate("unknown_key", _valid(step=[]), TemplateError, None, "did you mean 'steps'"),
    InvalidTemplate(
        "unknown_step_key",
        _valid(steps=[{"name": "only", "handler": "kit.work", "depend_on": []}]),
        TemplateError,
        None,
        "did you mean 'depends_on'",
    ),
    InvalidTemplate(
        "missing_handler", _valid(steps=[{"name": "only"}]), TemplateError, None, "handler"
    ),
    InvalidTemplate("no_steps", _valid(steps=[]), TemplateError, None, "non-empty list of steps"),
    InvalidTemplate(
        "bad_step_name",
        _valid(steps=[{"name": "has space", "handler": "kit.work"}]),
        TemplateError,
        None,
        "invalid step name",
    ),
    InvalidTemplate(
        "bad_max_attempts",
        _valid(steps=[{"name": "only", "handler": "kit.work", "retry": {"max_attempts": 0}}]),
        TemplateError,
        None,
        "max_attempts",
    ),
]


def invalid_templates(
    kinds: tuple[str, ...] | None = None,
) -> st.SearchStrategy[InvalidTemplate]:
    """Broken templates with the error each must raise (``kinds`` picks some: cycle, self,
    unknown, duplicate, bad_version, unknown_key, unknown_step_key, missing_handler,
    no_steps, bad_step_name, bad_max_attempts)."""
    options: list[st.SearchStrategy[InvalidTemplate]] = [
        _graph_defect(d) for d in _GRAPH_CAUSES if kinds is None or d in kinds
    ]
    fixed = [t for t in _FIELD_DEFECTS if kinds is None or t.kind in kinds]
    if fixed:
        options.append(st.sampled_from(fixed))
    if not options:
        raise ValueError(f"no invalid template kind among {kinds}")
    return st.one_of(options)
