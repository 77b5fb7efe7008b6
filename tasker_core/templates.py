"""Workflow templates: the frozen model and a YAML loader whose errors point at file:line:column.

A template is read once and then trusted by the engine, so the loader checks everything a run
would otherwise trip over later: keys (with a did-you-mean), types, names, the version, handler
reference syntax, durations, retry rules, the context JSON Schema, and the step graph (cycles,
unknown or duplicate steps, self-dependencies, via the native solver). docs/templates.md is the
format reference.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import jsonschema
from jsonschema import Draft202012Validator
from packaging.version import InvalidVersion, Version
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from tasker_core.durations import format_duration, parse_duration
from tasker_core.errors import (
    ContextValidationError,
    CycleError,
    DuplicateStepError,
    GraphError,
    SelfDependencyError,
    TemplateError,
    UnknownDependencyError,
)
from tasker_core.solver import build_graph

__all__ = [
    "RetryPolicy",
    "StepTemplate",
    "TaskTemplate",
    "load_template_file",
    "load_template_text",
    "template_from_mapping",
]

# Step names become keys of ctx.results and of stored rows: keep them identifier-like.
STEP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Namespaces and names also form file names for the filesystem finder and the "ns/name@v" key.
TEMPLATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*"
# A registry name ("ecommerce.charge_card") or an import path ("pkg.module:function").
HANDLER_REF = re.compile(rf"{_DOTTED}(?::{_DOTTED})?\Z")

_TOP_KEYS = ("namespace", "name", "version", "description", "context_schema", "steps")
_TOP_REQUIRED = ("namespace", "name", "version", "steps")
_STEP_KEYS = ("name", "handler", "depends_on", "retry", "timeout", "config", "description")
_STEP_REQUIRED = ("name", "handler")
_RETRY_KEYS = ("retryable", "max_attempts", "backoff")
_BACKOFF_KEYS = ("base", "max")


# --- rules shared by the model and the loader (each returns a problem, or None) ---------------


def _name_problem(value: str, pattern: re.Pattern[str], what: str) -> str | None:
    if pattern.match(value):
        return None
    allowed = "letters, digits and '_'"
    if pattern is TEMPLATE_NAME:
        allowed += " and '-'"
    return f"invalid {what} {value!r}: use {allowed}, starting with a letter or '_'"


def _version_problem(value: str) -> str | None:
    try:
        Version(value)
    except InvalidVersion:
        return f"invalid version {value!r}: expected a version like '1.2.0'"
    return None


def _handler_problem(value: str) -> str | None:
    if HANDLER_REF.match(value):
        return None
    return (
        f"invalid handler {value!r}: expected a registered name like 'ecommerce.charge_card' "
        "or an import path like 'package.module:function'"
    )


def _check(problem: str | None) -> None:
    if problem is not None:
        raise TemplateError(problem)


def _validate_name(pattern: re.Pattern[str], what: str) -> Callable[[Any, Any, str], None]:
    def check(_instance: Any, _attribute: Any, value: str) -> None:
        _check(_name_problem(value, pattern, what))

    return check


def _non_negative(_instance: Any, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value >= 0:
        raise TemplateError(f"{attribute.name} must not be negative, got {value!r}")


# --- the model ---------------------------------------------------------------------------------


@attrs.frozen
class RetryPolicy:
    """How often a failing step runs. ``max_attempts`` counts the first attempt too.

    ``backoff_base``/``backoff_max`` None means "use the configuration's ``backoff`` section".
    """

    retryable: bool = True
    max_attempts: int = attrs.field(default=3)
    backoff_base: float | None = attrs.field(default=None, validator=_non_negative)
    backoff_max: float | None = attrs.field(default=None, validator=_non_negative)

    @max_attempts.validator
    def _check_attempts(self, _attribute: Any, value: int) -> None:
        if value < 1:
            raise TemplateError(f"max_attempts must be at least 1, got {value}")

    def __attrs_post_init__(self) -> None:
        base, top = self.backoff_base, self.backoff_max
        if base is not None and top is not None and top < base:
            raise TemplateError(
                f"backoff.max ({format_duration(top)}) is less than "
                f"backoff.base ({format_duration(base)})"
            )


@attrs.frozen
class StepTemplate:
    """One step: which handler runs it, after which steps, with what retry policy and config."""

    name: str = attrs.field(validator=_validate_name(STEP_NAME, "step name"))
    handler: str = attrs.field()
    depends_on: tuple[str, ...] = ()
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    timeout: float | None = attrs.field(default=None)
    config: dict[str, Any] = attrs.field(factory=dict)
    description: str = ""

    @handler.validator
    def _check_handler(self, _attribute: Any, value: str) -> None:
        _check(_handler_problem(value))

    @timeout.validator
    def _check_timeout(self, _attribute: Any, value: float | None) -> None:
        if value is not None and not value > 0:
            raise TemplateError(f"step {self.name!r}: timeout must be positive, got {value!r}")


@attrs.frozen
class TaskTemplate:
    """A named, versioned workflow. Constructing one checks its step graph.

    ``source`` (file or label it was loaded from) is provenance only: it takes no part in
    equality, so the same template read from two places is the same template.
    """

    namespace: str = attrs.field(validator=_validate_name(TEMPLATE_NAME, "namespace"))
    name: str = attrs.field(validator=_validate_name(TEMPLATE_NAME, "name"))
    version: str = attrs.field()
    steps: tuple[StepTemplate, ...]
    description: str = ""
    context_schema: dict[str, Any] | None = None
    source: str | None = attrs.field(default=None, eq=False)
    _context_validator: Draft202012Validator | None = attrs.field(
        init=False, default=None, eq=False, repr=False
    )
    _step_index: dict[str, int] = attrs.field(init=False, factory=dict, eq=False, repr=False)

    @version.validator
    def _check_version(self, _attribute: Any, value: str) -> None:
        _check(_version_problem(value))

    def __attrs_post_init__(self) -> None:
        if not self.steps:
            raise TemplateError(f"{self.key}: a template needs at least one step")
        try:
            build_graph([(step.name, list(step.depends_on)) for step in self.steps])
        except GraphError as exc:
            raise TemplateError(f"{self.key}: {exc}") from exc
        validator = None
        if self.context_schema is not None:
            try:
                Draft202012Validator.check_schema(self.context_schema)
            except jsonschema.SchemaError as exc:
                raise TemplateError(f"{self.key}: invalid context_schema: {exc.message}") from exc
            validator = Draft202012Validator(
                self.context_schema, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
        object.__setattr__(self, "_context_validator", validator)
        # Filled in place: attrs already assigned the (empty) dict, and lookups must be O(1).
        self._step_index.update((step.name, index) for index, step in enumerate(self.steps))

    @property
    def key(self) -> str:
        """``namespace/name@version``: how logs, errors and the CLI name this template."""
        return f"{self.namespace}/{self.name}@{self.version}"

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    def step(self, name: str) -> StepTemplate:
        """The step called ``name``; KeyError if there is none."""
        index = self._step_index.get(name)
        if index is None:
            raise KeyError(f"{self.key} has no step {name!r}")
        return self.steps[index]

    def validate_context(self, context: Any) -> None:
        """Check a task context against ``context_schema`` (anything passes without one).

        Raises ContextValidationError naming the JSON path (``$.order.id``) of the best-matching
        failure, so a caller can fix the field rather than guess.
        """
        if self._context_validator is None:
            return
        error = jsonschema.exceptions.best_match(self._context_validator.iter_errors(context))
        if error is not None:
            raise ContextValidationError(
                f"context for {self.key} is invalid at {error.json_path}: {error.message}"
            )

    def to_mapping(self) -> dict[str, Any]:
        """The template in file form (defaults left out); ``template_from_mapping`` reads it."""
        out: dict[str, Any] = {
            "namespace": self.namespace,
            "name": self.name,
            "version": self.version,
        }
        if self.description:
            out["description"] = self.description
        if self.context_schema is not None:
            out["context_schema"] = self.context_schema
        out["steps"] = [_step_mapping(step) for step in self.steps]
        return out


def _step_mapping(step: StepTemplate) -> dict[str, Any]:
    out: dict[str, Any] = {"name": step.name, "handler": step.handler}
    if step.depends_on:
        out["depends_on"] = list(step.depends_on)
    retry: dict[str, Any] = {}
    if not step.retry.retryable:
        retry["retryable"] = False
    retry["max_attempts"] = step.retry.max_attempts
    backoff = {}
    if step.retry.backoff_base is not None:
        backoff["base"] = format_duration(step.retry.backoff_base)
    if step.retry.backoff_max is not None:
        backoff["max"] = format_duration(step.retry.backoff_max)
    if backoff:
        retry["backoff"] = backoff
    out["retry"] = retry
    if step.timeout is not None:
        out["timeout"] = format_duration(step.timeout)
    if step.config:
        out["config"] = step.config
    if step.description:
        out["description"] = step.description
    return out


# --- loading -----------------------------------------------------------------------------------


def load_template_file(
    path: str | os.PathLike[str], *, default_max_attempts: int = 3
) -> TaskTemplate:
    """Read and validate one template file; errors name ``path:line:column``."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template: {exc.strerror or exc}", str(file)) from exc
    return load_template_text(text, source=str(file), default_max_attempts=default_max_attempts)


