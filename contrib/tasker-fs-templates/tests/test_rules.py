"""The search rules, their precedence, "latest", and files that contradict their path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tasker_core import TaskTemplate, TemplateError

from tasker_fs_templates import FilesystemTemplateFinder

Put = Callable[..., Path]

# (rule, path below the templates dir) for shop/order 1.0.0, in order of precedence.
PLACES = [
    (1, "shop/order/1.0.0.yml"),
    (2, "shop/order.yml"),
    (3, "order/1.0.0.yml"),
    (4, "order.yml"),
]


def source(found: TaskTemplate | None) -> str:
    assert found is not None and found.source is not None
    return found.source


def version(found: TaskTemplate | None) -> str:
    assert found is not None
    return found.version


@pytest.mark.parametrize(("rule", "relpath"), PLACES)
@pytest.mark.parametrize("extension", [".yml", ".yaml"])
def test_each_rule_finds_the_template(
    root: Path, put: Put, rule: int, relpath: str, extension: str
) -> None:
    path = put(relpath.replace(".yml", extension), "shop", "order", "1.0.0")
    finder = FilesystemTemplateFinder([root])
    exact = finder.find("shop", "order", "1.0.0")
    latest = finder.find("shop", "order", None)
    assert exact is not None and latest is not None
    assert (exact.namespace, exact.name, exact.version) == ("shop", "order", "1.0.0")
    assert source(exact) == source(latest) == str(path)
    assert finder.find("shop", "order", "2.0.0") is None
    assert finder.find("other", "order", "1.0.0") is None
    assert finder.find("shop", "other", None) is None


@pytest.mark.parametrize("first", range(len(PLACES)))
def test_precedence_first_rule_wins(root: Path, put: Put, first: int) -> None:
    """With the same version at every rule from ``first`` down, the highest rule answers."""
    for _rule, relpath in PLACES[first:]:
        put(relpath, "shop", "order", "1.0.0")
    finder = FilesystemTemplateFinder([root])
    expected = str(root / PLACES[first][1])
    assert source(finder.find("shop", "order", "1.0.0")) == expected
    assert source(finder.find("shop", "order", None)) == expected


@pytest.mark.parametrize(("_rule", "relpath"), PLACES)
def test_yml_before_yaml(root: Path, put: Put, _rule: int, relpath: str) -> None:
    put(relpath.replace(".yml", ".yaml"), "shop", "order", "1.0.0")
    yml = put(relpath, "shop", "order", "1.0.0")
    assert source(FilesystemTemplateFinder([root]).find("shop", "order", "1.0.0")) == str(yml)


def test_directories_in_configured_order(tmp_path: Path, put: Put) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    # A lower rule in the first directory beats a higher rule in the second.
    put("order.yml", "shop", "order", "1.0.0", base=first)
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0", base=second)
    assert source(FilesystemTemplateFinder([first, second]).find("shop", "order", "1.0.0")) == str(
        first / "order.yml"
    )
    assert source(FilesystemTemplateFinder([second, first]).find("shop", "order", "1.0.0")) == str(
        second / "shop/order/1.0.0.yml"
    )


def test_missing_directories_are_skipped(tmp_path: Path, put: Put) -> None:
    put("order.yml", "shop", "order", "1.0.0", base=tmp_path / "real")
    finder = FilesystemTemplateFinder([tmp_path / "missing", tmp_path / "real"])
    assert source(finder.find("shop", "order", None)) == str(tmp_path / "real" / "order.yml")


def test_latest_is_the_highest_version_across_rules_and_directories(
    tmp_path: Path, put: Put
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    put("shop/order/1.2.0.yml", "shop", "order", "1.2.0", base=a)
    put("shop/order/1.10.0.yml", "shop", "order", "1.10.0", base=a)  # numeric, not lexical
    put("shop/order.yml", "shop", "order", "1.9.0", base=a)
    put("order.yml", "shop", "order", "1.11.0", base=b)  # unversioned, declared inside
    put("order/1.3.0.yml", "shop", "order", "1.3.0", base=b)
    finder = FilesystemTemplateFinder([a, b])
    latest = finder.find("shop", "order", None)
    assert latest is not None and latest.version == "1.11.0"
    assert source(latest) == str(b / "order.yml")
    assert source(finder.find("shop", "order", "1.10.0")) == str(a / "shop/order/1.10.0.yml")


def test_latest_prefers_final_releases(root: Path, put: Put) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    put("shop/order/2.0.0rc1.yml", "shop", "order", "2.0.0rc1")
    finder = FilesystemTemplateFinder([root])
    assert version(finder.find("shop", "order", None)) == "1.0.0"
    assert finder.find("shop", "order", "2.0.0rc1") is not None
    (root / "shop/order/1.0.0.yml").unlink()
    assert version(finder.find("shop", "order", None)) == "2.0.0rc1"


def test_latest_tie_goes_to_precedence(tmp_path: Path, put: Put) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    put("order.yml", "shop", "order", "3.0.0", base=a)
    put("shop/order/3.0.0.yml", "shop", "order", "3.0.0", base=b)
    put("shop/order/2.0.0.yml", "shop", "order", "2.0.0", base=a)
    finder = FilesystemTemplateFinder([a, b])
    assert source(finder.find("shop", "order", None)) == str(a / "order.yml")


def test_exact_version_compares_as_versions(root: Path, put: Put) -> None:
    path = put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    finder = FilesystemTemplateFinder([root])
    found = finder.find("shop", "order", "1.0")
    assert found is not None and found.version == "1.0.0" and source(found) == str(path)
    # Among equal versions the file named exactly as asked comes first.
    exact = put("shop/order/1.0.yml", "shop", "order", "1.0")
    assert source(finder.find("shop", "order", "1.0")) == str(exact)
    assert source(finder.find("shop", "order", "1.0.0")) == str(path)


def test_unstated_namespace_filters(root: Path, put: Put) -> None:
    put("order.yml", "billing", "order", "1.0.0")
    put("order/2.0.0.yml", "billing", "order", "2.0.0")
    finder = FilesystemTemplateFinder([root])
    assert finder.find("shop", "order", None) is None
    assert finder.find("shop", "order", "1.0.0") is None
    assert version(finder.find("billing", "order", None)) == "2.0.0"
    put("shop/order.yml", "shop", "order", "0.1.0")
    assert version(finder.find("shop", "order", None)) == "0.1.0"


def test_a_path_with_two_readings_is_read_by_its_content(root: Path, put: Put) -> None:
    # <dir>/shop/v2.yml is rule 2 for shop/v2, or rule 3 for name "shop", version v2.
    put("shop/v2.yml", "shop", "v2", "1.0.0")
    finder = FilesystemTemplateFinder([root])
    assert finder.find("shop", "v2", None) is not None
    assert finder.find("any", "shop", None) is None  # not an error: the other reading fits
    put("shop/v3.yml", "any", "shop", "v3")
    assert version(finder.find("any", "shop", None)) == "v3"


@pytest.mark.parametrize(
    ("relpath", "content", "field", "said", "actual", "line"),
    [
        ("shop/order/1.0.0.yml", ("shop", "order", "1.1.0"), "version", "1.0.0", "1.1.0", 3),
        ("shop/order/1.0.0.yml", ("shp", "order", "1.0.0"), "namespace", "shop", "shp", 1),
        ("shop/order/1.0.0.yml", ("shop", "ordr", "1.0.0"), "name", "order", "ordr", 2),
        ("shop/order.yml", ("billing", "order", "1.0.0"), "namespace", "shop", "billing", 1),
        ("order/1.0.0.yml", ("shop", "order", "1.0.1"), "version", "1.0.0", "1.0.1", 3),
        ("order.yml", ("shop", "orders", "1.0.0"), "name", "order", "orders", 2),
    ],
)
def test_content_contradicting_the_path_is_an_error(
    root: Path,
    put: Put,
    relpath: str,
    content: tuple[str, str, str],
    field: str,
    said: str,
    actual: str,
    line: int,
) -> None:
    path = put(relpath, *content)
    finder = FilesystemTemplateFinder([root])
    for version in ("1.0.0", None):
        with pytest.raises(TemplateError) as info:
            finder.find("shop", "order", version)
        error = info.value
        assert f"path says {field} {said!r}, file says {actual!r}" in str(error)
        assert (error.file, error.line) == (str(path), line)
        assert error.column is not None and error.column > len(field)
        assert str(error).startswith(f"{path}:{line}:{error.column}: ")


def test_all_contradictions_are_named(root: Path, put: Put) -> None:
    put("shop/order/1.0.0.yml", "shp", "ordr", "1.1.0")
    with pytest.raises(TemplateError) as info:
        FilesystemTemplateFinder([root]).find("shop", "order", "1.0.0")
    message = str(info.value)
    for part in ("namespace 'shop'", "name 'order'", "version '1.0.0'"):
        assert f"path says {part}" in message


def test_broken_yaml_names_file_line_column(root: Path) -> None:
    path = root / "order.yml"
    path.write_text("namespace: shop\nname: order\nversion: 1.0.0\nsteps: [oops\n")
    with pytest.raises(TemplateError) as info:
        FilesystemTemplateFinder([root]).find("shop", "order", None)
    error = info.value
    assert error.file == str(path) and error.line is not None and error.column is not None
    assert str(error).startswith(f"{path}:{error.line}:{error.column}: invalid YAML")


def test_invalid_template_names_file_line_column(root: Path, put: Put) -> None:
    path = root / "order.yml"
    path.write_text(
        "namespace: shop\nname: order\nversion: 1.0.0\nsteps:\n"
        "  - name: a\n    handler: demo.work\n    retires: 3\n"
    )
    with pytest.raises(TemplateError) as info:
        FilesystemTemplateFinder([root]).find("shop", "order", "1.0.0")
    assert (info.value.line, info.value.column) == (7, 5)
    assert "did you mean 'retry'" in str(info.value)


@pytest.mark.parametrize(
    ("namespace", "name", "version"),
    [("..", "order", None), ("shop", "../order", None), ("shop", "order", "../1"), ("", "x", None)],
)
def test_requests_that_cannot_name_a_file_find_nothing(
    root: Path, put: Put, namespace: str, name: str, version: str | None
) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    assert FilesystemTemplateFinder([root]).find(namespace, name, version) is None


def test_files_that_are_not_versions_are_ignored(root: Path, put: Put) -> None:
    put("shop/order/notes.yml", "shop", "order", "9.0.0")
    put("shop/order/.1.5.0.yml", "shop", "order", "1.5.0")  # hidden: an editor's backup
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    (root / "shop/order/3.0.0.yml").mkdir()
    assert version(FilesystemTemplateFinder([root]).find("shop", "order", None)) == "1.0.0"


def test_default_max_attempts_reaches_the_loader(root: Path, put: Put) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    found = FilesystemTemplateFinder([root], default_max_attempts=7).find("shop", "order", None)
    assert found is not None and found.steps[0].retry.max_attempts == 7
