"""The plugin's registration, the `tasker db` command, the schema's spec knowledge, payloads."""

from __future__ import annotations

import json
import re

import psycopg
import pytest
from tasker_core.cli import main
from tasker_core.fsm import STEP, TASK
from tasker_core.plugin import PluginHost

from tasker_postgres import rows
from tasker_postgres.db import conninfo
from tasker_postgres.schema import LATEST_VERSION, current_version, upgrade
from tasker_postgres.schema_sql import FUNCTIONS, SET_BASED
from tasker_postgres.schema_v3 import REPORTING
from tasker_postgres.schema_v4 import FAST_SETTLE
from tasker_postgres.schema_v6 import DIRECT_CLAIM


def test_the_plugin_owns_both_schemes_for_store_and_queue() -> None:
    host = PluginHost.create()
    for scheme in ("postgresql", "postgresql+psycopg"):
        assert scheme in host.store_factories()
        assert scheme in host.queue_factories()


def test_db_upgrade_is_idempotent_and_status_reports_it(
    pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TASKER__STORE__URL", pg_url)
    assert main(["--json", "db", "upgrade"]) == 0
    assert json.loads(capsys.readouterr().out) == {"applied": [], "version": LATEST_VERSION}
    assert main(["--json", "db", "status"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == LATEST_VERSION


def test_migrating_an_empty_database_applies_every_version_in_order(pg_url: str) -> None:
    with psycopg.connect(conninfo(pg_url)) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.commit()
        assert current_version(conn) == 0
        assert upgrade(conn, "test", target=2) == [1, 2]
        assert upgrade(conn, "test", target=1) == []  # never downgrades
        assert current_version(conn) == 2
        assert upgrade(conn, "test") == list(range(3, LATEST_VERSION + 1))
        assert upgrade(conn, "test") == []


def test_db_refuses_a_non_postgres_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKER__STORE__URL", "sqlite://")
    assert main(["db", "status"]) == 2


def test_the_functions_record_only_legal_moves_with_the_spec_event_names() -> None:
    """Every (from, to, event) the SQL writes literally is a transition of spec/states.toml."""
    sql = FUNCTIONS + SET_BASED + REPORTING + FAST_SETTLE + DIRECT_CLAIM
    found = re.findall(r"'(\w+)', '(\w+)', '(\w+)'", sql)
    moves = [(a, b, e) for a, b, e in found if a in STEP.states or a in TASK.states]
    assert len(moves) >= 8
    for from_state, to_state, event in moves:
        machine = TASK if event in ("wait",) or (from_state, to_state) in _TASK_ONLY else STEP
        assert machine.check(from_state, to_state) == event, (from_state, to_state, event)


_TASK_ONLY = {("pending", "in_progress"), ("in_progress", "complete"), ("in_progress", "error")}


@pytest.mark.parametrize(
    "value",
    [{"a": "\x00"}, {"b": 1e300}, {"$tasker_json": "x"}, [1, 2.5, "x"], "plain", 0, {"k": 1e-7}],
)
def test_payloads_round_trip_exactly_through_jsonb(pg_url: str, value: object) -> None:
    text = rows.encode(value, "test")
    with psycopg.connect(conninfo(pg_url)) as conn:
        row = conn.execute("SELECT %s::jsonb", (text,)).fetchone()
    assert row is not None
    back = rows.decode(row[0])
    assert back == value and type(back) is type(value)