def load_template_text(
    text: str, source: str = "<string>", *, default_max_attempts: int = 3
) -> TaskTemplate:
    """Parse and validate template YAML; ``source`` names it in errors and on the result."""
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise TemplateError(f"invalid YAML: {exc.problem or exc}", source, line, column) from exc
    except YAMLError as exc:
        raise TemplateError(f"invalid YAML: {exc}", source) from exc
    if data is None:
        raise TemplateError("the template is empty", source, 1, 1)
    return template_from_mapping(data, source, default_max_attempts=default_max_attempts)


def template_from_mapping(
    data: Mapping[str, Any], source: str | None = None, *, default_max_attempts: int = 3
) -> TaskTemplate:
    """Validate a parsed template (ruamel nodes give positions; plain dicts work too).

    ``default_max_attempts`` applies to steps whose ``retry`` leaves ``max_attempts`` out (the
    engine passes ``execution.default_max_attempts``).
    """
    return _Loader(source, default_max_attempts).template(data)


_Where = tuple[int | None, int | None]
_NOWHERE: _Where = (None, None)


def _position(node: Any, key: Any = None, *, of_key: bool = False) -> _Where:
    """1-based (line, column) of ``node[key]`` (or of the key itself), from ruamel's ``.lc``."""
    if not isinstance(node, CommentedBase):
        return _NOWHERE
    try:
        if key is None:
            line, column = node.lc.line, node.lc.col
        elif isinstance(node, Mapping):
            line, column = node.lc.key(key) if of_key else node.lc.value(key)
        else:
            line, column = node.lc.item(key)
    except (KeyError, IndexError, TypeError, AttributeError):
        return _NOWHERE
    if line is None or column is None:
        return _NOWHERE
    return line + 1, column + 1


