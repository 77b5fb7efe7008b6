"""The bundled examples end to end on SQLite, in-process: final states, attempts, results.

``tasker_examples`` lives in examples/ (its own distribution); the tests put that directory on
sys.path so they run from a plain checkout too.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasker_core import Config, Engine, PermanentError, Task, TaskRequest
from tasker_core.handlers import RetryableError
from tasker_core.plugin import PluginHost

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import tasker_examples  # noqa: E402
from tasker_examples import DEMOS, Demo, ecommerce, plugin  # noqa: E402


def make_config(tmp_path: Path) -> Config:
    return Config.from_mapping(
        {
            "store": {"url": f"sqlite:///{tmp_path / 'examples.db'}"},
            "events": {"sinks": []},
            "execution": {"poll_interval": "50ms"},
        }
    )


def builtin_plugins() -> PluginHost:
    """The builtins only: whatever else is installed in the environment cannot interfere."""
    return PluginHost.create(load_entrypoints=False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine(make_config(tmp_path), plugins=builtin_plugins()) as engine:
        for path in tasker_examples.template_files():
            engine.load_template(path)
        yield engine


def demo(namespace: str) -> Demo:
    return next(d for d in DEMOS if d.namespace == namespace)


def run(engine: Engine, example: Demo, **context: Any) -> Task:
    request = TaskRequest(example.namespace, example.name, context={**example.context, **context})
    return engine.run(request, timeout=60)


def steps_of(engine: Engine, task: Task) -> dict[str, Any]:
    return {step.name: step for step in engine.get_steps(task.id)}


def test_every_template_loads_and_every_handler_resolves(engine: Engine) -> None:
    names = {(t.namespace, t.name) for t in engine.registry.templates()}
    assert names == {(d.namespace, d.name) for d in DEMOS}
    for template in engine.registry.templates():
        assert engine.registry.resolve_template_handlers(template).keys() == {
            s.name for s in template.steps
        }


def test_order_fulfillment_completes_after_one_payment_retry(engine: Engine) -> None:
    task = run(engine, demo("ecommerce"))
    assert task.state == "complete"
    steps = steps_of(engine, task)
    assert {name: s.state for name, s in steps.items()} == dict.fromkeys(steps, "complete")
    assert steps["charge_payment"].attempts == 2
    assert all(s.attempts == 1 for name, s in steps.items() if name != "charge_payment")
    priced = steps["validate_order"].results
    # 2 x 1250 + 1900 = 4400 cents; under the free-shipping threshold; 8% tax rounded.
    assert priced["subtotal_cents"] == 4400
    assert priced["total_cents"] == 4400 + 499 + 352
    assert steps["charge_payment"].results["amount_cents"] == priced["total_cents"]
    assert steps["ship_order"].results["carrier"] == "parcel"  # 2*350 + 180 grams
    retried = [
        t
        for t in engine.transitions(task.id)
        if t.step == "charge_payment" and t.to_state == "error"
    ]
    assert len(retried) == 1


def test_charge_and_reservation_run_independently(engine: Engine) -> None:
    """Charge and reserve both depend only on validation: the reservation does not wait for the
    charge's backoff (it completes before the charge's second attempt starts)."""
    task = run(engine, demo("ecommerce"))
    history = engine.transitions(task.id)
    reserved = next(
        t.sort_key for t in history if t.step == "reserve_inventory" and t.to_state == "complete"
    )
    second_charge = [
        t.sort_key for t in history if t.step == "charge_payment" and t.to_state == "in_progress"
    ][1]
    assert reserved < second_charge


def test_order_with_unknown_sku_fails_permanently_at_validation(engine: Engine) -> None:
    items = [{"sku": "GHOST", "quantity": 1, "unit_price_cents": 100}]
    task = run(engine, demo("ecommerce"), items=items)
    assert task.state == "error"
    steps = steps_of(engine, task)
    assert steps["validate_order"].state == "error"
    assert steps["validate_order"].error is not None
    assert "unknown sku 'GHOST'" in steps["validate_order"].error.message
    assert steps["validate_order"].attempts == 1
    assert {steps[n].state for n in ("charge_payment", "reserve_inventory", "ship_order")} == {
        "pending"
    }


def test_pipeline_loads_every_order_and_is_reproducible(engine: Engine) -> None:
    first = run(engine, demo("data"), orders=300)
    second = run(engine, demo("data"), orders=300, customers=60)  # same data, new task
    assert first.state == second.state == "complete"
    a, b = steps_of(engine, first), steps_of(engine, second)
    assert a["load"].results["rows_loaded"] == 300
    assert a["load"].results["checksum"] == b["load"].results["checksum"]
    transformed = a["transform"].results
    assert transformed["revenue_cents"] == a["load"].results["revenue_cents"]
    assert sum(transformed["by_category"].values()) == transformed["revenue_cents"]
    orders = a["extract_orders"].results
    assert len(orders) == 300
    assert (
        a["load"].results["checksum"]
        != steps_of(engine, run(engine, demo("data"), seed=8))["load"].results["checksum"]
    )


def test_onboarding_ends_in_error_with_the_other_branches_complete(engine: Engine) -> None:
    task = run(engine, demo("onboarding"))
    assert task.state == "error"
    steps = steps_of(engine, task)
    assert {name: s.state for name, s in steps.items()} == {
        "create_account": "complete",
        "send_welcome_email": "complete",
        "provision_workspace": "complete",
        "invite_team": "complete",
        "sync_crm": "error",
    }
    crm = steps["sync_crm"]
    assert crm.attempts == 1  # PermanentError: the second allowed attempt is never made
    assert crm.error is not None
    assert crm.error.error_class == "PermanentError"
    assert "reserved test domain" in crm.error.message
    assert steps["invite_team"].results["invited"] == ["alan@example.test", "barbara@example.test"]


def test_onboarding_with_a_real_domain_completes(engine: Engine) -> None:
    task = run(engine, demo("onboarding"), email="grace@navy.example.com")
    assert task.state == "complete"


def test_demo_expectations_match_what_happens(engine: Engine) -> None:
    for example in DEMOS:
        assert run(engine, example).state == example.expected_state, example.workflow


# --- the template-finder plugin ------------------------------------------------------------


def test_plugin_finds_bundled_templates_by_exact_or_latest_version(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    found = plugin.tasker_find_template("data", "pipeline", None, config)
    assert found is not None
    assert found.key == "data/pipeline@1.0.0"
    assert plugin.tasker_find_template("data", "pipeline", "1.0", config) == found
    assert plugin.tasker_find_template("data", "pipeline", "2.0.0", config) is None
    assert plugin.tasker_find_template("data", "pipeline", "not a version", config) is None
    assert plugin.tasker_find_template("data", "nothing", None, config) is None
    assert plugin.tasker_find_template("..", "templates", None, config) is None
    assert plugin.tasker_find_template("ecommerce/..", "x", None, config) is None


def test_engine_finds_examples_through_the_plugin(tmp_path: Path) -> None:
    host = builtin_plugins()
    host.register(plugin, "examples")
    with Engine(make_config(tmp_path), plugins=host) as engine:
        task = engine.run(TaskRequest("data", "pipeline", context={"orders": 10}), timeout=60)
        assert task.state == "complete"


# --- handler rules, property-based --------------------------------------------------------


class FakeContext:
    """Only what validate_order reads; the real StepContext is built by the engine."""

    def __init__(self, context: dict[str, Any], config: dict[str, Any]) -> None:
        self.context = context
        self.step_config = config
        self.attempt = 1


PRICING = {"tax_rate_percent": 8, "free_shipping_over_cents": 5000, "shipping_cents": 499}

items_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "sku": st.sampled_from(sorted(ecommerce.STOCK)),
            "quantity": st.integers(1, 20),
            "unit_price_cents": st.integers(0, 100_000),
        }
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(items=items_strategy)
def test_pricing_adds_up_in_whole_cents(items: list[dict[str, Any]]) -> None:
    ctx: Any = FakeContext({"order_id": "O-1", "items": items}, PRICING)
    priced = ecommerce.validate_order(ctx)
    subtotal = sum(i["quantity"] * i["unit_price_cents"] for i in items)
    assert priced["subtotal_cents"] == subtotal
    assert priced["shipping_cents"] == (0 if subtotal >= 5000 else 499)
    assert abs(priced["tax_cents"] * 100 - subtotal * 8) <= 50
    assert priced["total_cents"] == subtotal + priced["shipping_cents"] + priced["tax_cents"]


@settings(max_examples=40, deadline=None)
@given(wanted=st.dictionaries(st.sampled_from(sorted(ecommerce.STOCK)), st.integers(1, 120)))
def test_reservation_succeeds_exactly_when_stock_suffices(wanted: dict[str, int]) -> None:
    items = [{"sku": s, "quantity": q, "unit_price_cents": 1} for s, q in wanted.items()]
    ctx: Any = FakeContext({"order_id": "O-2", "items": items}, {})
    ctx.result_of = lambda _step: {"order_id": "O-2"}
    enough = all(q <= ecommerce.STOCK[s][0] for s, q in wanted.items())
    if enough:
        lines = ecommerce.reserve_inventory(ctx)["lines"]
        assert {line["sku"]: line["quantity"] for line in lines} == wanted
    else:
        with pytest.raises(PermanentError, match="not enough stock"):
            ecommerce.reserve_inventory(ctx)


def test_charge_times_out_exactly_the_configured_number_of_times() -> None:
    ctx: Any = FakeContext({"payment_token": "tok_visa_4242"}, {"simulated_timeouts": 2})
    ctx.result_of = lambda _step: {"order_id": "O-3", "total_cents": 1000}
    for attempt in (1, 2):
        ctx.attempt = attempt
        with pytest.raises(RetryableError):
            ecommerce.charge_payment(ctx)
    ctx.attempt = 3
    assert ecommerce.charge_payment(ctx)["amount_cents"] == 1000


# --- the quickstart's code, as written in docs/quickstart.md --------------------------------


def test_quickstart_template_and_handlers_run_as_documented(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (EXAMPLES.parent / "docs" / "quickstart.md").read_text(encoding="utf-8")
    template_text, handlers_text = re.findall(r"```(?:yaml|python)\n(.*?)```", doc, re.S)[:2]
    (tmp_path / "refund.yml").write_text(template_text)
    (tmp_path / "refund_handlers.py").write_text(handlers_text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = make_config(tmp_path).with_overrides({"backoff": {"jitter": 0.0}})
    with Engine(config, plugins=builtin_plugins()) as engine:
        engine.load_template(tmp_path / "refund.yml")
        context = {"order_id": "A-18", "amount_cents": 1200}
        failed = engine.run(TaskRequest("shop", "refund", context=context), timeout=60)
        assert failed.state == "error"
        states = {s.name: (s.state, s.attempts) for s in engine.get_steps(failed.id)}
        assert states == {
            "check_request": ("complete", 1),
            "pay_back": ("error", 4),
            "log_refund": ("complete", 1),
            "notify_customer": ("pending", 0),
        }
        (tmp_path / "bank_is_up").touch()
        engine.retry(failed.id)
        fixed = engine.run_task(failed.id, timeout=60)
        assert fixed.state == "complete"
        notify = {s.name: s for s in engine.get_steps(fixed.id)}["notify_customer"]
        assert notify.results == {"sent": True, "refund_id": "rf_A-18"}
