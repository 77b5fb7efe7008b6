"""Configuration loading: defaults, environment sections, env-var overrides, located errors."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Annotated, Any, get_origin, get_type_hints

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from tasker_core.config import SECTIONS, Config, load_config
from tasker_core.durations import format_duration, parse_duration
from tasker_core.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "tasker.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def dump(data: Any) -> str:
    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, stream)
    return stream.getvalue()


# --- durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5s", 1.5),
        ("1m30s", 90.0),
        (" 2 m ", 120.0),
        ("45", 45.0),
        (7, 7.0),
        (0.5, 0.5),
    ],
)
def test_parse_duration_accepts_units_and_numbers(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "abc", "30s5m", "1s1s", "-1s", "ms", "1.2.3s", -1])
def test_parse_duration_error_names_the_text(bad: str | int) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [True, None, float("nan"), float("inf")])
def test_parse_duration_rejects_non_durations(bad: Any) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_format_then_parse_is_exact(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(0, 99), st.integers(0, 59), st.integers(0, 59), st.integers(0, 999))
def test_compound_durations_add_up(h: int, m: int, s: int, ms: int) -> None:
    parts = [(h, "h"), (m, "m"), (s, "s"), (ms, "ms")]
    text = "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"
    assert parse_duration(text) == pytest.approx(h * 3600 + m * 60 + s + ms / 1000)


def test_format_duration_prefers_readable_units() -> None:
    assert [format_duration(x) for x in (0, 0.1, 1.5, 30, 300, 3600, 5400)] == [
        "0s",
        "100ms",
        "1.5s",
        "30s",
        "5m",
        "1h",
        "90m",
    ]


# --- defaults ----------------------------------------------------------------------------------

DOCUMENTED_DEFAULTS = {
    "store": {
        "url": "sqlite:///./.tasker/tasker.db",
        "pool_size": 5,
        "busy_timeout": 5.0,
        "options": {},
    },
    "queue": {"url": "memory://", "options": {}},
    "execution": {
        "max_concurrent_steps": 8,
        "step_timeout": 300.0,
        "lease": 30.0,
        "heartbeat_interval": 10.0,
        "poll_interval": 1.0,
        "batch_size": 100,
        "on_failure": "continue",
        "default_max_attempts": 3,
        "worker_id": None,
    },
    "backoff": {"base": 1.0, "max": 300.0, "jitter": 0.1, "seed": 0},
    "events": {
        "sinks": ("log",),
        "buffer_size": 10000,
        "batch_size": 256,
        "flush_interval": 0.1,
        "sink_options": {},
    },
    "templates": {"paths": (), "cache": True},
    "identity": {"strategy": "key"},
    "logging": {"level": "INFO", "format": "text"},
}


def test_defaults_are_the_documented_ones() -> None:
    config = Config.default()
    actual = {name: attrs.asdict(getattr(config, name)) for name in SECTIONS}
    assert actual == DOCUMENTED_DEFAULTS


def test_no_file_means_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config(env={})
    assert config == Config.default()
    assert config.environment == "development"


def test_every_field_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [
        f"{name}.{field.name}"
        for name, cls in SECTIONS.items()
        for field in attrs.fields(cls)
        if f"`{name}.{field.name}`" not in text
    ]
    missing += [f.name for f in attrs.fields(Config) if f"`{f.name}`" not in text]
    assert not missing, f"docs/configuration.md does not document: {missing}"


def test_documented_defaults_match_code() -> None:
    """Each key's row in the docs table shows the default the code uses."""
    text = DOCS.read_text(encoding="utf-8")
    defaults = Config.default()
    for name, cls in SECTIONS.items():
        hints = get_type_hints(cls, include_extras=True)
        for field in attrs.fields(cls):
            row = re.search(rf"^\| `{name}\.{field.name}` \|([^|]*)\|", text, re.MULTILINE)
            assert row, f"no table row for {name}.{field.name}"
            shown = row.group(1).strip()
            default = getattr(getattr(defaults, name), field.name)
            if get_origin(hints[field.name]) is Annotated:
                expected = f"`{format_duration(default)}`"
            elif isinstance(default, bool):
                expected = f"`{str(default).lower()}`"
            elif isinstance(default, (str, int, float)):
                expected = f"`{default}`"
            elif default is None:
                expected = "`null`"
            else:
                expected = (
                    f"`{json.dumps(list(default) if isinstance(default, tuple) else default)}`"
                )
            assert shown == expected, (name, field.name, shown)


