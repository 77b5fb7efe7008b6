"""The ``examples`` template-finder plugin: serves the bundled templates to every engine.

Installed (``pip install -e examples``), the distribution registers this module under the
``tasker`` entry-point group, so a task started by ``tasker demo`` can be inspected, retried or
resumed by any later ``tasker`` process without passing ``--template``. It is also a compact
example of a ``tasker_find_template`` implementation.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from packaging.version import InvalidVersion, Version
from tasker_core import Config, TaskTemplate, load_template_file
from tasker_core.plugin import hookimpl

from tasker_examples import TEMPLATES_DIR

# Namespaces and names as templates allow them; anything else (a path) is not ours.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")
_cache: dict[tuple[Path, int], TaskTemplate] = {}
_lock = threading.Lock()


def _load(path: Path, default_max_attempts: int) -> TaskTemplate:
    with _lock:
        template = _cache.get((path, default_max_attempts))
        if template is None:
            template = load_template_file(path, default_max_attempts=default_max_attempts)
            _cache[(path, default_max_attempts)] = template
        return template


@hookimpl
def tasker_find_template(
    namespace: str, name: str, version: str | None, config: Config
) -> TaskTemplate | None:
    if not (_NAME.match(namespace) and _NAME.match(name)):
        return None
    path = TEMPLATES_DIR / namespace / f"{name}.yml"
    if not path.is_file():
        return None
    template = _load(path, config.execution.default_max_attempts)
    if version is None:
        return template
    try:
        same = Version(version) == template.parsed_version
    except InvalidVersion:
        return None
    return template if same else None
