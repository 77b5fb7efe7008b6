"""Handlers of ``ecommerce/order_fulfillment``.

validate_order -> (charge_payment || reserve_inventory) -> ship_order -> send_confirmation.
Charging and reserving only need a validated order, so they run side by side; shipping needs
both. Money is integer cents throughout, so totals add up exactly. Nothing here talks to a real
gateway or warehouse: ids are derived from the order, so a re-run produces the same ids (what an
idempotent integration would do).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tasker_core import PermanentError, RetryableError, StepContext

# The warehouse this example reserves from: sku -> (units on hand, grams per unit, bin).
STOCK: dict[str, tuple[int, int, str]] = {
    "MUG-BLUE": (40, 350, "A-01-3"),
    "MUG-RED": (12, 350, "A-01-4"),
    "TEE-M": (25, 180, "B-07-1"),
    "TEE-L": (8, 200, "B-07-2"),
    "POSTER-A2": (100, 120, "C-02-9"),
    "KEYBOARD": (3, 950, "D-11-2"),
}


def _ref(prefix: str, *parts: object) -> str:
    """A stable identifier: the same order always gets the same charge/shipment id."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:16]}"


def validate_order(ctx: StepContext) -> dict[str, Any]:
    """Check each line item against the catalogue and price the order."""
    order_id = str(ctx.context["order_id"])
    items: list[dict[str, Any]] = list(ctx.context["items"])
    problems = []
    for i, item in enumerate(items):
        if item["sku"] not in STOCK:
            problems.append(f"items[{i}]: unknown sku {item['sku']!r}")
    if problems:
        raise PermanentError(f"order {order_id} is invalid: " + "; ".join(problems))
    config = ctx.step_config
    subtotal = sum(int(i["quantity"]) * int(i["unit_price_cents"]) for i in items)
    shipping = (
        0 if subtotal >= int(config["free_shipping_over_cents"]) else int(config["shipping_cents"])
    )
    tax = (subtotal * int(config["tax_rate_percent"]) + 50) // 100
    return {
        "order_id": order_id,
        "lines": len(items),
        "units": sum(int(i["quantity"]) for i in items),
        "subtotal_cents": subtotal,
        "shipping_cents": shipping,
        "tax_cents": tax,
        "total_cents": subtotal + shipping + tax,
    }


def charge_payment(ctx: StepContext) -> dict[str, Any]:
    """Charge the order total. The first ``simulated_timeouts`` attempts time out (retryable)."""
    priced = ctx.result_of("validate_order")
    token = str(ctx.context["payment_token"])
    if not token.startswith("tok_"):
        raise PermanentError(f"payment token {token!r} was rejected by the gateway")
    if ctx.attempt <= int(ctx.step_config.get("simulated_timeouts", 0)):
        raise RetryableError(
            f"payment gateway timed out after 10s (simulated, attempt {ctx.attempt})"
        )
    return {
        "charge_id": _ref("ch", priced["order_id"], token),
        "amount_cents": priced["total_cents"],
        "card_last4": token[-4:],
        "attempt": ctx.attempt,
    }


def reserve_inventory(ctx: StepContext) -> dict[str, Any]:
    """Hold every line item in the warehouse; not enough stock fails the step for good."""
    order_id = ctx.result_of("validate_order")["order_id"]
    wanted: dict[str, int] = {}
    for item in ctx.context["items"]:
        wanted[item["sku"]] = wanted.get(item["sku"], 0) + int(item["quantity"])
    short = [
        f"{sku} (wanted {qty}, {STOCK[sku][0]} on hand)"
        for sku, qty in wanted.items()
        if qty > STOCK[sku][0]
    ]
    if short:
        raise PermanentError("not enough stock: " + ", ".join(short))
    lines = [
        {"sku": sku, "quantity": qty, "bin": STOCK[sku][2], "grams": qty * STOCK[sku][1]}
        for sku, qty in sorted(wanted.items())
    ]
    return {"reservation_id": _ref("rsv", order_id), "lines": lines}


def ship_order(ctx: StepContext) -> dict[str, Any]:
    """Pick a carrier by parcel weight and book the shipment."""
    charge = ctx.result_of("charge_payment")
    reservation = ctx.result_of("reserve_inventory")
    grams = sum(int(line["grams"]) for line in reservation["lines"])
    carrier, days = ("letterpost", 4) if grams <= 500 else ("parcel", 2)
    if grams > 5000:
        carrier, days = "freight", 5
    order_id = str(ctx.context["order_id"])
    return {
        "shipment_id": _ref("shp", order_id, charge["charge_id"]),
        "carrier": carrier,
        "weight_grams": grams,
        "tracking_number": _ref("TRK", order_id, carrier).upper(),
        "estimated_days": days,
    }


def send_confirmation(ctx: StepContext) -> dict[str, Any]:
    """Compose the confirmation email (returned, not sent: there is no mail server here)."""
    customer = ctx.context["customer"]
    shipment = ctx.result_of("ship_order")
    order_id = str(ctx.context["order_id"])
    return {
        "to": customer["email"],
        "subject": f"Your order {order_id} is on its way",
        "body": (
            f"Hi {customer['name']}, your order {order_id} ships with {shipment['carrier']}; "
            f"tracking number {shipment['tracking_number']}, "
            f"expected in {shipment['estimated_days']} days."
        ),
    }
