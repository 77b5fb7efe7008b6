"""Caching: a hot lookup neither parses nor grows with the tree, and every change is seen."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tasker_core import TaskTemplate, TemplateError

from tasker_fs_templates import FilesystemTemplateFinder

Put = Callable[..., Path]
Settle = Callable[[], None]


def version(found: TaskTemplate | None) -> str:
    assert found is not None
    return found.version


def first_step(found: TaskTemplate | None) -> str:
    assert found is not None
    return found.steps[0].name


def source(found: TaskTemplate | None) -> str:
    assert found is not None and found.source is not None
    return found.source


@pytest.fixture
def stat_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every path stat-ed while the test runs, in order (a cached lookup's whole cost)."""
    calls: list[str] = []
    real = os.stat

    def counting(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        calls.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting)
    yield calls


def test_a_cached_lookup_does_not_parse(root: Path, put: Put, settle: Settle) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    put("order.yml", "shop", "order", "0.5.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    first = {v: finder.find("shop", "order", v) for v in ("1.0.0", None, "9.9.9")}
    parses, searches = finder.files.parses, finder.stats.searches
    for _ in range(5):
        again = {v: finder.find("shop", "order", v) for v in ("1.0.0", None, "9.9.9")}
        assert all(again[v] is first[v] for v in again)
    assert (finder.files.parses, finder.stats.searches) == (parses, searches)
    assert finder.stats.hits == 15


@pytest.mark.parametrize("count", [1, 300])
def test_a_cached_lookup_does_not_grow_with_the_tree(
    root: Path, put: Put, settle: Settle, stat_calls: list[str], count: int
) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    for i in range(count):
        put(f"shop/order/2.{i}.0.yml", "shop", "order", f"2.{i}.0")
        put(f"shop/other_{i}.yml", "shop", f"other_{i}", "1.0.0")
        put(f"flow_{i}/1.0.0.yml", "shop", f"flow_{i}", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    for v in ("1.0.0", None):
        finder.find("shop", "order", v)
        stat_calls.clear()
        finder.find("shop", "order", v)
        # Exact: <dir>/shop/order and the file. Latest: those, plus <dir> and <dir>/shop whose
        # listings show that no other rule has a file here.
        assert len(stat_calls) == (2 if v else 4), stat_calls


def test_an_edited_template_is_seen(root: Path, put: Put, settle: Settle) -> None:
    path = put("shop/order.yml", "shop", "order", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    assert version(finder.find("shop", "order", None)) == "1.0.0"
    put("shop/order.yml", "shop", "order", "1.1.0", description="edited")
    assert version(finder.find("shop", "order", None)) == "1.1.0"
    assert finder.find("shop", "order", "1.0.0") is None
    settle()
    found = finder.find("shop", "order", "1.1.0")
    assert found is not None and found.description == "edited" and found.source == str(path)


def test_an_editor_replacing_the_file_is_seen(root: Path, put: Put, settle: Settle) -> None:
    """Write-to-temp-then-rename keeps size and may keep mtime; the inode still changes."""
    path = put("order.yml", "shop", "order", "1.0.0", step="aaa")
    settle()
    finder = FilesystemTemplateFinder([root])
    assert first_step(finder.find("shop", "order", None)) == "aaa"
    stat = path.stat()
    temp = put("order.tmp", "shop", "order", "1.0.0", step="bbb")
    os.utime(temp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    keep = put("keep.yml", "x", "keep", "1.0.0")  # holds the old inode so it is not reused
    os.link(path, keep.with_suffix(".old"))
    os.replace(temp, path)
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert first_step(finder.find("shop", "order", None)) == "bbb"


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_a_same_size_edit_within_the_mtime_granularity_is_seen(root: Path, put: Put) -> None:
    """The racy case: the rewrite keeps size, inode and mtime; only the content tells."""
    path = put("order.yml", "shop", "order", "1.0.0", step="aaa")
    mtime = path.stat().st_mtime_ns
    clock = Clock(mtime + 10**6)  # 1 ms after the write: well inside the racy window
    finder = FilesystemTemplateFinder([root], racy_window=2.0, clock=clock)
    assert first_step(finder.find("shop", "order", None)) == "aaa"
    with open(path, "r+b") as handle:  # in place: same inode
        handle.write(path.read_bytes().replace(b"aaa", b"bbb"))
    os.utime(path, ns=(mtime, mtime))
    assert first_step(finder.find("shop", "order", None)) == "bbb"
    parses = finder.files.parses
    assert first_step(finder.find("shop", "order", None)) == "bbb"
    assert finder.files.parses == parses  # unchanged bytes: compared, not parsed again
    # Once the signature is old enough it is trusted alone, and the answer is cached.
    clock.now = mtime + 3 * 10**9
    finder.find("shop", "order", None)
    searches = finder.stats.searches
    finder.find("shop", "order", None)
    assert finder.stats.searches == searches


def test_a_new_higher_precedence_file_wins(root: Path, put: Put, settle: Settle) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    assert source(finder.find("shop", "order", "1.0.0")) == str(root / "order.yml")
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    assert source(finder.find("shop", "order", "1.0.0")) == str(root / "shop/order/1.0.0.yml")
    (root / "shop/order/1.0.0.yml").unlink()
    assert source(finder.find("shop", "order", "1.0.0")) == str(root / "order.yml")
    (root / "order.yml").unlink()
    assert finder.find("shop", "order", "1.0.0") is None


def test_a_new_version_changes_latest(root: Path, put: Put, settle: Settle) -> None:
    put("shop/order/1.0.0.yml", "shop", "order", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    assert version(finder.find("shop", "order", None)) == "1.0.0"
    put("shop/order/1.1.0.yml", "shop", "order", "1.1.0")
    assert version(finder.find("shop", "order", None)) == "1.1.0"
    settle()
    put("order/1.2.0.yml", "shop", "order", "1.2.0")
    assert version(finder.find("shop", "order", None)) == "1.2.0"


def test_not_found_is_cached_until_the_file_appears(root: Path, put: Put, settle: Settle) -> None:
    settle()
    finder = FilesystemTemplateFinder([root])
    assert finder.find("shop", "order", None) is None
    searches = finder.stats.searches
    assert finder.find("shop", "order", None) is None
    assert finder.stats.searches == searches
    put("order.yml", "shop", "order", "1.0.0")
    assert version(finder.find("shop", "order", None)) == "1.0.0"


def test_a_broken_file_is_not_reparsed_until_fixed(root: Path, put: Put, settle: Settle) -> None:
    path = root / "order.yml"
    path.write_text("namespace: shop\nname: [order\n")
    settle()
    finder = FilesystemTemplateFinder([root])
    for _ in range(3):
        with pytest.raises(TemplateError, match=r"order\.yml:\d+:\d+: invalid YAML"):
            finder.find("shop", "order", None)
    assert finder.files.parses == 1
    put("order.yml", "shop", "order", "1.0.0")
    assert version(finder.find("shop", "order", None)) == "1.0.0"


def test_cache_off_rereads_every_time(root: Path, put: Put, settle: Settle) -> None:
    path = put("order.yml", "shop", "order", "1.0.0", step="aaa")
    settle()
    finder = FilesystemTemplateFinder([root], cache=False)
    for _ in range(3):
        finder.find("shop", "order", None)
    assert finder.files.parses == 3 and finder.stats.hits == 0
    mtime = path.stat().st_mtime_ns
    path.write_text(path.read_text().replace("aaa", "bbb"))
    os.utime(path, ns=(mtime, mtime))  # even an edit no signature shows
    assert first_step(finder.find("shop", "order", None)) == "bbb"


def test_clear_forgets_everything(root: Path, put: Put, settle: Settle) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root])
    finder.find("shop", "order", None)
    finder.clear()
    finder.find("shop", "order", None)
    assert finder.files.parses == 2


def test_remembered_answers_are_bounded(root: Path, put: Put, settle: Settle) -> None:
    put("order.yml", "shop", "order", "1.0.0")
    settle()
    finder = FilesystemTemplateFinder([root], max_answers=5)
    for minor in range(12):
        assert finder.find("shop", "order", f"9.{minor}") is None
    assert finder.find("shop", "order", "1.0.0") is not None
    searches = finder.stats.searches
    assert finder.find("shop", "order", "1.0.0") is not None
    assert finder.stats.searches == searches
