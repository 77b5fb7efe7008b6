"""The typed facade over pluggy: the only place in tasker that calls a hook.

A :class:`PluginHost` owns one ``pluggy.PluginManager``. It loads the builtin plugins
(:data:`DEFAULT_PLUGINS`) and the installed ones (entry-point group ``tasker``), honouring the
``TASKER_DISABLE_PLUGINS`` / ``TASKER_LOAD_PLUGINS`` / ``TASKER_TRACE_PLUGINS`` switches, and
offers one typed method per hook so the rest of the kernel never sees pluggy. Register hooks are
called plugin by plugin, so every name a plugin registers is recorded with its owner and a name
claimed twice fails with an error naming both plugins.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import importlib
import importlib.metadata
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import attrs
import pluggy

from tasker_core.errors import PluginError, TaskerError
from tasker_core.plugin import hookspecs
from tasker_core.plugin.hookspecs import PROJECT

if TYPE_CHECKING:
    from tasker_core.config import Config
    from tasker_core.plugin.hookspecs import EventSinkFactory, QueueFactory, StoreFactory
    from tasker_core.protocols import EventSink, Queue, Store
    from tasker_core.templates import TaskTemplate

__all__ = [
    "DEFAULT_PLUGINS",
    "DISABLE_ENV",
    "ENTRY_POINT_GROUP",
    "LOAD_ENV",
    "TRACE_ENV",
    "PluginHost",
    "PluginInfo",
]

#: Builtin plugins: short name -> module. Loaded before entry points, blockable by short name.
DEFAULT_PLUGINS: dict[str, str] = {
    "memory": "tasker_core.builtin.memory_store",
    "sqlite": "tasker_core.builtin.sqlite_store",
    "inprocess": "tasker_core.builtin.inprocess_queue",
    "log": "tasker_core.builtin.log_sink",
}

ENTRY_POINT_GROUP = PROJECT
DISABLE_ENV = "TASKER_DISABLE_PLUGINS"
LOAD_ENV = "TASKER_LOAD_PLUGINS"
TRACE_ENV = "TASKER_TRACE_PLUGINS"

_CORE_DISTRIBUTION = "tasker-core"
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
# RFC 3986 scheme syntax; schemes compare case-insensitively.
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*\Z")
_URL_PASSWORD_RE = re.compile(r"(://[^:/@\s]*:)[^@/\s]*@")

_log = logging.getLogger("tasker.plugins")

_T = TypeVar("_T")
_R = TypeVar("_R")


@attrs.frozen
class PluginInfo:
    """One registered plugin, as ``tasker plugins`` shows it.

    ``distribution``/``version`` are the installed distribution the plugin came from (tasker-core
    for builtins); ``None`` for a plugin object registered in-process by code.
    """

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]


@attrs.frozen
class _Origin:
    distribution: str | None
    version: str | None


@attrs.frozen
class _Entry(Generic[_T]):
    """A registered value and the plugin that registered it."""

    value: _T
    plugin: str


class _Collector(Generic[_T]):
    """Receives the ``register(...)`` calls of one register hook, plugin by plugin."""

    def __init__(self, kind: str, hook_name: str, *, scheme: bool) -> None:
        self.kind = kind
        self.hook_name = hook_name
        self.scheme = scheme
        self.entries: dict[str, _Entry[_T]] = {}
        self._current: list[bool] | None = None

    def bind(self, plugin: str) -> Callable[[object, object], None]:
        """An ``add`` for ``plugin`` that works only until the next bind or :meth:`close`."""
        self.close()
        is_open = self._current = [True]

        def add(key: object, value: object) -> None:
            self._add(plugin, is_open[0], key, value)

        return add

    def close(self) -> None:
        if self._current is not None:
            self._current[0] = False

    def _add(self, plugin: str, is_open: bool, key: object, value: object) -> None:
        what = f"{self.kind} {key!r} from plugin {plugin!r}"
        if not is_open:
            raise PluginError(
                f"{what}: register() was called after {self.hook_name} returned; "
                "call it only inside the hook"
            )
        if not isinstance(key, str) or not key:
            raise PluginError(f"{what}: the name must be a non-empty string")
        if self.scheme and not _SCHEME_RE.match(key):
            raise PluginError(
                f"{what}: not a URL scheme (letters, digits, '+', '-', '.'; starts with a letter)"
            )
        if not callable(value):
            raise PluginError(f"{what}: expected a callable, got {type(value).__name__}")
        norm = key.lower() if self.scheme else key
        previous = self.entries.get(norm)
        if previous is not None:
            if previous.plugin == plugin:
                raise PluginError(f"plugin {plugin!r} registered {self.kind} {key!r} twice")
            raise PluginError(
                f"{self.kind} {key!r} is registered by two plugins: {previous.plugin!r} and "
                f"{plugin!r}; remove one or block it with {DISABLE_ENV}"
            )
        self.entries[norm] = _Entry(cast(_T, value), plugin)


class PluginHost:
    """All installed tasker plugins behind one typed method per hook.

    Build the host for a process with :meth:`create`; ``PluginHost()`` gives an empty host that
    tests and embedding code fill with :meth:`register`.
    """

    def __init__(self) -> None:
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._origins: dict[str, _Origin] = {}
        self._spec_names = sorted(
            name for name in vars(hookspecs) if name.startswith(f"{PROJECT}_")
        )

    # ----------------------------------------------------------------------------- loading

    @classmethod
    def create(
        cls,
        *,
        load_entrypoints: bool = True,
        env: Mapping[str, str] = os.environ,
        default_plugins: Mapping[str, object] | None = None,
    ) -> PluginHost:
        """Load the builtin and installed plugins that the environment switches allow.

        ``default_plugins`` replaces :data:`DEFAULT_PLUGINS` (values are module paths, or plugin
        objects to register as they are). Raises :class:`PluginError` when a plugin cannot be
        imported, implements an unknown hook, or shares its short name with another.
        """
        host = cls()
        switches = _Switches.from_env(env)
        if switches.trace:
            host._enable_tracing()
        defaults = DEFAULT_PLUGINS if default_plugins is None else default_plugins
        seen = set(defaults)
        for name, target in defaults.items():
            if switches.allows(name):
                host._load_builtin(name, target)
        if load_entrypoints:
            seen |= host._load_entrypoints(switches)
        switches.warn_unknown(seen)
        try:
            host._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise host._validation_error(exc.plugin, exc) from exc
        return host

    def register(
        self,
        plugin: object,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> None:
        """Register a plugin object (a module, class or instance with ``@hookimpl`` functions).

        The environment switches do not apply: code that registers a plugin explicitly gets it.
        """
        if not name:
            raise PluginError(f"plugin {plugin!r} needs a non-empty name")
        if plugin is None:
            raise PluginError(f"plugin {name!r} is None, not a module, class or object")
        if self._pm.has_plugin(name):
            raise PluginError(f"a plugin named {name!r} is already registered")
        try:
            self._pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise PluginError(f"plugin {name!r} is invalid: {_one_line(exc)}") from exc
        except ValueError as exc:
            other = self._pm.get_name(plugin)
            raise PluginError(
                f"cannot register plugin {name!r}: the same object is already registered "
                f"as {other!r}"
            ) from exc
        unknown = self._unknown_hooks(plugin)
        if unknown:
            self._pm.unregister(plugin)
            raise PluginError(self._unknown_hooks_message(name, unknown))
        self._origins[name] = _Origin(distribution, version)

    def _load_builtin(self, name: str, target: object) -> None:
        if isinstance(target, str):
            try:
                target = importlib.import_module(target)
            except Exception as exc:
                raise PluginError(
                    f"cannot load builtin plugin {name!r} (module {target!r}): "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
        self.register(target, name, distribution=_CORE_DISTRIBUTION, version=_core_version())

    def _load_entrypoints(self, switches: _Switches) -> set[str]:
        """Load every allowed entry point of group ``tasker``; return all names seen."""
        by_name: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            first = by_name.setdefault(ep.name, ep)
            if first is not ep and first.value != ep.value and switches.allows(ep.name):
                raise PluginError(
                    f"two installed plugins are both named {ep.name!r}: "
                    f"{_describe_ep(first)} and {_describe_ep(ep)}; uninstall one or block "
                    f"the name with {DISABLE_ENV}"
                )
        for name in sorted(by_name):
            ep = by_name[name]
            if not switches.allows(name):
                continue
            if self._pm.has_plugin(name):
                raise PluginError(
                    f"installed plugin {_describe_ep(ep)} has the same name as the already "
                    f"loaded plugin {name!r}; block one of them with {DISABLE_ENV}"
                )
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"cannot load plugin {name!r} from {_describe_ep(ep)}: "
                    f"{type(exc).__name__}: {exc} (fix or uninstall it, or skip it with "
                    f"{DISABLE_ENV}={name})"
                ) from exc
            dist = ep.dist
            self.register(
                plugin,
                name,
                distribution=dist.metadata["Name"] if dist is not None else None,
                version=dist.version if dist is not None else None,
            )
        return set(by_name)

    def _unknown_hooks(self, plugin: object) -> list[str]:
        callers = self._pm.get_hookcallers(plugin) or []
        return sorted(
            caller.name
            for caller in callers
            if not caller.has_spec()
            and any(i.plugin is plugin and not i.optionalhook for i in caller.get_hookimpls())
        )

    def _unknown_hooks_message(self, name: str, unknown: Sequence[str]) -> str:
        parts = []
        for hook in unknown:
            close = difflib.get_close_matches(hook, self._spec_names, n=1)
            parts.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return f"plugin {name!r} implements unknown hook(s) " + ", ".join(parts)

    def _validation_error(self, plugin: object, exc: Exception) -> PluginError:
        name = self._pm.get_name(plugin) or repr(plugin)
        unknown = self._unknown_hooks(plugin)
        if unknown:
            return PluginError(self._unknown_hooks_message(name, unknown))
        return PluginError(f"plugin {name!r} is invalid: {_one_line(exc)}")

    # ----------------------------------------------------------------------------- tracing

    def _enable_tracing(self) -> None:
        """Log every hook call to the ``tasker.plugins`` logger at DEBUG.

        pluggy's own ``enable_tracing`` prints argument values, and ``config`` holds DSNs with
        passwords; this monitor prints the same shape with values reduced to safe summaries.
        """
        self._pm.trace.root.setwriter(_write_trace)
        hooktrace = self._pm.trace.root.get("hook")

        def before(
            hook_name: str, impls: Sequence[pluggy.HookImpl], kwargs: Mapping[str, Any]
        ) -> None:
            hooktrace.root.indent += 1
            plugins = ", ".join(i.plugin_name for i in reversed(impls))
            args = ", ".join(f"{k}={_safe_repr(v)}" for k, v in kwargs.items())
            hooktrace(f"{hook_name}({args}) -> plugins [{plugins}]")

        def after(
            outcome: pluggy.Result[Any],
            hook_name: str,
            impls: Sequence[pluggy.HookImpl],
            kwargs: Mapping[str, Any],
        ) -> None:
            if outcome.exception is None:
                hooktrace("finish", hook_name, "-->", _safe_repr(outcome.get_result()))
            else:
                hooktrace("raised", hook_name, "-->", type(outcome.exception).__name__)
            hooktrace.root.indent -= 1

        self._pm.add_hookcall_monitoring(before, after)

    # ----------------------------------------------------------------------------- hook calls

    def _impls(self, hook_name: str) -> list[pluggy.HookImpl]:
        """The hook's non-wrapper implementations, in the order pluggy calls them."""
        caller: pluggy.HookCaller = getattr(self._pm.hook, hook_name)
        return [i for i in reversed(caller.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]

    def _call_each(
        self,
        hook_name: str,
        kwargs: Callable[[str], dict[str, object]],
        explain: Callable[[Exception], str | None] = lambda _exc: None,
    ) -> None:
        """Call a hook plugin by plugin, so any failure names the plugin that failed.

        ``kwargs(plugin_name)`` builds that plugin's arguments. A :class:`TaskerError` keeps its
        type (with a note naming the plugin); anything else becomes a :class:`PluginError`,
        worded by ``explain`` when it knows the exception.
        """
        impls = self._impls(hook_name)
        for impl in impls:
            others = [i.plugin for i in impls if i.plugin is not impl.plugin]
            caller = self._pm.subset_hook_caller(hook_name, others)
            try:
                caller(**kwargs(impl.plugin_name))
            except TaskerError as exc:
                exc.add_note(f"raised by plugin {impl.plugin_name!r} in {hook_name}")
                raise
            except Exception as exc:
                detail = explain(exc) or f"failed in {hook_name}: {type(exc).__name__}: {exc}"
                raise PluginError(f"plugin {impl.plugin_name!r} {detail}") from exc

    def _collect(
        self,
        hook_name: str,
        kind: str,
        make_register: Callable[[Callable[[object, object], None]], object],
        *,
        scheme: bool,
    ) -> dict[str, _Entry[_T]]:
        """Call a register hook plugin by plugin, recording who registered each name."""
        collector: _Collector[_T] = _Collector(kind, hook_name, scheme=scheme)
        try:
            self._call_each(
                hook_name, lambda plugin: {"register": make_register(collector.bind(plugin))}
            )
        finally:
            collector.close()
        return collector.entries

    def _handler_entries(self) -> dict[str, _Entry[Callable[..., Any]]]:
        def make(add: Callable[[object, object], None]) -> object:
            def register(name: str, fn: Callable[..., Any]) -> None:
                add(name, fn)

            return register

        return self._collect("tasker_register_handlers", "step handler", make, scheme=False)

    def _store_entries(self) -> dict[str, _Entry[StoreFactory]]:
        def make(add: Callable[[object, object], None]) -> object:
            def register(scheme: str, factory: StoreFactory) -> None:
                add(scheme, factory)

            return register

        return self._collect("tasker_register_stores", "store scheme", make, scheme=True)

    def _queue_entries(self) -> dict[str, _Entry[QueueFactory]]:
        def make(add: Callable[[object, object], None]) -> object:
            def register(scheme: str, factory: QueueFactory) -> None:
                add(scheme, factory)

            return register

        return self._collect("tasker_register_queues", "queue scheme", make, scheme=True)

    def _sink_entries(self) -> dict[str, _Entry[EventSinkFactory]]:
        def make(add: Callable[[object, object], None]) -> object:
            def register(name: str, factory: EventSinkFactory) -> None:
                add(name, factory)

            return register

        return self._collect("tasker_register_event_sinks", "event sink", make, scheme=False)

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """Every step handler the plugins register, by name."""
        return {name: e.value for name, e in self._handler_entries().items()}

    def find_template(
        self, namespace: str, name: str, version: str | None, config: Config
    ) -> TaskTemplate | None:
        """Ask the template-finder plugins; the first non-``None`` answer wins."""
        result = self._pm.hook.tasker_find_template(
            namespace=namespace, name=name, version=version, config=config
        )
        return cast("TaskTemplate | None", result)

    def store_factories(self) -> dict[str, StoreFactory]:
        """Store factories by (lower-case) URL scheme."""
        return {scheme: e.value for scheme, e in self._store_entries().items()}

    def queue_factories(self) -> dict[str, QueueFactory]:
        """Queue factories by (lower-case) URL scheme."""
        return {scheme: e.value for scheme, e in self._queue_entries().items()}

    def sink_factories(self) -> dict[str, EventSinkFactory]:
        """Event-sink factories by name."""
        return {name: e.value for name, e in self._sink_entries().items()}

    def make_store(self, url: str, config: Config) -> Store:
        """Build the store serving ``url``'s scheme (``a+b://`` falls back to ``a``)."""
        scheme, entry = _pick("store", url, self._store_entries())
        return _build(entry, f"the {scheme!r} store", lambda f: f(url, config))

    def make_queue(self, url: str, config: Config) -> Queue:
        """Build the queue serving ``url``'s scheme (``a+b://`` falls back to ``a``)."""
        scheme, entry = _pick("queue", url, self._queue_entries())
        return _build(entry, f"the {scheme!r} queue", lambda f: f(url, config))

    def make_sinks(self, names: Iterable[str], config: Config) -> list[EventSink]:
        """Build the named event sinks in order; a name listed twice is built once."""
        entries = self._sink_entries()
        sinks: list[EventSink] = []
        done: set[str] = set()
        for name in names:
            if name in done:
                continue
            entry = entries.get(name)
            if entry is None:
                raise PluginError(
                    f"no event sink named {name!r}; available: {_listing(entries)} "
                    "(see `tasker plugins`)"
                )
            sinks.append(_build(entry, f"the {name!r} event sink", lambda f: f(config)))
            done.add(name)
        return sinks

    def configure(self, config: Config) -> None:
        """Hand the loaded configuration to every plugin (once per engine start)."""
        self._call_each("tasker_configure", lambda _plugin: {"config": config})

    def add_cli_commands(
        self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]
    ) -> None:
        """Let every plugin add its ``tasker`` sub-commands; a taken command name fails."""

        def explain(exc: Exception) -> str | None:
            if isinstance(exc, argparse.ArgumentError):
                return f"could not add its tasker command: {exc.message}"
            return None

        self._call_each(
            "tasker_add_cli_commands", lambda _plugin: {"subparsers": subparsers}, explain
        )

    def describe(self) -> list[PluginInfo]:
        """Every registered plugin with its origin and the hooks it implements, in load order."""
        infos = []
        for name, plugin in self._pm.list_name_plugin():
            if plugin is None:
                continue
            origin = self._origins.get(name, _Origin(None, None))
            callers = self._pm.get_hookcallers(plugin) or []
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=origin.distribution,
                    version=origin.version,
                    hooks=sorted(c.name for c in callers),
                )
            )
        return infos


