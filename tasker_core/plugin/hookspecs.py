"""Every hook tasker calls, with its contract.

Hooks are always called with keyword arguments, so a spec can gain an argument in a later release
without breaking plugins: a hook implementation only declares the arguments it uses. Only
:class:`tasker_core.plugin.PluginHost` calls these hooks; the rest of tasker goes through it.

Backends are chosen by name, never by "whoever answers first": the ``tasker_register_*`` hooks hand
each plugin a ``register`` callable, every name (or URL scheme) may be claimed by one plugin only,
and a second claim fails at start-up with a :class:`~tasker_core.errors.PluginError` naming both
plugins. ``firstresult`` is kept for resolution questions (:func:`tasker_find_template`).

The types below (``StoreFactory`` and friends) are what the ``register`` callables accept; plugin
authors may use them to type their factories.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    import argparse

    from tasker_core.config import Config
    from tasker_core.protocols import EventSink, Queue, Store
    from tasker_core.templates import TaskTemplate

PROJECT = "tasker"
"""The pluggy project name, the entry-point group and the prefix of every hook name."""

hookspec = pluggy.HookspecMarker(PROJECT)


class StoreFactory(Protocol):
    """Builds a store for a URL whose scheme the plugin registered."""

    def __call__(self, url: str, config: Config, /) -> Store: ...


class QueueFactory(Protocol):
    """Builds a queue for a URL whose scheme the plugin registered."""

    def __call__(self, url: str, config: Config, /) -> Queue: ...


class EventSinkFactory(Protocol):
    """Builds an event sink from the loaded configuration."""

    def __call__(self, config: Config, /) -> EventSink: ...


class RegisterHandler(Protocol):
    """The ``register`` argument of :func:`tasker_register_handlers`."""

    def __call__(self, name: str, fn: Callable[..., Any]) -> None: ...


class RegisterStore(Protocol):
    """The ``register`` argument of :func:`tasker_register_stores`."""

    def __call__(self, scheme: str, factory: StoreFactory) -> None: ...


class RegisterQueue(Protocol):
    """The ``register`` argument of :func:`tasker_register_queues`."""

    def __call__(self, scheme: str, factory: QueueFactory) -> None: ...


class RegisterEventSink(Protocol):
    """The ``register`` argument of :func:`tasker_register_event_sinks`."""

    def __call__(self, name: str, factory: EventSinkFactory) -> None: ...


@hookspec
def tasker_register_handlers(register: RegisterHandler) -> None:
    """Register step handlers by name.

    Called: whenever the host collects handlers (when an engine builds its registry).
    Call ``register(name, fn)`` once per handler; ``name`` is what a template's ``handler:`` key
    refers to (conventionally ``namespace.function``), ``fn`` a plain or ``async def`` function
    taking the step context. A name registered by two plugins is a start-up error.
    Return: nothing.
    """


@hookspec(firstresult=True)
def tasker_find_template(
    namespace: str, name: str, version: str | None, config: Config
) -> TaskTemplate | None:
    """Find a workflow template the registry does not know.

    Called: when a task is requested for a template that is not registered in-process; the
    first plugin returning a template wins, so return ``None`` for anything you do not own.
    ``version`` is an exact version string, or ``None`` for the latest version you have.
    ``config`` is the engine's loaded configuration (e.g. its ``templates`` section).
    Return: a ``TaskTemplate`` or ``None``.
    """


@hookspec
def tasker_register_stores(register: RegisterStore) -> None:
    """Register store backends by URL scheme.

    Called: when an engine starts and picks its store from the configured URL.
    Call ``register(scheme, factory)`` with the scheme you own (``memory``, ``sqlite``,
    ``postgresql``); ``factory(url, config)`` builds the store. A URL ``a+b://...`` is served by
    scheme ``a+b`` if registered, else by ``a``. A scheme claimed by two plugins is a start-up
    error naming both.
    Return: nothing.
    """


@hookspec
def tasker_register_queues(register: RegisterQueue) -> None:
    """Register queue backends by URL scheme.

    Called: when an engine or worker starts and picks its queue from the configured URL.
    Same rules as :func:`tasker_register_stores`; ``factory(url, config)`` builds the queue.
    Return: nothing.
    """


@hookspec
def tasker_register_event_sinks(register: RegisterEventSink) -> None:
    """Register event sinks by name.

    Called: when an engine starts and builds the sinks its configuration lists by name.
    Call ``register(name, factory)``; ``factory(config)`` builds the sink. A name claimed by two
    plugins is a start-up error naming both.
    Return: nothing.
    """


@hookspec
def tasker_configure(config: Config) -> None:
    """React to the loaded configuration.

    Called: once each time an engine starts, after the configuration is loaded and before any
    store, queue or sink is built. Read what you need; do not mutate ``config``.
    Return: nothing.
    """


@hookspec
def tasker_add_cli_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add sub-commands to the ``tasker`` command.

    Called: once when the ``tasker`` command builds its parser, after the builtin commands.
    ``subparsers`` is the argparse sub-parsers action: add a command with
    ``p = subparsers.add_parser("templates", help=...)`` and attach its entry point with
    ``p.set_defaults(run=fn)``, where ``fn(args) -> int`` returns the exit code. A command name
    that is already taken is a start-up error naming your plugin.
    Return: nothing.
    """
