"""Template loading and validation: the model, located errors, context checks, round trips."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tasker_core.errors import ContextValidationError, TemplateError
from tasker_core.templates import (
    RetryPolicy,
    StepTemplate,
    TaskTemplate,
    load_template_file,
    load_template_text,
    template_from_mapping,
)

EXAMPLE = """\
namespace: ecommerce
name: order_fulfillment
version: 1.2.0
description: Validate, charge, reserve, ship
context_schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer}
steps:
  - name: validate_order
    handler: ecommerce.validate_order
  - name: charge_card
    handler: ecommerce.charge_card
    depends_on: [validate_order]
    retry: {retryable: true, max_attempts: 5, backoff: {base: 1s, max: 60s}}
    timeout: 30s
    config: {gateway: sandbox}
  - name: ship
    handler: "shipping.tasks:ship_order"
    depends_on: [charge_card, validate_order]
    description: Hand over to the carrier
"""


def load_error(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        load_template_text(text, source="t.yaml")
    return info.value


def test_example_loads_into_the_model() -> None:
    template = load_template_text(EXAMPLE, source="orders.yaml")
    assert template.key == "ecommerce/order_fulfillment@1.2.0"
    assert template.source == "orders.yaml"
    assert template.description == "Validate, charge, reserve, ship"
    assert [s.name for s in template.steps] == ["validate_order", "charge_card", "ship"]
    charge = template.step("charge_card")
    assert charge == StepTemplate(
        name="charge_card",
        handler="ecommerce.charge_card",
        depends_on=("validate_order",),
        retry=RetryPolicy(retryable=True, max_attempts=5, backoff_base=1.0, backoff_max=60.0),
        timeout=30.0,
        config={"gateway": "sandbox"},
    )
    assert type(charge.config) is dict
    assert template.steps[0].retry == RetryPolicy()
    assert template.steps[0].retry.backoff_base is None
    assert template.step("ship").depends_on == ("charge_card", "validate_order")
    assert template.step("ship").description == "Hand over to the carrier"
    with pytest.raises(KeyError):
        template.step("nope")


def test_default_max_attempts_applies_where_retry_leaves_it_out() -> None:
    template = load_template_text(EXAMPLE, default_max_attempts=7)
    assert template.step("validate_order").retry.max_attempts == 7
    assert template.step("charge_card").retry.max_attempts == 5


def test_load_template_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "orders.yml"
    path.write_text(EXAMPLE.replace("max_attempts: 5", "max_attempts: 0"), encoding="utf-8")
    with pytest.raises(TemplateError) as info:
        load_template_file(path)
    assert info.value.file == str(path)
    assert info.value.line == 16
    assert str(info.value).startswith(f"{path}:16:")
    with pytest.raises(TemplateError, match="cannot read template"):
        load_template_file(tmp_path / "missing.yml")


def test_validate_context_names_the_json_path() -> None:
    template = load_template_text(EXAMPLE)
    template.validate_context({"order_id": 12})
    with pytest.raises(ContextValidationError, match=re.escape("$.order_id")):
        template.validate_context({"order_id": "twelve"})
    with pytest.raises(ContextValidationError, match="'order_id' is a required property"):
        template.validate_context({})


def test_validate_context_nested_path_and_formats() -> None:
    schema = {
        "type": "object",
        "properties": {
            "items": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
            "email": {"type": "string", "format": "email"},
        },
    }
    template = template_from_mapping(
        {
            "namespace": "n",
            "name": "w",
            "version": "1",
            "context_schema": schema,
            "steps": [{"name": "a", "handler": "n.a"}],
        }
    )
    with pytest.raises(ContextValidationError, match=re.escape("$.items[1]")):
        template.validate_context({"items": [{"sku": 1}, {}]})
    with pytest.raises(ContextValidationError, match=re.escape("$.email")):
        template.validate_context({"email": "not an address"})


def test_no_schema_accepts_any_context() -> None:
    template = template_from_mapping(
        {"namespace": "n", "name": "w", "version": 2, "steps": [{"name": "a", "handler": "n.a"}]}
    )
    assert template.version == "2"
    template.validate_context({"anything": [1, 2, 3]})


# --- located errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "line", "column", "message"),
    [
        ("description: Validate", "descripton: Validate", 4, 1, "did you mean 'description'"),
        ("version: 1.2.0", "version: 1.2", 3, 10, "quote it"),
        ("version: 1.2.0", "version: banana", 3, 10, "invalid version 'banana'"),
        ("name: order_fulfillment", "name: order fulfillment", 2, 7, "invalid name"),
        ("namespace: ecommerce", "namespace: [a]", 1, 12, "expected a string"),
        ("max_attempts: 5", "max_attempts: 0", 16, 44, "at least 1"),
        ("max_attempts: 5", "max_atempts: 5", 16, 30, "did you mean 'max_attempts'"),
        ("retryable: true", "retryable: maybe", 16, 24, "true or false"),
        ("max: 60s", "max: 100ms", 16, 72, "less than backoff.base"),
        ("max: 60s", "maximum: 60s", 16, 67, "did you mean 'max'"),
        ("timeout: 30s", "timeout: 30 parsecs", 17, 14, "30 parsecs"),
        ("timeout: 30s", "timeout: 0s", 17, 14, "must be positive"),
        ("timeout: 30s", "timout: 30s", 17, 5, "did you mean 'timeout'"),
        ("handler: ecommerce.charge_card", "handler: charge card", 14, 14, "invalid handler"),
        ("- name: validate_order", "- name: validate-order", 11, 11, "invalid step name"),
        ("config: {gateway: sandbox}", "config: [sandbox]", 18, 13, "expected a mapping"),
        ("config: {gateway: sandbox}", "config: {at: 2024-01-01}", 18, 18, "not JSON data"),
        ("type: object", "type: objekt", 6, 9, "not a valid JSON Schema"),
        ("depends_on: [validate_order]", "depends_on: validate_order", 15, 17, "list of step"),
        ("depends_on: [validate_order]", "depends_on: [3]", 15, 18, "expected a step name"),
    ],
)
def test_errors_point_at_the_offending_text(
    old: str, new: str, line: int, column: int, message: str
) -> None:
    assert old in EXAMPLE
    error = load_error(EXAMPLE.replace(old, new, 1))
    assert message in str(error)
    assert (error.file, error.line, error.column) == ("t.yaml", line, column)
    assert str(error).startswith(f"t.yaml:{line}:{column}: ")


def test_missing_required_keys_point_at_the_mapping() -> None:
    error = load_error(EXAMPLE.replace("namespace: ecommerce\n", ""))
    assert "missing required key 'namespace'" in str(error)
    assert error.line == 1
    error = load_error(EXAMPLE.replace("    handler: ecommerce.charge_card\n", ""))
    assert "steps[1] (charge_card): missing required key 'handler'" in str(error)
    assert error.line == 13


def test_empty_and_malformed_documents() -> None:
    assert "empty" in str(load_error(""))
    assert "expected a mapping" in str(load_error("- just\n- a list\n"))
    error = load_error("namespace: [unclosed\n")
    assert "invalid YAML" in str(error)
    assert error.line is not None
    assert "duplicate" in str(load_error("namespace: a\nnamespace: b\n")).lower()
    assert "non-empty list" in str(load_error(EXAMPLE.split("steps:")[0] + "steps: []\n"))


def test_graph_errors_name_the_step_and_line() -> None:
    cycle = EXAMPLE.replace(
        "    handler: ecommerce.validate_order\n",
        "    handler: ecommerce.validate_order\n    depends_on: [ship]\n",
    )
    error = load_error(cycle)
    assert "dependency cycle: validate_order -> ship -> charge_card -> validate_order" in str(error)
    assert (error.line, error.column) == (11, 11)

    unknown = load_error(EXAMPLE.replace("[charge_card, validate_order]", "[charge_card, valdate]"))
    assert "unknown step 'valdate'" in str(unknown)
    assert "did you mean 'validate_order'" in str(unknown)
    assert (unknown.line, unknown.column) == (21, 31)

    itself = load_error(EXAMPLE.replace("[charge_card, validate_order]", "[charge_card, ship]"))
    assert "depends on itself" in str(itself)
    assert (itself.line, itself.column) == (21, 31)

    twice = load_error(EXAMPLE.replace("- name: ship", "- name: charge_card"))
    assert "duplicate step name 'charge_card'" in str(twice)
    assert (twice.line, twice.column) == (19, 11)


def test_direct_construction_is_validated_too() -> None:
    step = StepTemplate(name="a", handler="n.a")
    with pytest.raises(TemplateError, match="invalid version"):
        TaskTemplate(namespace="n", name="w", version="x.y", steps=(step,))
    with pytest.raises(TemplateError, match="depends on unknown step"):
        TaskTemplate(
            namespace="n",
            name="w",
            version="1.0",
            steps=(StepTemplate(name="a", handler="n.a", depends_on=("b",)),),
        )
    with pytest.raises(TemplateError, match="at least one step"):
        TaskTemplate(namespace="n", name="w", version="1.0", steps=())
    with pytest.raises(TemplateError, match="invalid step name"):
        StepTemplate(name="a b", handler="n.a")
    with pytest.raises(TemplateError, match="invalid handler"):
        StepTemplate(name="a", handler="n.a:")
    with pytest.raises(TemplateError, match="max_attempts"):
        RetryPolicy(max_attempts=0)
    with pytest.raises(TemplateError, match="context_schema"):
        TaskTemplate(
            namespace="n", name="w", version="1.0", steps=(step,), context_schema={"type": 5}
        )


def test_source_is_not_part_of_equality() -> None:
    assert load_template_text(EXAMPLE, source="a.yaml") == load_template_text(
        EXAMPLE, source="b.yaml"
    )


# --- properties --------------------------------------------------------------------------------

IDENT = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)
DURATION = st.floats(min_value=0, max_value=1e6, allow_nan=False)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**53), 2**53)
        | st.floats(allow_nan=False, allow_infinity=False)
        | text,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(IDENT, inner, max_size=3),
        max_leaves=8,
    )


# YAML normalises its extra line breaks (NEL, LS, PS) in scalars, so text never holds them.
ANY_TEXT = st.text(st.characters(exclude_characters="\x85\u2028\u2029"), max_size=20)


@st.composite
def retry_policies(draw: st.DrawFn) -> RetryPolicy:
    base = draw(st.none() | DURATION)
    top = draw(st.none() | DURATION.filter(lambda x: base is None or x >= base))
    return RetryPolicy(
        retryable=draw(st.booleans()),
        max_attempts=draw(st.integers(1, 20)),
        backoff_base=base,
        backoff_max=top,
    )


@st.composite
def task_templates(draw: st.DrawFn, text: st.SearchStrategy[str] = ANY_TEXT) -> TaskTemplate:
    names = draw(st.lists(IDENT, min_size=1, max_size=8, unique=True))
    steps = []
    for index, name in enumerate(names):
        earlier = names[:index]
        depends = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        handler = draw(
            st.builds(lambda a, b: f"{a}.{b}", IDENT, IDENT)
            | st.builds(lambda a, b: f"{a}.mod:{b}", IDENT, IDENT)
        )
        steps.append(
            StepTemplate(
                name=name,
                handler=handler,
                depends_on=tuple(depends),
                retry=draw(retry_policies()),
                timeout=draw(st.none() | DURATION.filter(lambda x: x > 0)),
                config=draw(st.dictionaries(IDENT, json_values(text), max_size=3)),
                description=draw(text),
            )
        )
    # Shuffle the step order: a step may be listed before the steps it depends on.
    order = draw(st.permutations(range(len(steps))))
    schema = draw(
        st.none()
        | st.builds(
            lambda req: {"type": "object", "required": req},
            st.lists(IDENT, unique=True, max_size=3),
        )
    )
    return TaskTemplate(
        namespace=draw(IDENT),
        name=draw(IDENT),
        version=draw(st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True)),
        description=draw(text),
        context_schema=schema,
        steps=tuple(steps[i] for i in order),
    )


@settings(max_examples=60, deadline=None)
@given(task_templates())
def test_random_templates_round_trip_through_yaml(template: TaskTemplate) -> None:
    assert template_from_mapping(template.to_mapping()) == template
    stream = io.StringIO()
    YAML(typ="rt").dump(template.to_mapping(), stream)
    loaded = load_template_text(stream.getvalue(), source="random.yaml")
    assert loaded == template
    assert loaded.source == "random.yaml"


def emit(template: TaskTemplate) -> tuple[list[str], dict[tuple[int, str], int]]:
    """Block YAML for ``template``, one key per line, and the 1-based line of each step key."""
    data = template.to_mapping()
    lines = [f"namespace: {data['namespace']}", f"name: {data['name']}"]
    lines.append(f"version: {json.dumps(data['version'])}")
    for key in ("description", "context_schema"):
        if key in data:
            lines.append(f"{key}: {json.dumps(data[key])}")
    lines.append("steps:")
    where: dict[tuple[int, str], int] = {}
    for index, step in enumerate(data["steps"]):
        step.setdefault("depends_on", [])
        step.setdefault("timeout", None)
        for position, key in enumerate(step):
            prefix = "  - " if position == 0 else "    "
            lines.append(f"{prefix}{key}: {json.dumps(step[key])}")
            where[(index, key)] = len(lines)
    return lines, where


# JSON-escaped astral characters are not valid YAML escapes: keep emitted text simple.
PLAIN_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
MUTATIONS = [
    "unknown_key",
    "attempts",
    "handler",
    "timeout",
    "name",
    "unknown_dep",
    "self_dep",
    "duplicate",
]


@settings(max_examples=80, deadline=None)
@given(task_templates(text=PLAIN_TEXT), st.sampled_from(MUTATIONS), st.data())
def test_mutations_are_reported_at_their_line(
    template: TaskTemplate, mutation: str, data: st.DataObject
) -> None:
    lines, where = emit(template)
    assert load_template_text("\n".join(lines)) == template
    count = len(template.steps)
    index = data.draw(st.integers(0, count - 1), label="step")
    step = template.steps[index]

    def replace(key: str, value: Any) -> int:
        line = where[(index, key)]
        prefix = lines[line - 1].split(f"{key}:")[0]
        lines[line - 1] = f"{prefix}{key}: {json.dumps(value)}"
        return line

    expected_message = {
        "unknown_key": "did you mean 'timeout'",
        "attempts": "max_attempts",
        "handler": "invalid handler",
        "timeout": "invalid duration",
        "name": "invalid step name",
        "unknown_dep": "unknown step 'not_a_step_'",
        "self_dep": "depends on itself",
        "duplicate": "duplicate step name",
    }[mutation]
    if mutation == "unknown_key":
        line = where[(index, "handler")]
        lines.insert(line, "    timout: 5s")
        expected = line + 1
    elif mutation == "attempts":
        expected = replace("retry", {"max_attempts": 0})
    elif mutation == "handler":
        expected = replace("handler", "not a handler")
    elif mutation == "timeout":
        expected = replace("timeout", "soon")
    elif mutation == "name":
        expected = replace("name", f"9{step.name}")
    elif mutation == "unknown_dep":
        expected = replace("depends_on", [*step.depends_on, "not_a_step_"])
    elif mutation == "self_dep":
        expected = replace("depends_on", [*step.depends_on, step.name])
    else:
        assume(count > 1)
        other = data.draw(st.integers(0, count - 1).filter(lambda i: i != index), label="other")
        first, second = sorted((index, other))
        index = second
        expected = replace("name", template.steps[first].name)
    with pytest.raises(TemplateError) as info:
        load_template_text("\n".join(lines), source="m.yaml")
    assert expected_message in str(info.value)
    assert info.value.line == expected, str(info.value)
    assert info.value.file == "m.yaml"
