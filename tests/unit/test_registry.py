"""The registry: handlers by name or import path, templates by namespace/name/version."""

from __future__ import annotations

import os.path
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from tasker_core.errors import HandlerNotFoundError, PluginError, TemplateNotFoundError
from tasker_core.registry import Registry
from tasker_core.templates import StepTemplate, TaskTemplate


def make_template(
    version: str, name: str = "orders", handler: str = "shop.validate", namespace: str = "shop"
) -> TaskTemplate:
    step = StepTemplate(name="validate", handler=handler)
    return TaskTemplate(namespace=namespace, name=name, version=version, steps=(step,))


def validate(ctx: Any) -> str:
    return "ok"


def other(ctx: Any) -> str:
    return "other"


# --- handlers ----------------------------------------------------------------------------------


def test_registered_name_resolves_first() -> None:
    registry = Registry()
    registry.register_handler("shop.validate", validate)
    assert registry.resolve_handler("shop.validate") is validate
    assert registry.get_handler("shop.validate") is validate
    assert registry.get_handler("shop.nothing") is None
    assert dict(registry.handlers()) == {"shop.validate": validate}


def test_same_handler_twice_is_fine_a_different_one_is_not() -> None:
    registry = Registry()
    registry.register_handler("shop.validate", validate)
    registry.register_handler("shop.validate", validate)
    with pytest.raises(PluginError, match="already registered") as info:
        registry.register_handler("shop.validate", other)
    assert f"{__name__}:validate" in str(info.value)
    assert f"{__name__}:other" in str(info.value)
    assert registry.resolve_handler("shop.validate") is validate


@pytest.mark.parametrize("name", ["", "has space", "pkg.mod:func", "9lives"])
def test_handler_names_must_be_dotted_identifiers(name: str) -> None:
    with pytest.raises(PluginError, match="invalid handler name"):
        Registry().register_handler(name, validate)


