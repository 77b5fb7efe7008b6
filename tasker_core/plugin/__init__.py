"""Tasker plugins in two minutes.

A plugin is a module (or class) whose functions are marked with :data:`hookimpl` and named after
the hooks they implement. Implement only the hooks you need, declare only the arguments you use
(tasker always calls hooks with keyword arguments)::

    # my_tasker_plugin.py
    from tasker_core.plugin import hookimpl

    def greet(ctx):
        return {"hello": ctx.context["name"]}

    @hookimpl
    def tasker_register_handlers(register):
        register("demo.greet", greet)          # templates say `handler: demo.greet`

    @hookimpl
    def tasker_register_stores(register):
        register("mydb", make_store)            # serves store URLs mydb://...

Make it discoverable with an entry point in group ``tasker``; the entry name is the plugin's
short name, shown by ``tasker plugins`` and used to block it::

    # pyproject.toml
    [project.entry-points.tasker]
    my_plugin = "my_tasker_plugin"

Then ``pip install -e .`` and check with ``tasker plugins``. Backends are chosen by name: a
store or queue registers the URL scheme it owns and the configured URL picks it, and a name or
scheme registered by two plugins stops start-up with an error naming both.

Switches: ``TASKER_DISABLE_PLUGINS=a,b`` blocks plugins by short name (builtins too),
``TASKER_LOAD_PLUGINS=a,b`` loads only those, ``TASKER_TRACE_PLUGINS=1`` logs every hook call
to the ``tasker.plugins`` logger at DEBUG. Every hook and its contract: docs/hooks.md and
:mod:`tasker_core.plugin.hookspecs`.
"""

from __future__ import annotations

import pluggy

from tasker_core.cli_args import duration, positive_int
from tasker_core.plugin.hookspecs import (
    PROJECT,
    EventSinkFactory,
    QueueFactory,
    RegisterEventSink,
    RegisterHandler,
    RegisterQueue,
    RegisterStore,
    StoreFactory,
)
from tasker_core.plugin.manager import PluginHost, PluginInfo

hookimpl = pluggy.HookimplMarker(PROJECT)
"""Marks a function as the implementation of the tasker hook it is named after."""

__all__ = [
    "PROJECT",
    "EventSinkFactory",
    "PluginHost",
    "PluginInfo",
    "QueueFactory",
    "RegisterEventSink",
    "RegisterHandler",
    "RegisterQueue",
    "RegisterStore",
    "StoreFactory",
    "duration",
    "hookimpl",
    "positive_int",
]
