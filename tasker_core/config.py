"""Configuration: one YAML file, environment sections, ``TASKER__SECTION__KEY`` overrides.

The file has a ``default:`` section and any number of environment sections (``production:``,
``test:`` ...) that override ``default`` key by key; ``TASKER_ENV`` picks one (``development``
when unset). Environment variables override both. Everything is checked up front, so a typo or a
bad value fails at start-up naming the key path and where it was written (file:line:column, or
the environment variable), instead of surfacing mid-run. docs/configuration.md lists every key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import AttributeValidationNote, ClassValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedBase
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from tasker_core.durations import format_duration, parse_duration
from tasker_core.errors import ConfigError

__all__ = [
    "SECTIONS",
    "BackoffConfig",
    "Config",
    "EventsConfig",
    "ExecutionConfig",
    "IdentityConfig",
    "LoggingConfig",
    "QueueConfig",
    "StoreConfig",
    "TemplatesConfig",
    "load_config",
]

DEFAULT_FILE = "tasker.yaml"
DEFAULT_ENVIRONMENT = "development"
ENV_PREFIX = "TASKER__"


class _DurationMarker:
    """Marks a float field as a duration, so the loader accepts ``250ms`` / ``30s`` / ``5m``."""


Seconds = Annotated[float, _DurationMarker()]


class _FieldError(ValueError):
    """A validator's complaint about one field, carrying its name so the loader can locate it."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


_Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]


def _at_least(minimum: int) -> _Validator:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value < minimum:
            raise _FieldError(attribute.name, f"must be at least {minimum}, got {value!r}")

    return check


