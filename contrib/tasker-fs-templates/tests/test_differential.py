"""Hypothesis: generated directory trees, and edits to them, agree with a reference finder.

The reference below is the rules written as plainly as possible: list every file, keep those
that a rule places at the request's (namespace, name) and whose content fits that rule, and pick
by precedence, with no caching and no cleverness. The finder under test keeps its caches across
every edit of the stateful test, so a stale answer shows up as a disagreement.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from packaging.version import InvalidVersion, Version

from tasker_fs_templates import FilesystemTemplateFinder

NAMESPACES = ["a", "b"]
# "a" is also a namespace (so <dir>/a/ holds both kinds of file); "v2" is a name that is also a
# version, so <dir>/a/v2.yml has two readings.
NAMES = ["x", "a", "v2"]
VERSIONS = ["1.0.0", "1.0", "1.2.0", "1.10.0", "2.0.0rc1", "0.9", "v2"]
ROOTS = ["one", "two"]
EXTENSIONS = [".yml", ".yaml"]
QUERIES = [(ns, n, v) for ns in NAMESPACES for n in NAMES for v in [None, *VERSIONS, "7.0"]]


@attrs.frozen
class Decl:
    """What a file declares."""

    namespace: str
    name: str
    version: str


Tree = dict[str, Decl]  # "root/relative/path.yml" -> declaration


def _version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _rank(text: str) -> tuple[bool, Version]:
    version = Version(text)
    return (not version.is_prerelease, version)


# ------------------------------------------------------------------------------- the reference


def reference(tree: Tree, namespace: str, name: str, version: str | None) -> str | None:
    """The path the rules pick for the request, or None."""
    ordered: list[tuple[str, Decl, str]] = []  # (path, declaration, stem), precedence order
    for root in ROOTS:
        for rule_no in (1, 2, 3, 4):
            here = []
            for path, decl in tree.items():
                parts = path.split("/")
                stem, extension = os.path.splitext(parts[-1])
                if parts[0] != root or extension not in EXTENSIONS:
                    continue
                if fits(rule_no, parts[1:-1], stem, decl, namespace, name):
                    here.append((stem, EXTENSIONS.index(extension), path, decl))
            if version is not None:  # the file named exactly as asked first
                here.sort(key=lambda item: (item[0] != version, item[0], item[1]))
            else:
                here.sort(key=lambda item: (item[0], item[1]))
            ordered += [(path, decl, stem) for stem, _ext, path, decl in here]
    if version is not None:
        wanted = _version(version)
        for path, decl, _stem in ordered:
            if wanted is not None and Version(decl.version) == wanted:
                return path
        return None
    best: tuple[str, tuple[bool, Version]] | None = None
    for path, decl, _stem in ordered:
        if best is None or _rank(decl.version) > best[1]:
            best = (path, _rank(decl.version))
    return None if best is None else best[0]


def fits(rule_no: int, dirs: list[str], stem: str, decl: Decl, namespace: str, name: str) -> bool:
    """Whether a file at <root>/dirs/stem.yml answers (namespace, name) under rule ``rule_no``."""
    if decl.namespace != namespace or decl.name != name:
        return False
    if rule_no == 1:
        return dirs == [namespace, name] and decl.version == stem
    if rule_no == 2:
        return dirs == [namespace] and stem == name
    if rule_no == 3:
        return dirs == [name] and decl.version == stem
    return dirs == [] and stem == name


# ------------------------------------------------------------------------------- generated trees


@st.composite
def placements(draw: st.DrawFn) -> tuple[str, Decl]:
    """One file placed by a random rule, its content agreeing with what its path states."""
    rule_no = draw(st.integers(1, 4))
    root = draw(st.sampled_from(ROOTS))
    extension = draw(st.sampled_from(EXTENSIONS))
    decl = Decl(
        draw(st.sampled_from(NAMESPACES)),
        draw(st.sampled_from(NAMES)),
        draw(st.sampled_from(VERSIONS)),
    )
    relative = {
        1: f"{decl.namespace}/{decl.name}/{decl.version}",
        2: f"{decl.namespace}/{decl.name}",
        3: f"{decl.name}/{decl.version}",
        4: decl.name,
    }[rule_no]
    return f"{root}/{relative}{extension}", decl


def template_text(decl: Decl, salt: str) -> str:
    return (
        f"namespace: {decl.namespace}\nname: {decl.name}\nversion: '{decl.version}'\n"
        f"description: '{salt}'\nsteps:\n  - name: s\n    handler: demo.work\n"
    )


class FakeTime:
    """Distinct, increasing, long-past timestamps: every write changes some signature, and
    every signature is old enough to be trusted, so the cache keeps all it may keep."""

    def __init__(self) -> None:
        self.next = 10**18  # 2001

    def tick(self) -> int:
        self.next += 10**9
        return self.next


def write(base: Path, path: str, decl: Decl, clock: FakeTime, salt: str = "") -> None:
    target = base / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(template_text(decl, salt), encoding="utf-8")
    touch_up(base, path, clock)


def touch_up(base: Path, path: str, clock: FakeTime) -> None:
    """Give the changed path, and every directory above it, a fresh timestamp."""
    current = base / path
    stamp = clock.tick()
    while True:
        if current.exists():
            os.utime(current, ns=(stamp, stamp))
        if current == base:
            break
        current = current.parent


@pytest.fixture
def scratch() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="fs-templates-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def relative_source(base: Path, source: str | None) -> str:
    assert source is not None
    return Path(source).relative_to(base).as_posix()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(files=st.lists(placements(), max_size=14))
def test_generated_trees_agree_with_the_reference(
    scratch: Path, files: list[tuple[str, Decl]]
) -> None:
    tree: Tree = dict(files)
    base = Path(tempfile.mkdtemp(dir=scratch))
    clock = FakeTime()
    for path, decl in tree.items():
        write(base, path, decl, clock)
    finder = FilesystemTemplateFinder([base / root for root in ROOTS])
    for namespace, name, version in QUERIES:
        expected = reference(tree, namespace, name, version)
        found = finder.find(namespace, name, version)
        got = None if found is None else relative_source(base, found.source)
        assert got == expected, (namespace, name, version, sorted(tree))
        # Asked twice, the cached answer is the same.
        again = finder.find(namespace, name, version)
        assert again is found


class EditedTree(RuleBasedStateMachine):
    """Writes, rewrites and deletes files under one long-lived finder; every answer must match
    the reference for the tree as it is now."""

    def __init__(self) -> None:
        super().__init__()
        self.base = Path(tempfile.mkdtemp(prefix="fs-templates-sm-"))
        self.tree: Tree = {}
        self.clock = FakeTime()
        self.finder = FilesystemTemplateFinder([self.base / root for root in ROOTS])
        self.edits = 0

    def teardown(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)

    @rule(placement=placements())
    def write_file(self, placement: tuple[str, Decl]) -> None:
        path, decl = placement
        self.edits += 1
        self.tree[path] = decl
        write(self.base, path, decl, self.clock, salt=str(self.edits))

    @rule(data=st.data())
    def delete_file(self, data: st.DataObject) -> None:
        if not self.tree:
            return
        path = data.draw(st.sampled_from(sorted(self.tree)))
        del self.tree[path]
        (self.base / path).unlink()
        touch_up(self.base, path, self.clock)

    @rule(query=st.sampled_from(QUERIES))
    def ask(self, query: tuple[str, str, str | None]) -> None:
        found = self.finder.find(*query)
        expected = reference(self.tree, *query)
        got = None if found is None else relative_source(self.base, found.source)
        assert got == expected, (query, sorted(self.tree))
        if found is not None:  # and the content is the current one, not a stale parse
            assert found.description == template_text_salt(self.base, found.source)

    @invariant()
    def latest_agrees_for_one_name(self) -> None:
        found = self.finder.find("a", "x", None)
        expected = reference(self.tree, "a", "x", None)
        assert (None if found is None else relative_source(self.base, found.source)) == expected


def template_text_salt(base: Path, source: str | None) -> str:
    assert source is not None
    for line in Path(source).read_text(encoding="utf-8").splitlines():
        if line.startswith("description: "):
            return line.split(": ", 1)[1].strip("'")
    return ""


EditedTree.TestCase.settings = settings(max_examples=30, stateful_step_count=25, deadline=None)
test_edited_trees_agree_with_the_reference = EditedTree.TestCase
