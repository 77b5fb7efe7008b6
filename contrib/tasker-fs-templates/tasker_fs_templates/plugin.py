"""The tasker plugin (entry point ``fs_templates``): finds templates in ``templates.paths``.

One :class:`FilesystemTemplateFinder`, with its caches, is kept per distinct configuration (and
working directory, since relative paths resolve against it), so every engine with the same
``templates`` section shares parsed files, and a lookup costs a dictionary access plus the
finder's own few ``stat`` calls.
"""

from __future__ import annotations

import argparse
import os

from tasker_core import Config, TaskTemplate
from tasker_core.plugin import hookimpl

from tasker_fs_templates.commands import add_commands
from tasker_fs_templates.finder import FilesystemTemplateFinder

__all__ = ["finder_for", "tasker_add_cli_commands", "tasker_find_template"]

_FinderKey = tuple[str, tuple[str, ...], bool, int]
_finders: dict[_FinderKey, FilesystemTemplateFinder] = {}
# Working directories rarely change; this bound only keeps a process that keeps changing it from
# holding every finder it ever built.
_MAX_FINDERS = 16


def finder_for(config: Config) -> FilesystemTemplateFinder | None:
    """The shared finder for ``config``'s ``templates`` section; None when no paths are set."""
    section = config.templates
    paths = section.paths
    if not paths:
        return None
    key = (os.getcwd(), paths, section.cache, config.execution.default_max_attempts)
    finder = _finders.get(key)
    if finder is None:
        if len(_finders) >= _MAX_FINDERS:
            _finders.clear()
        finder = _finders.setdefault(
            key,
            FilesystemTemplateFinder(
                paths,
                cache=section.cache,
                default_max_attempts=config.execution.default_max_attempts,
            ),
        )
    return finder


@hookimpl
def tasker_find_template(
    namespace: str, name: str, version: str | None, config: Config
) -> TaskTemplate | None:
    """Search ``templates.paths``; None (ask the next finder) when no file holds the template."""
    finder = finder_for(config)
    if finder is None:
        return None
    return finder.find(namespace, name, version)


@hookimpl
def tasker_add_cli_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    """Add ``tasker templates list|validate``."""
    add_commands(subparsers)
