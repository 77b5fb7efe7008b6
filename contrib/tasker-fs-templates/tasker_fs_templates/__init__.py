"""Find tasker workflow templates in YAML files on disk (the ``fs_templates`` plugin).

Installed, the plugin answers ``tasker_find_template`` from the directories in the configuration
key ``templates.paths`` and adds ``tasker templates list|validate``. The finder can also be used
on its own::

    from tasker_fs_templates import FilesystemTemplateFinder

    finder = FilesystemTemplateFinder(["templates"])
    template = finder.find("ecommerce", "order_fulfillment", None)   # the latest version

The search rules are in :mod:`tasker_fs_templates.layout`; README.md has the full story.
"""

from __future__ import annotations

from tasker_fs_templates.finder import DEFAULT_RACY_WINDOW, FilesystemTemplateFinder, FinderStats

__version__ = "0.1.0"

__all__ = ["DEFAULT_RACY_WINDOW", "FilesystemTemplateFinder", "FinderStats", "__version__"]
