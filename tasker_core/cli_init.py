"""What ``tasker init`` writes: a starter ``tasker.yaml`` and one small workflow with handlers.

The config file is generated from :data:`CONFIG_KEYS` (key, default as YAML, what it means), and
a test holds that table to the real defaults and to the full set of keys, so the starter file
can neither drift from ``tasker_core.config`` nor silently miss a key.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CONFIG_KEYS", "STARTER_FILES", "config_text", "write_starter"]

# (section, key, default written as YAML, explanation). Keys left commented out in the file.
CONFIG_KEYS: tuple[tuple[str, str, str, str], ...] = (
    ("store", "url", "sqlite:///./.tasker/tasker.db", "where tasks are stored (scheme = backend)"),
    ("store", "pool_size", "5", "connections the store may hold open"),
    ("store", "busy_timeout", "5s", "how long a write waits for a locked database"),
    ("store", "options", "{}", "backend-specific settings, passed through"),
    ("queue", "url", "memory://", "memory = this process's worker pool"),
    ("queue", "options", "{}", "backend-specific settings, passed through"),
    ("execution", "max_concurrent_steps", "8", "steps run at the same time"),
    ("execution", "step_timeout", "5m", "default limit for one attempt of a step"),
    ("execution", "lease", "30s", "a claimed step without heartbeat is reclaimed after this"),
    ("execution", "heartbeat_interval", "10s", "lease renewal period (shorter than lease)"),
    ("execution", "poll_interval", "1s", "how often an idle worker looks for work"),
    ("execution", "batch_size", "100", "most steps claimed or completed per round trip"),
    ("execution", "on_failure", "continue", "continue | stop: after a permanent step failure"),
    ("execution", "default_max_attempts", "3", "attempts (counting the first) when unset"),
    ("execution", "worker_id", "null", "null = derived from host name and process id"),
    ("backoff", "base", "1s", "delay after the first failed attempt"),
    ("backoff", "max", "5m", "upper bound of the delay"),
    ("backoff", "jitter", "0.1", "fraction a delay may be shortened by"),
    ("backoff", "seed", "0", "seed of the deterministic jitter"),
    ("events", "sinks", "[log]", "event sinks to deliver to ([] disables delivery)"),
    ("events", "buffer_size", "10000", "events buffered per sink before the oldest drop"),
    ("events", "batch_size", "256", "most events per sink call"),
    ("events", "flush_interval", "100ms", "longest an event waits before delivery"),
    ("templates", "paths", "[]", "directories the filesystem template finder searches"),
    ("templates", "cache", "true", "keep loaded templates in memory"),
    ("identity", "strategy", "key", "none | key | hash: how duplicate submissions are found"),
    ("logging", "level", "INFO", "DEBUG | INFO | WARNING | ERROR | CRITICAL"),
    ("logging", "format", "text", "text | json"),
)

# Keys the starter file sets (uncommented), with the value it gives them.
_ACTIVE = {("templates", "paths"): "[workflows]"}


def config_text() -> str:
    """The starter ``tasker.yaml``: every key at its default, commented out unless set."""
    lines = [
        "# tasker configuration; every key is listed with its default (docs/configuration.md).",
        "# Uncomment a key to change it. TASKER_ENV selects an environment section below",
        "# `default`; TASKER__SECTION__KEY=value environment variables override both.",
        "default:",
    ]
    section = ""
    for name, key, default, why in CONFIG_KEYS:
        if name != section:
            section = name
            lines.append(f"  {name}:")
        active = _ACTIVE.get((name, key))
        if active is None:
            lines.append(f"    # {key}: {default}".ljust(46) + f"  # {why}")
        else:
            lines.append(f"    {key}: {active}".ljust(46) + f"  # {why} (default {default})")
    lines += [
        "",
        "# test:                       # an environment: TASKER_ENV=test",
        "#   store:",
        "#     url: memory://",
        "",
    ]
    return "\n".join(lines)


_TEMPLATE = """\
namespace: hello
name: greet
version: 1.0.0
description: Look a person up, write them a greeting, and deliver it.
context_schema:
  type: object
  required: [name]
  properties:
    name: {type: string, minLength: 1}
    language: {enum: [en, fr, pt]}
steps:
  - name: look_up
    handler: workflows.hello.handlers:look_up
  - name: compose
    handler: workflows.hello.handlers:compose
    depends_on: [look_up]
    config: {greetings: {en: Hello, fr: Bonjour, pt: "Olá"}}
  - name: deliver
    handler: workflows.hello.handlers:deliver
    depends_on: [compose]
    retry: {max_attempts: 3, backoff: {base: 100ms, max: 1s}}
"""

_HANDLERS = '''\
"""Step handlers of hello/greet: plain functions taking a StepContext, returning JSON."""

from __future__ import annotations

from typing import Any

from tasker_core import PermanentError, RetryableError, StepContext


def look_up(ctx: StepContext) -> dict[str, Any]:
    name = str(ctx.context["name"]).strip()
    if not name:
        raise PermanentError("the context's name is empty")
    return {"name": name.title(), "language": ctx.context.get("language", "en")}


def compose(ctx: StepContext) -> str:
    person = ctx.result_of("look_up")
    greeting = ctx.step_config["greetings"][person["language"]]
    return f"{greeting}, {person['name']}!"


def deliver(ctx: StepContext) -> dict[str, Any]:
    # Pretend the first attempt hits a busy mail server: the step is retried after a backoff.
    if ctx.attempt == 1:
        raise RetryableError("mail server busy, try again shortly")
    return {"delivered": ctx.result_of("compose"), "attempt": ctx.attempt}
'''

#: Relative path -> content of every file ``tasker init`` writes.
STARTER_FILES: dict[str, str] = {
    "tasker.yaml": "",  # filled below from CONFIG_KEYS
    "workflows/__init__.py": '"""Workflow templates and their handlers."""\n',
    "workflows/hello/__init__.py": "",
    "workflows/hello/greet.yml": _TEMPLATE,
    "workflows/hello/handlers.py": _HANDLERS,
}
STARTER_FILES["tasker.yaml"] = config_text()


def write_starter(directory: Path, *, force: bool) -> list[Path]:
    """Write the starter files; FileExistsError naming them when any exists and not ``force``."""
    targets = [directory / rel for rel in STARTER_FILES]
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(
            "refusing to overwrite " + ", ".join(existing) + " (use --force to replace them)"
        )
    for target, content in zip(targets, STARTER_FILES.values(), strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return targets