@attrs.frozen
class _Switches:
    """The three environment switches, parsed once."""

    disabled: frozenset[str]
    allowed: frozenset[str] | None
    trace: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> _Switches:
        disabled = _names(env.get(DISABLE_ENV, ""))
        allowed = _names(env.get(LOAD_ENV, ""))
        raw_trace = env.get(TRACE_ENV, "").strip().lower()
        if raw_trace not in _TRUE | _FALSE:
            raise PluginError(f"{TRACE_ENV}={env.get(TRACE_ENV)!r} is not a switch; use 1 or 0")
        return cls(disabled, allowed or None, raw_trace in _TRUE)

    def allows(self, name: str) -> bool:
        if name in self.disabled:
            return False
        return self.allowed is None or name in self.allowed

    def warn_unknown(self, known: set[str]) -> None:
        """A name in a switch that matches no plugin is most likely a typo: say so."""
        for var, names in ((DISABLE_ENV, self.disabled), (LOAD_ENV, self.allowed or frozenset())):
            for name in sorted(names - known):
                _log.warning(
                    "%s names %r, which is not an available plugin (available: %s)",
                    var,
                    name,
                    ", ".join(sorted(known)) or "none",
                )


def _names(raw: str) -> frozenset[str]:
    return frozenset(part.strip() for part in raw.split(",") if part.strip())