# --- file layout -------------------------------------------------------------------------------

LAYOUT = """\
default:
  store:
    url: sqlite:///app.db
    options:
      echo: false
      connect: {timeout: 3}
  execution:
    lease: 45s
    max_concurrent_steps: 4
production:
  store:
    url: postgresql://db/tasker
    options:
      connect: {sslmode: require}
  execution:
    max_concurrent_steps: 32
"""


def test_default_section_applies_in_development(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LAYOUT), env={})
    assert config.store.url == "sqlite:///app.db"
    assert config.execution.lease == 45.0
    assert config.execution.max_concurrent_steps == 4
    assert config.execution.poll_interval == 1.0
    assert config.source == str(tmp_path / "tasker.yaml")


def test_environment_section_deep_merges_over_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LAYOUT), env={"TASKER_ENV": "production"})
    assert config.environment == "production"
    assert config.store.url == "postgresql://db/tasker"
    assert config.store.options == {"echo": False, "connect": {"timeout": 3, "sslmode": "require"}}
    assert config.execution.lease == 45.0
    assert config.execution.max_concurrent_steps == 32


def test_missing_environment_section_means_default(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, LAYOUT), env={"TASKER_ENV": "staging"})
    assert config.store.url == "sqlite:///app.db"
    assert config.environment == "staging"


def test_env_vars_override_file_and_parse_as_yaml(tmp_path: Path) -> None:
    env = {
        "TASKER_ENV": "production",
        "TASKER__EXECUTION__LEASE": "1m",
        "TASKER__EXECUTION__MAX_CONCURRENT_STEPS": "64",
        "TASKER__TEMPLATES__CACHE": "false",
        "TASKER__EVENTS__SINKS": "[log, zmq]",
        "TASKER__STORE__OPTIONS__ECHO": "true",
        "TASKER__EXECUTION__WORKER_ID": "worker-7",
    }
    config = load_config(write(tmp_path, LAYOUT), env=env)
    assert config.execution.lease == 60.0
    assert config.execution.max_concurrent_steps == 64
    assert config.templates.cache is False
    assert config.events.sinks == ("log", "zmq")
    assert config.store.options["echo"] is True
    assert config.store.options["connect"] == {"timeout": 3, "sslmode": "require"}
    assert config.execution.worker_id == "worker-7"


def test_tasker_config_variable_and_cwd_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = write(tmp_path, "default:\n  queue: {url: 'memory://named'}\n", "named.yaml")
    assert load_config(env={"TASKER_CONFIG": str(named)}).queue.url == "memory://named"
    monkeypatch.chdir(tmp_path)
    write(tmp_path, "default:\n  queue: {url: 'memory://cwd'}\n")
    assert load_config(env={}).queue.url == "memory://cwd"
    assert load_config(env={"TASKER_CONFIG": str(named)}).queue.url == "memory://named"
    assert load_config(named, env={}).queue.url == "memory://named"


def test_missing_files_are_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="TASKER_CONFIG") as info:
        load_config(env={"TASKER_CONFIG": str(tmp_path / "gone.yaml")})
    assert "gone.yaml" in str(info.value)


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "# nothing yet\n"), env={}) == Config.default()


def test_events_sink_sections_are_kept_for_plugins(tmp_path: Path) -> None:
    text = "default:\n  events:\n    sinks: [log, zmq]\n    zmq:\n      endpoint: tcp://*:5556\n"
    env = {"TASKER__EVENTS__ZMQ__HWM": "1000", "TASKER__EVENTS__WEBHOOK__URL": "http://x"}
    config = load_config(write(tmp_path, text), env=env)
    assert config.events.sink_options == {
        "zmq": {"endpoint": "tcp://*:5556", "hwm": 1000},
        "webhook": {"url": "http://x"},
    }
    mapping = config.to_mapping()
    assert mapping["events"]["zmq"] == {"endpoint": "tcp://*:5556", "hwm": 1000}
    assert Config.from_mapping(mapping) == config


# --- errors ------------------------------------------------------------------------------------


def test_unknown_key_names_path_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  execution:\n    lease: 30s\n    leese: 45s\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    error = info.value
    assert error.key_path == "execution.leese"
    assert error.location == f"{path}:4:5"
    assert "did you mean 'lease'?" in str(error)


def test_unknown_section_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  exection:\n    lease: 30s\n")
    with pytest.raises(ConfigError, match="did you mean 'execution'") as info:
        load_config(path, env={})
    assert info.value.location == f"{path}:2:3"