def _positive(_instance: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise _FieldError(attribute.name, f"must be a positive duration, got {value!r}")


def _one_of(*choices: str) -> _Validator:
    def check(_instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value not in choices:
            options = ", ".join(repr(c) for c in choices)
            raise _FieldError(attribute.name, f"must be one of {options}, got {value!r}")

    return check


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and not value.strip():
        raise _FieldError(attribute.name, "must not be empty")


def _names(_instance: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for name in value:
        if not name.strip():
            raise _FieldError(attribute.name, "entries must not be empty")
    if len(set(value)) != len(value):
        raise _FieldError(attribute.name, f"has duplicate entries: {list(value)!r}")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


@attrs.frozen
class StoreConfig:
    """Where tasks, steps and transitions are persisted; the URL scheme picks the backend."""

    url: str = attrs.field(default="sqlite:///./.tasker/tasker.db", validator=_non_empty)
    pool_size: int = attrs.field(default=5, validator=_at_least(1))
    busy_timeout: Seconds = attrs.field(default=5.0, validator=_at_least(0))
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class QueueConfig:
    """How ready steps reach workers; the URL scheme picks the backend."""

    url: str = attrs.field(default="memory://", validator=_non_empty)
    options: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExecutionConfig:
    """How steps are claimed, run, timed out and retried."""

    max_concurrent_steps: int = attrs.field(default=8, validator=_at_least(1))
    step_timeout: Seconds = attrs.field(default=300.0, validator=_positive)
    lease: Seconds = attrs.field(default=30.0, validator=_positive)
    heartbeat_interval: Seconds = attrs.field(default=10.0, validator=_positive)
    poll_interval: Seconds = attrs.field(default=1.0, validator=_positive)
    batch_size: int = attrs.field(default=100, validator=_at_least(1))
    on_failure: Literal["continue", "stop"] = attrs.field(
        default="continue", validator=_one_of("continue", "stop")
    )
    default_max_attempts: int = attrs.field(default=3, validator=_at_least(1))
    worker_id: str | None = attrs.field(default=None, validator=_non_empty)

    def __attrs_post_init__(self) -> None:
        # A heartbeat no more frequent than the lease lets healthy steps lose their lease.
        if self.heartbeat_interval >= self.lease:
            raise _FieldError(
                "heartbeat_interval",
                f"must be shorter than execution.lease ({format_duration(self.lease)}), "
                f"got {format_duration(self.heartbeat_interval)}",
            )


@attrs.frozen
class BackoffConfig:
    """Delay before retrying a failed step: ``min(base * 2**(attempt-1), max)`` minus jitter."""

    base: Seconds = attrs.field(default=1.0, validator=_at_least(0))
    max: Seconds = attrs.field(default=300.0, validator=_at_least(0))
    jitter: float = attrs.field(default=0.1)
    seed: int = attrs.field(default=0, validator=_at_least(0))

    @jitter.validator
    def _check_jitter(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise _FieldError(attribute.name, f"must be between 0 and 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        if self.seed >= 2**64:
            raise _FieldError("seed", f"must fit in 64 bits, got {self.seed}")
        if self.max < self.base:
            raise _FieldError(
                "max",
                f"must not be less than backoff.base ({format_duration(self.base)}), "
                f"got {format_duration(self.max)}",
            )


@attrs.frozen
class EventsConfig:
    """Lifecycle event delivery: which sinks, and how events are buffered and batched.

    ``sink_options`` holds each sink's own sub-section (``events.zmq: {...}``) for that sink's
    plugin to validate.
    """

    sinks: tuple[str, ...] = attrs.field(default=("log",), validator=_names)
    buffer_size: int = attrs.field(default=10000, validator=_at_least(1))
    batch_size: int = attrs.field(default=256, validator=_at_least(1))
    flush_interval: Seconds = attrs.field(default=0.1, validator=_positive)
    sink_options: dict[str, dict[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class TemplatesConfig:
    """Where the filesystem template finder looks, and whether loaded templates are cached."""

    paths: tuple[str, ...] = attrs.field(default=(), validator=_names)
    cache: bool = True


@attrs.frozen
class IdentityConfig:
    """How duplicate task submissions are recognised (none, hash of the request, or its key)."""

    strategy: Literal["none", "hash", "key"] = attrs.field(
        default="key", validator=_one_of("none", "hash", "key")
    )


@attrs.frozen
class LoggingConfig:
    """Log level and format of tasker's own logging."""

    level: str = attrs.field(
        default="INFO",
        converter=_upper,
        validator=_one_of("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    format: Literal["text", "json"] = attrs.field(default="text", validator=_one_of("text", "json"))


SECTIONS: dict[str, type[Any]] = {
    "store": StoreConfig,
    "queue": QueueConfig,
    "execution": ExecutionConfig,
    "backoff": BackoffConfig,
    "events": EventsConfig,
    "templates": TemplatesConfig,
    "identity": IdentityConfig,
    "logging": LoggingConfig,
}

# Keys a user may write in each section (EventsConfig.sink_options is filled from extra keys).
_FILE_KEYS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in attrs.fields(cls) if f.name != "sink_options")
    for name, cls in SECTIONS.items()
}

_Path = tuple[str, ...]


@attrs.frozen
class Config:
    """The whole configuration. ``environment`` and ``source`` record where it came from."""

    store: StoreConfig = attrs.field(factory=StoreConfig)
    queue: QueueConfig = attrs.field(factory=QueueConfig)
    execution: ExecutionConfig = attrs.field(factory=ExecutionConfig)
    backoff: BackoffConfig = attrs.field(factory=BackoffConfig)
    events: EventsConfig = attrs.field(factory=EventsConfig)
    templates: TemplatesConfig = attrs.field(factory=TemplatesConfig)
    identity: IdentityConfig = attrs.field(factory=IdentityConfig)
    logging: LoggingConfig = attrs.field(factory=LoggingConfig)
    environment: str = attrs.field(default=DEFAULT_ENVIRONMENT, eq=False)
    source: str | None = attrs.field(default=None, eq=False)

    @classmethod
    def default(cls) -> Config:
        """Every key at its documented default."""
        return cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "<mapping>") -> Config:
        """Build from a mapping of sections (``{"execution": {"lease": "45s"}}``), validated."""
        return _build(data, {}, source, DEFAULT_ENVIRONMENT)

    def to_mapping(self) -> dict[str, dict[str, Any]]:
        """Sections as plain data (durations in seconds); ``from_mapping`` reads it back."""
        out: dict[str, dict[str, Any]] = {}
        for name in SECTIONS:
            out[name] = _plain(attrs.asdict(getattr(self, name)), (name,))
        events = out["events"]
        events.update(events.pop("sink_options"))
        return out

    def with_overrides(self, data: Mapping[str, Any]) -> Config:
        """A copy with ``data`` (sections, deep-merged like an environment section) applied."""
        merged = _deep_merge(self.to_mapping(), _plain(data, ()))
        return _build(merged, {}, self.source or "<mapping>", self.environment)


def load_config(
    path: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
) -> Config:
    """Load the configuration for ``TASKER_ENV`` from ``path`` and ``TASKER__*`` variables.

    ``path`` None means ``$TASKER_CONFIG``, else ``./tasker.yaml`` if it exists, else defaults.
    ``env`` replaces ``os.environ`` for every variable read here (handy in tests).
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    environment = environ.get("TASKER_ENV", "").strip() or DEFAULT_ENVIRONMENT
    file = _choose_file(path, environ)
    sections: dict[str, Any] = {}
    locations: dict[_Path, str] = {}
    source: str | None = None
    if file is not None:
        source = str(file)
        environments, env_locations = _read_file(file)
        default = environments.get("default", {})
        default_locations = env_locations.get("default", {})
        # Check every environment section, not only the selected one: a typo in `production:`
        # should fail on a developer's machine, not at deploy time.
        for name in sorted(environments):
            if name != "default":
                merged = _deep_merge(default, environments[name])
                _build(merged, {**default_locations, **env_locations[name]}, source, name)
        sections = _deep_merge(default, environments.get(environment, {}))
        locations = {**default_locations, **env_locations.get(environment, {})}
    overrides, override_locations = _env_overrides(environ)
    sections = _deep_merge(sections, overrides)
    locations.update(override_locations)
    return _build(sections, locations, source or "<defaults>", environment)


def _choose_file(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path | None:
    if path is not None:
        chosen, origin = Path(path), ""
    elif environ.get("TASKER_CONFIG"):
        chosen, origin = Path(environ["TASKER_CONFIG"]), "environment variable TASKER_CONFIG"
    else:
        fallback = Path(DEFAULT_FILE)
        return fallback if fallback.is_file() else None
    if not chosen.is_file():
        raise ConfigError(f"config file {str(chosen)!r} does not exist", location=origin)
    return chosen


# --- reading the file --------------------------------------------------------------------------


def _read_file(file: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[_Path, str]]]:
    """Environment sections of the file as plain data, and where each key was written."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc}", location=str(file)) from exc
    try:
        root = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", location=where) from exc
    except YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", location=str(file)) from exc
    if root is None:
        return {}, {}
    if not isinstance(root, Mapping):
        raise ConfigError(
            "the top level must be a mapping of environments (default:, production: ...)",
            location=f"{file}:1:1",
        )
    environments: dict[str, dict[str, Any]] = {}
    locations: dict[str, dict[_Path, str]] = {}
    for name, body in root.items():
        where = _key_location(root, name, str(file), f"{file}:1:1")
        if not isinstance(name, str):
            raise ConfigError(f"environment names must be strings, got {name!r}", location=where)
        if name in SECTIONS:
            raise ConfigError(
                f"{name!r} is a section; put it under 'default:' or an environment section",
                key_path=name,
                location=where,
            )
        if body is not None and not isinstance(body, Mapping):
            raise ConfigError(
                "an environment section must be a mapping of sections",
                key_path=name,
                location=where,
            )
        env_locations: dict[_Path, str] = {(): where}
        _collect_locations(body, (), str(file), where, env_locations)
        environments[name] = _plain(body or {}, (name,))
        locations[name] = env_locations
    return environments, locations


def _key_location(node: Any, key: Any, file: str, fallback: str) -> str:
    """file:line:column of ``key`` in a ruamel mapping (merged ``<<`` keys have no position)."""
    if isinstance(node, CommentedBase):
        try:
            line, column = node.lc.key(key)
        except (KeyError, TypeError, AttributeError):
            return fallback
        return f"{file}:{line + 1}:{column + 1}"
    return fallback


def _collect_locations(
    node: Any, path: _Path, file: str, fallback: str, out: dict[_Path, str]
) -> None:
    if not isinstance(node, Mapping):
        return
    for key, value in node.items():
        where = _key_location(node, key, file, fallback)
        out[(*path, str(key))] = where
        _collect_locations(value, (*path, str(key)), file, where, out)


def _plain(value: Any, path: _Path) -> Any:
    """ruamel's round-trip types (and any Mapping/sequence) as plain dict/list/scalars."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                dotted = ".".join(path) or "<top>"
                raise ConfigError(f"keys must be strings, got {key!r}", key_path=dotted)
            out[key] = _plain(item, (*path, key))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(item, path) for item in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _env_overrides(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[_Path, str]]:
    """``TASKER__EXECUTION__LEASE=45s`` -> ``{"execution": {"lease": "45s"}}`` (YAML scalars)."""
    data: dict[str, Any] = {}
    locations: dict[_Path, str] = {}
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        where = f"environment variable {name}"
        parts = tuple(name[len(ENV_PREFIX) :].lower().split("__"))
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                "expected TASKER__SECTION__KEY (double underscores between names)",
                location=where,
            )
        try:
            value = YAML(typ="safe", pure=True).load(environ[name])
        except YAMLError as exc:
            raise ConfigError(
                f"value is not valid YAML: {exc}", key_path=".".join(parts), location=where
            ) from exc
        node = data
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"conflicts with {'.'.join(parts[: depth + 1])} set by another variable",
                    key_path=".".join(parts),
                    location=where,
                )
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(
                "conflicts with a nested key set by another variable",
                key_path=".".join(parts),
                location=where,
            )
        node[parts[-1]] = _plain(value, parts)
        locations[parts] = where
    return data, locations


# --- validation --------------------------------------------------------------------------------


def _locate(locations: Mapping[_Path, str], path: _Path, source: str) -> str:
    """Where ``path`` was written: its own entry, else its nearest recorded ancestor's."""
    for depth in range(len(path), -1, -1):
        found = locations.get(path[:depth])
        if found:
            return found
    return source


def _unknown_key(key: str, known: tuple[str, ...], key_path: str, where: str) -> ConfigError:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "known keys: " + ", ".join(known)
    return ConfigError(f"unknown key {key!r}; {hint}", key_path=key_path, location=where)


def _build(
    data: Mapping[str, Any], locations: Mapping[_Path, str], source: str, environment: str
) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError("configuration must be a mapping of sections", location=source)
    sections: dict[str, Any] = {}
    for name, body in data.items():
        where = _locate(locations, (str(name),), source)
        if name not in SECTIONS:
            raise _unknown_key(str(name), tuple(SECTIONS), str(name), where)
        if body is None:
            body = {}
        if not isinstance(body, Mapping):
            raise ConfigError("a section must be a mapping of keys", key_path=name, location=where)
        sections[name] = _structure_section(name, _plain(body, (name,)), locations, source)
    return Config(**sections, environment=environment, source=source)


def _structure_section(
    name: str, body: dict[str, Any], locations: Mapping[_Path, str], source: str
) -> Any:
    keys = _FILE_KEYS[name]
    extras: dict[str, dict[str, Any]] = {}
    for key, value in body.items():
        if key in keys:
            continue
        where = _locate(locations, (name, key), source)
        if name == "events" and key == "sink_options":
            raise ConfigError(
                "is filled from sink sub-sections; write each sink's options under "
                "events.<sink name> instead",
                key_path="events.sink_options",
                location=where,
            )
        if name == "events" and (value is None or isinstance(value, Mapping)):
            extras[key] = dict(value or {})
            continue
        raise _unknown_key(key, keys, f"{name}.{key}", where)
    fields = {key: value for key, value in body.items() if key in keys}
    if name == "events":
        fields["sink_options"] = extras
    try:
        return _CONVERTER.structure(fields, SECTIONS[name])
    except ClassValidationError as exc:
        field, message = _first_failure(exc, fields)
    except _FieldError as exc:
        field, message = exc.field, exc.message
    where = _locate(locations, (name, field), source)
    raise ConfigError(message, key_path=f"{name}.{field}", location=where)


def _first_failure(exc: ClassValidationError, fields: Mapping[str, Any]) -> tuple[str, str]:
    """(field, message) of the first failing field, in the order the keys were written."""
    failures = list(_failures(exc, "?"))
    order = {key: index for index, key in enumerate(fields)}
    failures.sort(key=lambda item: order.get(item[0], len(order)))
    return failures[0]


def _failures(exc: BaseException, field: str) -> Iterator[tuple[str, str]]:
    """Each leaf error under ``exc`` with the section field it belongs to."""
    for note in getattr(exc, "__notes__", []):
        if isinstance(note, AttributeValidationNote):
            field = note.name
            break
    if isinstance(exc, _FieldError):
        yield exc.field, exc.message
    elif isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _failures(sub, field)
    else:
        yield field, str(exc)


# --- the converter: strict about types, so `pool_size: "5x"` or `cache: "no"` fail clearly ----


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _strict_int(value: Any, _type: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_describe(value)}")
    return value


def _strict_float(value: Any, _type: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {_describe(value)}")
    return float(value)


def _strict_str(value: Any, _type: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    return value


def _strict_bool(value: Any, _type: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_describe(value)}")
    return value


def _duration(value: Any, _type: Any) -> float:
    return parse_duration(value)


def _is_duration(type_: Any) -> bool:
    return get_origin(type_) is Annotated and any(
        isinstance(meta, _DurationMarker) for meta in get_args(type_)[1:]
    )


def _is_literal(type_: Any) -> bool:
    return get_origin(type_) is Literal


def _literal(value: Any, type_: Any) -> Any:
    choices = get_args(type_)
    if value not in choices:
        options = ", ".join(repr(c) for c in choices)
        raise ValueError(f"must be one of {options}, got {value!r}")
    return value


def _is_str_tuple(type_: Any) -> bool:
    return bool(type_ == tuple[str, ...])


def _str_tuple(value: Any, _type: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise TypeError(f"expected a list of strings, got {_describe(value)}")
    for item in value:
        if not isinstance(item, str):
            raise TypeError(f"expected a list of strings, but an entry is {_describe(item)}")
    return tuple(value)


def _is_mapping(type_: Any) -> bool:
    return get_origin(type_) is dict


def _mapping(value: Any, _type: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping, got {_describe(value)}")
    plain = _plain(value, ())
    assert isinstance(plain, dict)
    return plain


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True)
    converter.register_structure_hook(int, _strict_int)
    converter.register_structure_hook(float, _strict_float)
    converter.register_structure_hook(str, _strict_str)
    converter.register_structure_hook(bool, _strict_bool)
    converter.register_structure_hook_func(_is_duration, _duration)
    converter.register_structure_hook_func(_is_literal, _literal)
    converter.register_structure_hook_func(_is_str_tuple, _str_tuple)
    converter.register_structure_hook_func(_is_mapping, _mapping)
    return converter


_CONVERTER = _make_converter()
