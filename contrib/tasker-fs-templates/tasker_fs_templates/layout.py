"""The search rules: where a template may live, and what a file's place says about its content.

Inside each configured directory ``<dir>``, in this order of precedence (``.yml`` before
``.yaml`` at every step)::

    rule 1   <dir>/{namespace}/{name}/{version}.yml    the path says namespace, name, version
    rule 2   <dir>/{namespace}/{name}.yml              namespace and name (version inside)
    rule 3   <dir>/{name}/{version}.yml                name and version (namespace inside)
    rule 4   <dir>/{name}.yml                          name (namespace and version inside)

What the path says must agree with the file: a file that contradicts every reading of its path is
an error naming both sides, never skipped, so a typo in a version cannot hide a template. What the
path leaves out (the namespace in rules 3 and 4) only filters: ``<dir>/order.yml`` declaring
namespace ``billing`` simply is not ``shop/order``. ``<dir>/a/b.yml`` reads as rule 2 or 3 (``b``
may be a name or a version like ``v2``); the content says which.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import attrs
from packaging.version import InvalidVersion, Version
from tasker_core import TaskTemplate, TemplateError

__all__ = [
    "EXTENSIONS",
    "NAME",
    "PATTERNS",
    "Claim",
    "accept",
    "check_placement",
    "claims",
    "parse_version",
    "rank",
    "split_extension",
]

EXTENSIONS = (".yml", ".yaml")
"""Template file extensions, in order of precedence."""

# The template name rule of tasker_core.templates: names are path components here, so this also
# keeps a request like "../x" from ever reaching the filesystem.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")

PATTERNS = {
    1: "<dir>/{namespace}/{name}/{version}.yml",
    2: "<dir>/{namespace}/{name}.yml",
    3: "<dir>/{name}/{version}.yml",
    4: "<dir>/{name}.yml",
}


def parse_version(text: str) -> Version | None:
    """``text`` as a version, or None when it is not one."""
    try:
        return Version(text)
    except InvalidVersion:
        return None


def rank(version: Version) -> tuple[bool, Version]:
    """Sort key for "latest": final releases beat pre-releases, then the higher version wins.

    The same rule as the in-process registry, so a template moved between the two keeps its
    meaning of "latest".
    """
    return (not version.is_prerelease, version)


def split_extension(filename: str) -> str | None:
    """The stem of a template file name, or None for any other file (hidden files included)."""
    if filename.startswith("."):
        return None
    for extension in EXTENSIONS:
        if filename.endswith(extension) and len(filename) > len(extension):
            return filename[: -len(extension)]
    return None


@attrs.frozen
class Claim:
    """One reading of a file's path: the rule and the fields the path states (None: not stated)."""

    rule: int
    namespace: str | None
    name: str
    version: str | None

    def conflicts(self, template: TaskTemplate) -> list[tuple[str, str, str]]:
        """(field, path says, file says) for each stated field the file contradicts.

        Versions must match as written: the file name is what an exact lookup finds, so
        ``1.0.yml`` declaring ``1.0.0`` would be found under one name and report another.
        """
        found = []
        for field, said in (
            ("namespace", self.namespace),
            ("name", self.name),
            ("version", self.version),
        ):
            actual = getattr(template, field)
            if said is not None and actual != said:
                found.append((field, said, actual))
        return found


def claims(parts: Sequence[str]) -> list[Claim]:
    """Every reading of a path given as its parts below a templates directory, by rule."""
    stem = split_extension(parts[-1]) if parts else None
    if stem is None:
        return []
    dirs = parts[:-1]
    if not all(NAME.match(part) for part in dirs):
        return []
    is_name = NAME.match(stem) is not None
    is_version = parse_version(stem) is not None
    found: list[Claim] = []
    if len(dirs) == 2 and is_version:
        found.append(Claim(1, dirs[0], dirs[1], stem))
    elif len(dirs) == 1:
        if is_name:
            found.append(Claim(2, dirs[0], stem, None))
        if is_version:
            found.append(Claim(3, None, dirs[0], stem))
    elif not dirs and is_name:
        found.append(Claim(4, None, stem, None))
    return found


def accept(
    path: str, parts: Sequence[str], rule: int, namespace: str, template: TaskTemplate
) -> TaskTemplate | None:
    """``template`` if the file at ``path`` is a match under ``rule`` for ``namespace``.

    None when the file belongs to another reading of its path, or (rules 3 and 4) declares
    another namespace. Raises TemplateError when it contradicts every reading.
    """
    readings = claims(parts)
    primary = next(claim for claim in readings if claim.rule == rule)
    if not primary.conflicts(template):
        return template if template.namespace == namespace else None
    if any(not claim.conflicts(template) for claim in readings):
        return None
    raise mismatch_error(path, primary, template)


def check_placement(root: str, path: str, template: TaskTemplate) -> None:
    """Raise TemplateError unless ``path``, a file below the templates directory ``root``, is
    where the finder looks for ``template``: a file outside every rule, or contradicting its
    path, is never found."""
    relative = os.path.relpath(os.path.abspath(path), os.path.abspath(root))
    readings = claims(relative.split(os.sep))
    if not readings:
        raise TemplateError(
            f"the finder never reads this file: {relative!r} fits none of the layouts "
            f"{', '.join(PATTERNS.values())} below {root!r} (names: letters, digits, '_' and "
            "'-'; versions like 1.2.0)",
            path,
        )
    if any(not claim.conflicts(template) for claim in readings):
        return
    closest = min(readings, key=lambda claim: len(claim.conflicts(template)))
    raise mismatch_error(path, closest, template)


def mismatch_error(path: str, claim: Claim, template: TaskTemplate) -> TemplateError:
    """The error for a file that contradicts its path, positioned at the first wrong key."""
    conflicts = claim.conflicts(template)
    details = "; ".join(
        f"path says {field} {said!r}, file says {actual!r}" for field, said, actual in conflicts
    )
    field = conflicts[0][0]
    line, column = _key_position(path, field)
    return TemplateError(
        f"the file does not match its path: {details} (read as {PATTERNS[claim.rule]}; "
        f"rename the file or change its {field!r})",
        path,
        line,
        column,
    )


def _key_position(path: str, key: str) -> tuple[int | None, int | None]:
    """1-based line and column of a top-level ``key:``'s value; (None, None) if not found."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError):
        return None, None
    match = re.search(rf"^{re.escape(key)}[ \t]*:[ \t]*", text, re.MULTILINE)
    if match is None:
        return None, None
    line = text.count("\n", 0, match.start()) + 1
    return line, match.end() - match.start() + 1
