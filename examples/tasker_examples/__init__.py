"""Runnable tasker-core workflows: YAML templates plus the Python handlers they name.

Each template under ``templates/<namespace>/<name>.yml`` refers to its handlers by import path
(``tasker_examples.ecommerce:charge_payment``), so nothing needs registering: load the template
and run it. ``tasker demo`` runs every entry of :data:`DEMOS` and checks it ends as expected.
Installed as a distribution, the package is also a template-finder plugin (see ``plugin.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["DEMOS", "TEMPLATES_DIR", "Demo", "template_files"]

TEMPLATES_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class Demo:
    """One demo run: which workflow, with what context, and the state it should end in."""

    namespace: str
    name: str
    context: dict[str, Any] = field(default_factory=dict)
    expected_state: str = "complete"
    summary: str = ""

    @property
    def workflow(self) -> str:
        return f"{self.namespace}/{self.name}"


DEMOS: tuple[Demo, ...] = (
    Demo(
        "ecommerce",
        "order_fulfillment",
        {
            "order_id": "ORD-1001",
            "customer": {"email": "ada@shop.example.com", "name": "Ada"},
            "items": [
                {"sku": "MUG-BLUE", "quantity": 2, "unit_price_cents": 1250},
                {"sku": "TEE-M", "quantity": 1, "unit_price_cents": 1900},
            ],
            "payment_token": "tok_visa_4242",
            "shipping_address": {"city": "Lisbon", "country": "PT"},
        },
        summary="the charge times out once and succeeds on its retry",
    ),
    Demo(
        "data",
        "pipeline",
        {"seed": 7, "orders": 500, "customers": 60, "products": 40},
        summary="three extracts in parallel, then transform and a verified load",
    ),
    Demo(
        "onboarding",
        "user_onboarding",
        {
            "email": "grace@example.test",
            "full_name": "Grace Hopper",
            "plan": "team",
            "team": ["alan@example.test", "barbara@example.test"],
        },
        expected_state="error",
        summary="the CRM rejects a test domain; every other branch completes",
    ),
)


def template_files() -> list[Path]:
    """Every bundled template file, sorted."""
    return sorted(TEMPLATES_DIR.glob("*/*.yml"))