def test_bad_value_names_path_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  store:\n    url: x\n    pool_size: lots\n")
    with pytest.raises(ConfigError, match="expected an integer") as info:
        load_config(path, env={})
    assert info.value.key_path == "store.pool_size"
    assert info.value.location == f"{path}:4:5"


def test_bad_duration_names_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  execution:\n    step_timeout: 5 fortnights\n")
    with pytest.raises(ConfigError, match="5 fortnights") as info:
        load_config(path, env={})
    assert info.value.key_path == "execution.step_timeout"
    assert info.value.location == f"{path}:3:5"


def test_errors_in_unselected_environment_are_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "default: {}\nproduction:\n  store:\n    pool_size: 0\n")
    with pytest.raises(ConfigError, match="at least 1") as info:
        load_config(path, env={})
    assert info.value.location == f"{path}:4:5"


def test_bad_env_var_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env={"TASKER__EXECUTION__LEASE": "soon"})
    assert info.value.key_path == "execution.lease"
    assert "TASKER__EXECUTION__LEASE" in info.value.location
    with pytest.raises(ConfigError, match="did you mean 'lease'") as info:
        load_config(env={"TASKER__EXECUTION__LEASES": "5s"})
    assert "TASKER__EXECUTION__LEASES" in info.value.location
    with pytest.raises(ConfigError, match="TASKER__SECTION__KEY"):
        load_config(env={"TASKER__EXECUTION": "x"})


def test_unknown_non_mapping_event_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'sinks'") as info:
        Config.from_mapping({"events": {"sink": ["log"]}})
    assert info.value.key_path == "events.sink"


def test_sections_at_top_level_are_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "store:\n  url: x\n")
    with pytest.raises(ConfigError, match="under 'default:'") as info:
        load_config(path, env={})
    assert info.value.location == f"{path}:1:1"


