"""The in-process registry of step handlers (by name) and templates (namespace, name, version).

Writes take a lock; lookups are single dict reads (atomic), so the many readers on worker threads
never wait on each other or on a registration, and listings copy under the lock. Registering the
same object twice is harmless; registering a *different* one under a taken name is a start-up
error, because silently letting the last plugin win is how two handlers get confused in prod.
"""

from __future__ import annotations

import difflib
import importlib
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from packaging.version import InvalidVersion, Version

from tasker_core.errors import HandlerNotFoundError, PluginError, TemplateNotFoundError
from tasker_core.templates import HANDLER_REF, TaskTemplate

__all__ = ["Handler", "Registry"]

Handler = Callable[..., Any]
_Name = tuple[str, str]


def _describe(obj: object) -> str:
    module = getattr(obj, "__module__", None) or "?"
    name = getattr(obj, "__qualname__", None) or repr(obj)
    return f"{module}:{name}"


class Registry:
    """Handlers by name and templates by (namespace, name, version); safe to read from threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._handlers: dict[str, Handler] = {}
        self._templates: dict[_Name, dict[Version, TaskTemplate]] = {}
        self._latest: dict[_Name, TaskTemplate] = {}

    # -- handlers --

    def register_handler(self, name: str, fn: Handler) -> None:
        """Make ``fn`` the handler called ``name``; PluginError if another one holds the name."""
        if not isinstance(name, str) or not HANDLER_REF.match(name) or ":" in name:
            raise PluginError(
                f"invalid handler name {name!r}: "
                "use dotted identifiers like 'ecommerce.charge_card'"
            )
        if not callable(fn):
            raise PluginError(f"handler {name!r} must be callable, got {fn!r}")
        with self._lock:
            current = self._handlers.get(name)
            if current is fn:
                return
            if current is not None:
                raise PluginError(
                    f"handler name {name!r} is already registered to {_describe(current)}; "
                    f"refusing to replace it with {_describe(fn)}"
                )
            self._handlers[name] = fn

    def handlers(self) -> Mapping[str, Handler]:
        """A read-only snapshot of every registered handler by name."""
        with self._lock:
            return MappingProxyType(dict(self._handlers))

    def get_handler(self, name: str) -> Handler | None:
        """The handler registered as ``name``, or None (no import is attempted)."""
        return self._handlers.get(name)

    def resolve_handler(self, ref: str) -> Handler:
        """The callable ``ref`` names: a registered name first, else ``package.module:function``.

        HandlerNotFoundError says which: not registered, module missing, attribute missing, or
        not callable.
        """
        found = self._handlers.get(ref)
        if found is not None:
            return found
        if ":" not in ref:
            close = difflib.get_close_matches(ref, list(self._handlers), n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise HandlerNotFoundError(
                f"handler {ref!r} is not registered (and is not an import path like "
                f"'package.module:function').{hint}"
            )
        return _import_handler(ref)

    def resolve_template_handlers(self, template: TaskTemplate) -> dict[str, Handler]:
        """Every step's handler by step name, failing on the first that cannot be resolved."""
        resolved: dict[str, Handler] = {}
        for step in template.steps:
            try:
                resolved[step.name] = self.resolve_handler(step.handler)
            except HandlerNotFoundError as exc:
                where = f" ({template.source})" if template.source else ""
                raise HandlerNotFoundError(
                    f"step {step.name!r} of {template.key}{where}: {exc}"
                ) from exc
        return resolved

    # -- templates --

    def register_template(self, template: TaskTemplate) -> None:
        """Add ``template``; PluginError if a different one has the same namespace/name/version."""
        name = (template.namespace, template.name)
        version = Version(template.version)
        with self._lock:
            versions = self._templates.setdefault(name, {})
            current = versions.get(version)
            if current == template:
                return
            if current is not None:
                raise PluginError(
                    f"template {template.key} is already registered"
                    f" (from {current.source or 'code'}); refusing a different definition"
                    f" (from {template.source or 'code'})"
                )
            versions[version] = template
            finals = [v for v in versions if not v.is_prerelease]
            self._latest[name] = versions[max(finals or versions)]

    def templates(self) -> list[TaskTemplate]:
        """Every registered template, sorted by namespace, name, then version."""
        with self._lock:
            return [
                versions[version]
                for name, versions in sorted(self._templates.items())
                for version in sorted(versions)
            ]

    def get_template(self, namespace: str, name: str, version: str | None = None) -> TaskTemplate:
        """The template with that exact version (``1.0`` matches ``1.0.0``), or the latest.

        "Latest" is the highest final release; pre-releases count only when there is nothing
        else. TemplateNotFoundError when there is no match.
        """
        found = self.find_template(namespace, name, version)
        if found is None:
            raise TemplateNotFoundError(namespace, name, version)
        return found

    def find_template(
        self, namespace: str, name: str, version: str | None = None
    ) -> TaskTemplate | None:
        """Like :meth:`get_template` but None when there is no match."""
        if version is None:
            return self._latest.get((namespace, name))
        try:
            wanted = Version(version)
        except InvalidVersion:
            return None
        return self._templates.get((namespace, name), {}).get(wanted)


def _import_handler(ref: str) -> Handler:
    module_name, _, attribute = ref.partition(":")
    if not HANDLER_REF.match(ref) or not module_name or not attribute:
        raise HandlerNotFoundError(
            f"handler {ref!r} is not a valid import path: expected 'package.module:function'"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
            raise HandlerNotFoundError(
                f"handler {ref!r}: module {module_name!r} not found (no module named {exc.name!r})"
            ) from exc
        raise HandlerNotFoundError(
            f"handler {ref!r}: importing module {module_name!r} failed: {exc}"
        ) from exc
    except Exception as exc:
        raise HandlerNotFoundError(
            f"handler {ref!r}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    target: Any = module
    walked = module_name
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise HandlerNotFoundError(f"handler {ref!r}: {walked!r} has no attribute {part!r}")
        target = getattr(target, part)
        walked = f"{walked}:{part}" if walked == module_name else f"{walked}.{part}"
    if not callable(target):
        raise HandlerNotFoundError(
            f"handler {ref!r}: {type(target).__name__} object is not callable"
        )
    handler: Handler = target
    return handler