def test_register_requires_a_callable() -> None:
    with pytest.raises(PluginError, match="must be callable"):
        Registry().register_handler("shop.x", 42)  # type: ignore[arg-type]


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An importable module ``reg_handlers_mod`` with a handler and a non-callable attribute."""
    (tmp_path / "reg_handlers_mod.py").write_text(
        "def run(ctx):\n    return 'ran'\n\nLIMIT = 42\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "reg_handlers_mod"


def test_import_path_resolves(handler_module: str) -> None:
    registry = Registry()
    assert registry.resolve_handler("os.path:join") is os.path.join
    assert registry.resolve_handler("pathlib:Path.exists") is Path.exists
    assert registry.resolve_handler(f"{handler_module}:run")(None) == "ran"


def test_unregistered_name_is_explained_with_a_suggestion() -> None:
    registry = Registry()
    registry.register_handler("shop.validate", validate)
    with pytest.raises(HandlerNotFoundError) as info:
        registry.resolve_handler("shop.validat")
    message = str(info.value)
    assert "'shop.validat' is not registered" in message
    assert "package.module:function" in message
    assert "Did you mean 'shop.validate'?" in message


def test_missing_module() -> None:
    with pytest.raises(HandlerNotFoundError, match=re.escape("module 'no_such_pkg.mod' not found")):
        Registry().resolve_handler("no_such_pkg.mod:run")


def test_missing_attribute() -> None:
    with pytest.raises(HandlerNotFoundError, match=re.escape("'os.path' has no attribute 'nope'")):
        Registry().resolve_handler("os.path:nope")
    with pytest.raises(
        HandlerNotFoundError, match=re.escape("'pathlib:Path' has no attribute 'nope'")
    ):
        Registry().resolve_handler("pathlib:Path.nope")


def test_not_callable(handler_module: str) -> None:
    with pytest.raises(HandlerNotFoundError, match="int object is not callable"):
        Registry().resolve_handler(f"{handler_module}:LIMIT")


def test_broken_module_reports_the_real_cause(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_dep_mod.py").write_text("import not_installed_anywhere\n")
    (tmp_path / "broken_raise_mod.py").write_text("raise RuntimeError('boom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(HandlerNotFoundError) as info:
        Registry().resolve_handler("broken_dep_mod:run")
    assert "importing module 'broken_dep_mod' failed" in str(info.value)
    assert "not_installed_anywhere" in str(info.value)
    with pytest.raises(HandlerNotFoundError, match="RuntimeError: boom at import"):
        Registry().resolve_handler("broken_raise_mod:run")


def test_malformed_import_path() -> None:
    with pytest.raises(HandlerNotFoundError, match="not a valid import path"):
        Registry().resolve_handler("os.path:")


def test_resolve_template_handlers_names_the_step() -> None:
    registry = Registry()
    registry.register_handler("shop.validate", validate)
    assert registry.resolve_template_handlers(make_template("1.0.0")) == {"validate": validate}
    broken = make_template("1.0.0", handler="shop.missing")
    with pytest.raises(
        HandlerNotFoundError, match=re.escape("step 'validate' of shop/orders@1.0.0")
    ):
        registry.resolve_template_handlers(broken)


def test_concurrent_registration_and_reads() -> None:
    registry = Registry()
    start = threading.Barrier(5)
    seen_sizes: list[int] = []

    def writer(offset: int) -> None:
        start.wait()
        for i in range(200):
            registry.register_handler(f"w{offset}.h{i}", validate)

    def reader() -> None:
        start.wait()
        for _ in range(2000):
            snapshot = registry.handlers()
            seen_sizes.append(len(snapshot))
            assert all(fn is validate for fn in snapshot.values())

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    threads.append(threading.Thread(target=reader))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry.handlers()) == 800
    assert seen_sizes == sorted(seen_sizes)


# --- templates ---------------------------------------------------------------------------------


def test_exact_and_latest_versions() -> None:
    registry = Registry()
    for version in ("1.9.0", "1.10.0", "1.2.0", "2.0.0rc1"):
        registry.register_template(make_template(version))
    assert registry.get_template("shop", "orders", "1.9.0").version == "1.9.0"
    assert registry.get_template("shop", "orders").version == "1.10.0"
    assert registry.get_template("shop", "orders", "2.0.0rc1").version == "2.0.0rc1"
    assert registry.get_template("shop", "orders", "1.2").version == "1.2.0"


def test_prereleases_only_when_nothing_else() -> None:
    registry = Registry()
    registry.register_template(make_template("0.1.0a1"))
    registry.register_template(make_template("0.1.0b2"))
    assert registry.get_template("shop", "orders").version == "0.1.0b2"


def test_missing_templates() -> None:
    registry = Registry()
    registry.register_template(make_template("1.0.0"))
    with pytest.raises(TemplateNotFoundError, match=re.escape("shop/orders@2.0.0")):
        registry.get_template("shop", "orders", "2.0.0")
    with pytest.raises(TemplateNotFoundError, match="shop/other"):
        registry.get_template("shop", "other")
    with pytest.raises(TemplateNotFoundError):
        registry.get_template("shop", "orders", "not a version")
    assert registry.find_template("shop", "other") is None


def test_duplicate_templates() -> None:
    registry = Registry()
    registry.register_template(make_template("1.0.0"))
    registry.register_template(make_template("1.0.0"))
    with pytest.raises(PluginError, match=r"shop/orders@1\.0 is already registered"):
        registry.register_template(make_template("1.0", handler="shop.other"))
    assert registry.templates() == [make_template("1.0.0")]


def test_templates_are_listed_in_order() -> None:
    registry = Registry()
    for namespace, name, version in [("b", "x", "1.0"), ("a", "y", "2.0"), ("a", "y", "10.0")]:
        registry.register_template(make_template(version, name=name, namespace=namespace))
    assert [t.key for t in registry.templates()] == ["a/y@2.0", "a/y@10.0", "b/x@1.0"]


VERSIONS = st.builds(
    lambda parts, pre: ".".join(map(str, parts)) + pre,
    st.lists(st.integers(0, 30), min_size=1, max_size=3),
    st.sampled_from(["", "", "", "a1", "rc2", ".post1"]),
)


@given(st.lists(VERSIONS, min_size=1, max_size=8, unique_by=Version))
def test_latest_is_the_highest_final_release(versions: list[str]) -> None:
    registry = Registry()
    for version in versions:
        registry.register_template(make_template(version))
    parsed = [Version(v) for v in versions]
    finals = [v for v in parsed if not v.is_prerelease]
    expected = max(finals or parsed)
    assert Version(registry.get_template("shop", "orders").version) == expected
    for version in versions:
        assert registry.get_template("shop", "orders", version).version == version