def test_invalid_yaml_reports_position(tmp_path: Path) -> None:
    path = write(tmp_path, "default:\n  store: {url: x\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(path, env={})
    assert info.value.location.startswith(f"{path}:3")


@pytest.mark.parametrize(
    ("data", "key_path", "message"),
    [
        ({"execution": {"on_failure": "halt"}}, "execution.on_failure", "'continue', 'stop'"),
        ({"execution": {"lease": "5s"}}, "execution.heartbeat_interval", "shorter than"),
        ({"execution": {"batch_size": True}}, "execution.batch_size", "expected an integer"),
        ({"execution": {"worker_id": ""}}, "execution.worker_id", "must not be empty"),
        ({"backoff": {"jitter": 1.5}}, "backoff.jitter", "between 0 and 1"),
        ({"backoff": {"base": "1m", "max": "1s"}}, "backoff.max", "must not be less"),
        ({"backoff": {"seed": -1}}, "backoff.seed", "at least 0"),
        ({"events": {"sinks": "log"}}, "events.sinks", "list of strings"),
        ({"events": {"sinks": ["log", "log"]}}, "events.sinks", "duplicate"),
        ({"events": {"flush_interval": 0}}, "events.flush_interval", "positive"),
        ({"events": {"sink_options": {}}}, "events.sink_options", "events.<sink name>"),
        ({"templates": {"cache": "yes"}}, "templates.cache", "true or false"),
        ({"templates": {"paths": [1]}}, "templates.paths", "list of strings"),
        ({"identity": {"strategy": "uuid"}}, "identity.strategy", "'none', 'hash', 'key'"),
        ({"logging": {"level": "loud"}}, "logging.level", "'DEBUG'"),
        ({"logging": {"format": "xml"}}, "logging.format", "'text', 'json'"),
        ({"store": {"options": [1]}}, "store.options", "expected a mapping"),
        ({"store": "sqlite://"}, "store", "must be a mapping"),
    ],
)
def test_bad_values(data: dict[str, Any], key_path: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        Config.from_mapping(data)
    assert info.value.key_path == key_path
    assert info.value.location == "<mapping>"


def test_logging_level_is_case_insensitive() -> None:
    assert Config.from_mapping({"logging": {"level": "debug"}}).logging.level == "DEBUG"


def test_with_overrides_deep_merges() -> None:
    base = Config.from_mapping({"store": {"options": {"a": 1, "b": {"c": 2}}}})
    changed = base.with_overrides({"store": {"options": {"b": {"d": 3}}}, "backoff": {"seed": 9}})
    assert changed.store.options == {"a": 1, "b": {"c": 2, "d": 3}}
    assert changed.backoff.seed == 9
    assert base.backoff.seed == 0


# --- properties --------------------------------------------------------------------------------

_KEY = st.sampled_from(["alpha", "beta", "gamma", "delta"])
_NESTED = st.recursive(
    st.integers(-5, 5), lambda inner: st.dictionaries(_KEY, inner, max_size=3), max_leaves=6
)
_OPTIONS = st.dictionaries(_KEY, _NESTED, max_size=4)


def reference_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = reference_merge(out[key], value)
        else:
            out[key] = value
    return out


_SCALARS: dict[tuple[str, str], st.SearchStrategy[Any]] = {
    ("execution", "max_concurrent_steps"): st.integers(1, 500),
    ("execution", "lease"): st.integers(11, 7200).map(float),
    ("execution", "on_failure"): st.sampled_from(["continue", "stop"]),
    ("backoff", "jitter"): st.integers(0, 100).map(lambda k: k / 100),
    ("store", "url"): st.integers(0, 99).map(lambda n: f"sqlite:///db{n}.sqlite"),
    ("logging", "format"): st.sampled_from(["text", "json"]),
}


def _layer() -> st.SearchStrategy[dict[tuple[str, str], Any]]:
    return st.fixed_dictionaries({}, optional={key: strategy for key, strategy in _SCALARS.items()})


def _as_sections(layer: dict[tuple[str, str], Any], options: dict[str, Any]) -> dict[str, Any]:
    sections: dict[str, Any] = {}
    for (section, key), value in layer.items():
        sections.setdefault(section, {})[key] = value
    if options:
        sections.setdefault("store", {})["options"] = options
    return sections


def _env_text(section: str, key: str, value: Any) -> str:
    if section == "execution" and key == "lease":
        return format_duration(value)
    return str(value)


@settings(max_examples=60, deadline=None)
@given(
    default=_layer(),
    production=_layer(),
    variables=_layer(),
    default_options=_OPTIONS,
    production_options=_OPTIONS,
    option_vars=st.dictionaries(_KEY, st.integers(-5, 5), max_size=2),
    use_production=st.booleans(),
)
def test_precedence_env_vars_over_environment_over_default(
    tmp_path_factory: pytest.TempPathFactory,
    default: dict[tuple[str, str], Any],
    production: dict[tuple[str, str], Any],
    variables: dict[tuple[str, str], Any],
    default_options: dict[str, Any],
    production_options: dict[str, Any],
    option_vars: dict[str, int],
    use_production: bool,
) -> None:
    layout = {
        "default": _as_sections(default, default_options),
        "production": _as_sections(production, production_options),
    }
    path = tmp_path_factory.mktemp("cfg") / "tasker.yaml"
    path.write_text(dump(layout), encoding="utf-8")
    env = {
        f"TASKER__{section.upper()}__{key.upper()}": _env_text(section, key, value)
        for (section, key), value in variables.items()
    }
    env.update({f"TASKER__STORE__OPTIONS__{k.upper()}": str(v) for k, v in option_vars.items()})
    if use_production:
        env["TASKER_ENV"] = "production"
    config = load_config(path, env=env)

    chosen = production if use_production else {}
    for section, key in _SCALARS:
        expected = getattr(getattr(Config.default(), section), key)
        for layer in (default, chosen, variables):
            expected = layer.get((section, key), expected)
        assert getattr(getattr(config, section), key) == expected, (section, key)
    options = reference_merge(default_options, production_options if use_production else {})
    options = reference_merge(options, dict(option_vars))
    assert config.store.options == options


@given(
    layer=_layer(),
    options=_OPTIONS,
    sinks=st.lists(st.sampled_from(["log", "zmq", "webhook"]), unique=True),
    sink_options=st.dictionaries(st.sampled_from(["zmq", "webhook"]), _OPTIONS, max_size=2),
)
def test_to_mapping_round_trips(
    layer: dict[tuple[str, str], Any],
    options: dict[str, Any],
    sinks: list[str],
    sink_options: dict[str, dict[str, Any]],
) -> None:
    sections = _as_sections(layer, options)
    sections["events"] = {"sinks": sinks, **sink_options}
    config = Config.from_mapping(sections)
    assert config.events.sink_options == sink_options
    assert Config.from_mapping(config.to_mapping()) == config
    assert Config.from_mapping(YAML(typ="safe").load(dump(config.to_mapping()))) == config