def _pick(kind: str, url: str, entries: Mapping[str, _Entry[_T]]) -> tuple[str, _Entry[_T]]:
    """Choose the factory for ``url``: exact scheme, then the part before ``+``."""
    if "://" not in url:
        # The URL itself is not echoed: it may be a key=value DSN carrying a password.
        raise PluginError(
            f"{kind} URL has no scheme: expected 'scheme://...', with a scheme among "
            f"{_listing(entries)}"
        )
    scheme = url.split("://", 1)[0].lower()
    candidates = [scheme]
    if "+" in scheme:
        candidates.append(scheme.split("+", 1)[0])
    for candidate in candidates:
        if candidate in entries:
            return candidate, entries[candidate]
    raise PluginError(
        f"no {kind} backend for URL scheme {scheme!r}; available schemes: {_listing(entries)} "
        "(install the plugin that provides it; see `tasker plugins`)"
    )


def _build(entry: _Entry[_T], what: str, call: Callable[[_T], _R]) -> _R:
    """Run a factory; a failure keeps its type and gains a note naming the plugin."""
    try:
        return call(entry.value)
    except Exception as exc:
        exc.add_note(f"while building {what} of plugin {entry.plugin!r}")
        raise


def _one_line(exc: Exception) -> str:
    """pluggy's validation messages span lines; errors here are one line."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _listing(entries: Mapping[str, object]) -> str:
    return ", ".join(sorted(entries)) or "none registered"


def _describe_ep(ep: importlib.metadata.EntryPoint) -> str:
    dist = ep.dist
    where = f" in distribution {dist.metadata['Name']} {dist.version}" if dist is not None else ""
    return f"entry point '{ep.name} = {ep.value}' (group {ep.group!r}){where}"


@functools.cache
def _core_version() -> str | None:
    try:
        return importlib.metadata.version(_CORE_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None


def _write_trace(text: str) -> None:
    for line in text.rstrip("\n").splitlines():
        _log.debug("%s", line)


def _safe_repr(value: object, depth: int = 0) -> str:
    """A short rendering of a hook argument or result that never prints secrets.

    Strings, numbers and None are shown (URL passwords masked); containers are shown one level
    deep; any other object, such as a Config, only by its type.
    """
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        masked = _URL_PASSWORD_RE.sub(r"\1***@", value)
        return repr(masked if len(masked) <= 80 else masked[:77] + "...")
    if isinstance(value, list | tuple) and depth == 0:
        items = [_safe_repr(v, depth + 1) for v in value[:5]]
        return "[" + ", ".join(items) + (", ..." if len(value) > 5 else "") + "]"
    name = getattr(value, "__qualname__", None) if callable(value) else None
    return f"<{type(value).__name__} {name}>" if name else f"<{type(value).__name__}>"
