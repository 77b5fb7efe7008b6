"""Handlers of ``data/pipeline``: three parallel extracts fan in to transform, then load.

The extracts generate their tables from the context's ``seed`` (no network, same seed -> same
data), so the pipeline is reproducible and its totals can be checked. ``load`` writes the facts to
an SQLite database and re-aggregates them in SQL: a load that lost or duplicated rows fails.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
from collections import defaultdict
from typing import Any

from tasker_core import PermanentError, StepContext

REGIONS = ("north", "south", "east", "west")
CATEGORIES = ("books", "games", "garden", "kitchen", "toys")
DEFAULTS = {"seed": 7, "orders": 500, "customers": 60, "products": 40}


def _setting(ctx: StepContext, key: str) -> int:
    return int(ctx.context.get(key, DEFAULTS[key]))


def _rng(ctx: StepContext, table: str) -> random.Random:
    return random.Random(f"{_setting(ctx, 'seed')}:{table}")


def extract_orders(ctx: StepContext) -> list[dict[str, Any]]:
    rng = _rng(ctx, "orders")
    customers, products = _setting(ctx, "customers"), _setting(ctx, "products")
    return [
        {
            "order_id": i + 1,
            "customer_id": rng.randint(1, customers),
            "product_id": rng.randint(1, products),
            "quantity": rng.randint(1, 5),
        }
        for i in range(_setting(ctx, "orders"))
    ]


def extract_customers(ctx: StepContext) -> list[dict[str, Any]]:
    rng = _rng(ctx, "customers")
    return [
        {"customer_id": i + 1, "name": f"customer-{i + 1:04d}", "region": rng.choice(REGIONS)}
        for i in range(_setting(ctx, "customers"))
    ]


def extract_products(ctx: StepContext) -> list[dict[str, Any]]:
    rng = _rng(ctx, "products")
    return [
        {
            "product_id": i + 1,
            "category": rng.choice(CATEGORIES),
            "price_cents": rng.randrange(199, 9999, 100),
        }
        for i in range(_setting(ctx, "products"))
    ]


def transform(ctx: StepContext) -> dict[str, Any]:
    """Join each order to its customer and product; revenue by region and by category."""
    customers = {c["customer_id"]: c for c in ctx.result_of("extract_customers")}
    products = {p["product_id"]: p for p in ctx.result_of("extract_products")}
    facts = []
    rejected = 0
    by_region: dict[str, int] = defaultdict(int)
    by_category: dict[str, int] = defaultdict(int)
    for order in ctx.result_of("extract_orders"):
        customer = customers.get(order["customer_id"])
        product = products.get(order["product_id"])
        if customer is None or product is None:
            rejected += 1
            continue
        revenue = int(order["quantity"]) * int(product["price_cents"])
        by_region[customer["region"]] += revenue
        by_category[product["category"]] += revenue
        facts.append(
            [order["order_id"], customer["region"], product["category"], order["quantity"], revenue]
        )
    return {
        "facts": facts,
        "rejected": rejected,
        "revenue_cents": sum(by_region.values()),
        "by_region": dict(sorted(by_region.items())),
        "by_category": dict(sorted(by_category.items())),
    }


def load(ctx: StepContext) -> dict[str, Any]:
    """Insert the facts into SQLite and check the database agrees with the transform."""
    shaped = ctx.result_of("transform")
    facts = shaped["facts"]
    database = str(ctx.step_config.get("database", ":memory:"))
    with sqlite3.connect(database) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS sales (order_id INTEGER PRIMARY KEY, region TEXT, "
            "category TEXT, quantity INTEGER, revenue_cents INTEGER)"
        )
        db.executemany("INSERT OR REPLACE INTO sales VALUES (?, ?, ?, ?, ?)", facts)
        rows = db.execute("SELECT region, SUM(revenue_cents) FROM sales GROUP BY region").fetchall()
        count = db.execute("SELECT COUNT(*) FROM sales").fetchone()[0]
    loaded = {str(region): int(total) for region, total in rows}
    if loaded != shaped["by_region"] or count != len(facts):
        raise PermanentError(
            f"load check failed: {count} rows in the database, {len(facts)} expected; "
            f"revenue by region {loaded} != {shaped['by_region']}"
        )
    checksum = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:16]
    return {
        "rows_loaded": count,
        "revenue_cents": sum(loaded.values()),
        "top_category": max(shaped["by_category"].items(), key=lambda kv: kv[1])[0],
        "checksum": checksum,
    }