def _describe(value: Any) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, text in kinds.items():
        if isinstance(value, kind):
            return f"{text} ({value!r})" if kind in (str, bool) else text
    if value is None:
        return "nothing (null)"
    return f"{value!r}"


class _Loader:
    """One pass over a parsed template, raising the first problem with its position."""

    def __init__(self, source: str | None, default_max_attempts: int) -> None:
        self.source = source
        self.default_max_attempts = default_max_attempts

    def fail(self, message: str, where: _Where) -> TemplateError:
        return TemplateError(message, self.source, where[0], where[1])

    # -- generic checks --

    def mapping(self, node: Any, path: str, where: _Where) -> Mapping[Any, Any]:
        if not isinstance(node, Mapping):
            raise self.fail(f"{path}: expected a mapping, got {_describe(node)}", where)
        return node

    def keys(
        self, node: Mapping[Any, Any], path: str, allowed: Sequence[str], required: Sequence[str]
    ) -> None:
        for key in node:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
            raise self.fail(
                f"{path}: unknown key {key!r}; {hint}", _position(node, key, of_key=True)
            )
        for key in required:
            if key not in node:
                raise self.fail(f"{path}: missing required key {key!r}", _position(node))

    def string(self, node: Mapping[Any, Any], key: str, path: str) -> str:
        value = node[key]
        if not isinstance(value, str):
            raise self.fail(
                f"{path}: expected a string, got {_describe(value)}", _position(node, key)
            )
        return str(value)

    def optional_string(self, node: Mapping[Any, Any], key: str, path: str) -> str:
        if node.get(key) is None:
            return ""
        return self.string(node, key, path)

    def named(self, node: Mapping[Any, Any], key: str, path: str, problem: str | None) -> None:
        if problem is not None:
            raise self.fail(f"{path}: {problem}", _position(node, key))

    def duration(self, node: Mapping[Any, Any], key: str, path: str) -> float | None:
        value = node.get(key)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.fail(f"{path}: {exc}", _position(node, key)) from exc

    def json_data(self, node: Any, path: str, where: _Where) -> Any:
        """Plain JSON-compatible data (dict/list/str/int/float/bool/None) from ruamel nodes."""
        if isinstance(node, Mapping):
            out: dict[str, Any] = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    raise self.fail(
                        f"{path}: keys must be strings, got {key!r}",
                        _position(node, key, of_key=True),
                    )
                out[key] = self.json_data(value, f"{path}.{key}", _position(node, key))
            return out
        if isinstance(node, (list, tuple)):
            return [
                self.json_data(item, f"{path}[{index}]", _position(node, index))
                for index, item in enumerate(node)
            ]
        if node is None or isinstance(node, bool):
            return node
        for kind in (str, int, float):
            if isinstance(node, kind):
                return kind(node)
        raise self.fail(
            f"{path}: {type(node).__name__} values are not JSON data; quote it as a string", where
        )

    # -- the template --

    def template(self, data: Any) -> TaskTemplate:
        top = self.mapping(data, "template", _position(data))
        self.keys(top, "template", _TOP_KEYS, _TOP_REQUIRED)
        namespace = self.string(top, "namespace", "namespace")
        self.named(
            top, "namespace", "namespace", _name_problem(namespace, TEMPLATE_NAME, "namespace")
        )
        name = self.string(top, "name", "name")
        self.named(top, "name", "name", _name_problem(name, TEMPLATE_NAME, "name"))
        version = self.version(top)
        description = self.optional_string(top, "description", "description")
        schema = self.context_schema(top)
        steps_node = top["steps"]
        if not isinstance(steps_node, list) or not steps_node:
            raise self.fail(
                f"steps: expected a non-empty list of steps, got {_describe(steps_node)}",
                _position(top, "steps"),
            )
        steps = tuple(self.step(steps_node, index) for index in range(len(steps_node)))
        self.graph(steps_node, steps)
        try:
            return TaskTemplate(
                namespace=namespace,
                name=name,
                version=version,
                description=description,
                context_schema=schema,
                steps=steps,
                source=self.source,
            )
        except TemplateError as exc:
            raise self.fail(str(exc), _position(top)) from exc

    def version(self, top: Mapping[Any, Any]) -> str:
        value = top["version"]
        where = _position(top, "version")
        if isinstance(value, float):
            raise self.fail(
                f"version: {value!r} reads as a number; quote it (version: '{value}') "
                "or write three parts (1.2.0)",
                where,
            )
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise self.fail(f"version: expected a string, got {_describe(value)}", where)
        self.named(top, "version", "version", _version_problem(value))
        return str(value)

    def context_schema(self, top: Mapping[Any, Any]) -> dict[str, Any] | None:
        node = top.get("context_schema")
        if node is None:
            return None
        where = _position(top, "context_schema")
        self.mapping(node, "context_schema", where)
        schema = self.json_data(node, "context_schema", where)
        try:
            Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            # Walk the ruamel nodes along the error's path to the offending entry's position.
            target: Any = node
            parent: Any = top
            key: str | int = "context_schema"
            for part in exc.path:
                try:
                    target, parent, key = target[part], target, part
                except (KeyError, IndexError, TypeError):
                    break
            where = _position(parent, key)
            pointer = "".join(f"[{p!r}]" for p in exc.path)
            raise self.fail(
                f"context_schema{pointer}: not a valid JSON Schema: {exc.message}", where
            ) from exc
        assert isinstance(schema, dict)
        return schema

    def step(self, steps: list[Any], index: int) -> StepTemplate:
        where = _position(steps, index)
        node = self.mapping(steps[index], f"steps[{index}]", where)
        label = f"steps[{index}]"
        if isinstance(node.get("name"), str):
            label = f"steps[{index}] ({node['name']})"
        self.keys(node, label, _STEP_KEYS, _STEP_REQUIRED)
        name = self.string(node, "name", f"{label}.name")
        self.named(node, "name", f"{label}.name", _name_problem(name, STEP_NAME, "step name"))
        handler = self.string(node, "handler", f"{label}.handler")
        self.named(node, "handler", f"{label}.handler", _handler_problem(handler))
        depends_on = self.depends_on(node, label)
        retry = self.retry(node, label)
        timeout = self.duration(node, "timeout", f"{label}.timeout")
        if timeout is not None and timeout <= 0:
            raise self.fail(f"{label}.timeout: must be positive", _position(node, "timeout"))
        config: dict[str, Any] = {}
        if node.get("config") is not None:
            config_where = _position(node, "config")
            self.mapping(node["config"], f"{label}.config", config_where)
            config = self.json_data(node["config"], f"{label}.config", config_where)
        description = self.optional_string(node, "description", f"{label}.description")
        return StepTemplate(
            name=name,
            handler=handler,
            depends_on=depends_on,
            retry=retry,
            timeout=timeout,
            config=config,
            description=description,
        )

    def depends_on(self, node: Mapping[Any, Any], label: str) -> tuple[str, ...]:
        value = node.get("depends_on")
        if value is None:
            return ()
        path = f"{label}.depends_on"
        if not isinstance(value, list):
            raise self.fail(
                f"{path}: expected a list of step names, got {_describe(value)}",
                _position(node, "depends_on"),
            )
        names: dict[str, None] = {}  # ordered and O(1) membership: a fan-in may list thousands
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.fail(
                    f"{path}[{index}]: expected a step name, got {_describe(item)}",
                    _position(value, index),
                )
            names.setdefault(str(item), None)
        return tuple(names)

    def retry(self, node: Mapping[Any, Any], label: str) -> RetryPolicy:
        value = node.get("retry")
        path = f"{label}.retry"
        if value is None:
            return RetryPolicy(max_attempts=self.default_max_attempts)
        retry = self.mapping(value, path, _position(node, "retry"))
        self.keys(retry, path, _RETRY_KEYS, ())
        retryable = retry.get("retryable", True)
        if not isinstance(retryable, bool):
            raise self.fail(
                f"{path}.retryable: expected true or false, got {_describe(retryable)}",
                _position(retry, "retryable"),
            )
        attempts = retry.get("max_attempts", self.default_max_attempts)
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise self.fail(
                f"{path}.max_attempts: expected an integer of at least 1 (it counts the first "
                f"attempt), got {_describe(attempts)}",
                _position(retry, "max_attempts"),
            )
        base = top = None
        if retry.get("backoff") is not None:
            backoff = self.mapping(retry["backoff"], f"{path}.backoff", _position(retry, "backoff"))
            self.keys(backoff, f"{path}.backoff", _BACKOFF_KEYS, ())
            base = self.duration(backoff, "base", f"{path}.backoff.base")
            top = self.duration(backoff, "max", f"{path}.backoff.max")
            if base is not None and top is not None and top < base:
                raise self.fail(
                    f"{path}.backoff.max: {format_duration(top)} is less than backoff.base "
                    f"({format_duration(base)})",
                    _position(backoff, "max"),
                )
        return RetryPolicy(
            retryable=retryable, max_attempts=int(attempts), backoff_base=base, backoff_max=top
        )

    def graph(self, nodes: list[Any], steps: tuple[StepTemplate, ...]) -> None:
        """Validate the DAG with the native solver; point the error at the step to blame."""
        names = [step.name for step in steps]
        try:
            build_graph([(step.name, list(step.depends_on)) for step in steps])
        except DuplicateStepError as exc:
            second = [i for i, name in enumerate(names) if name == exc.step][1]
            raise self.fail(
                f"steps[{second}]: {exc} (first defined at steps[{names.index(exc.step)}])",
                _position(nodes[second], "name"),
            ) from exc
        except UnknownDependencyError as exc:
            index = names.index(exc.step)
            close = difflib.get_close_matches(exc.dependency, names, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise self.fail(
                f"steps[{index}] ({exc.step}).depends_on: {exc}{hint}",
                self.dependency_position(nodes[index], exc.dependency),
            ) from exc
        except SelfDependencyError as exc:
            index = names.index(exc.step)
            raise self.fail(
                f"steps[{index}] ({exc.step}).depends_on: {exc}",
                self.dependency_position(nodes[index], exc.step),
            ) from exc
        except CycleError as exc:
            index = names.index(exc.path[0])
            raise self.fail(
                f"steps[{index}] ({exc.path[0]}): {exc}", _position(nodes[index], "name")
            ) from exc
        except GraphError as exc:
            raise self.fail(f"steps: {exc}", _NOWHERE) from exc

    @staticmethod
    def dependency_position(node: Any, dependency: str) -> _Where:
        listed = node.get("depends_on")
        if isinstance(listed, list) and dependency in listed:
            return _position(listed, listed.index(dependency))
        return _position(node, "depends_on")
