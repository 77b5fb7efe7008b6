"""The plugin as tasker sees it: entry point, options from tasker.yaml, and a real run."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from tasker_core import Config, ConfigError, Engine, ManualClock, TaskRequest
from tasker_core.plugin import PluginHost
from tasker_core.templates import template_from_mapping

from tasker_example_audit import AuditSink, read_audit_log
from tasker_example_audit import plugin as audit_plugin
from tasker_example_audit.plugin import make_audit_sink


def _config(**audit: object) -> Config:
    return Config.from_mapping({"events": {"sinks": ["audit"], "audit": dict(audit)}})


def test_entry_point_is_installed() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="tasker")}
    assert found.get("audit") == "tasker_example_audit.plugin", (
        "install the plugin: pip install -e plugins/tasker-example-audit"
    )


def test_options_come_from_events_audit(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "audit.jsonl"
    sink = make_audit_sink(_config(path=str(path), max_bytes="64KiB", backups=3, fsync=True))
    assert isinstance(sink, AuditSink)
    assert (sink.options.max_bytes, sink.options.backups, sink.options.fsync) == (
        65536,
        3,
        True,
    )
    assert sink.path == path and path.parent.is_dir()


def test_defaults_without_a_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    sink = make_audit_sink(Config.from_mapping({"events": {"sinks": ["audit"]}}))
    assert (sink.options.path, sink.options.max_bytes, sink.options.backups) == (
        "tasker-audit.jsonl",
        10 * 1024**2,
        5,
    )


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"max_bytes": "lots"}, "events.audit.max_bytes"),
        ({"max_bytes": 0}, "events.audit.max_bytes"),
        ({"backups": -1}, "events.audit.backups"),
        ({"fsync": "yes"}, "events.audit.fsync"),
        ({"path": ""}, "events.audit.path"),
        ({"rotate": 1}, "events.audit.rotate"),
    ],
)
def test_bad_options_name_their_key(options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as info:
        make_audit_sink(_config(**options))
    assert info.value.key_path == key


def test_an_engine_run_is_audited(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    config = Config.from_mapping(
        {
            "store": {"url": "memory://"},
            "events": {"sinks": ["audit"], "audit": {"path": str(path)}},
        }
    )
    host = PluginHost.create(load_entrypoints=False)
    host.register(audit_plugin, "audit")
    engine = Engine(config, clock=ManualClock(), plugins=host)
    try:
        engine.register_handler("demo.echo", lambda ctx: {"step": ctx.step})
        engine.register_template(
            template_from_mapping(
                {
                    "namespace": "demo",
                    "name": "pair",
                    "version": "1.0.0",
                    "steps": [
                        {"name": "first", "handler": "demo.echo"},
                        {"name": "second", "handler": "demo.echo", "depends_on": ["first"]},
                    ],
                }
            )
        )
        task = engine.run(TaskRequest("demo", "pair"))
    finally:
        engine.close()
    records = read_audit_log(path, 5)
    names = [r["name"] for r in records if r["task_id"] == task.id]
    assert names[0] == "task.created" and names[-1] == "task.completed"
    assert [r["step"] for r in records if r["name"] == "step.completed"] == ["first", "second"]
