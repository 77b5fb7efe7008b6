"""Parsed files and directory listings, each valid while its ``stat`` signature is unchanged.

A signature is (mtime_ns, size, inode, is-directory): an edit changes the size or the mtime, an
editor's write-and-rename changes the inode, and a directory's mtime changes whenever an entry is
added, removed or renamed. One hole remains: a file rewritten with the same size within the
filesystem's timestamp granularity keeps its mtime. So a signature is *trusted* only once its mtime
is older than ``racy_window`` (git's "racily clean" problem); until then a cached file is compared
byte for byte and a listing is re-read, which is cheap next to parsing YAML.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

import attrs
from packaging.version import Version
from tasker_core import TaskTemplate, TemplateError, load_template_file

from tasker_fs_templates.layout import parse_version, rank, split_extension

__all__ = ["Clock", "Listing", "Listings", "ParsedFiles", "Signature", "VersionFile", "signature"]

Signature = tuple[int, int, int, bool]
"""(st_mtime_ns, st_size, st_ino, is a directory)."""

Clock = Callable[[], int]
"""Wall-clock time in nanoseconds (``time.time_ns``), comparable with ``st_mtime_ns``."""


def signature(path: str) -> Signature | None:
    """The path's signature, or None when nothing is there (or a parent is not a directory)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise TemplateError(f"cannot read template path: {exc.strerror or exc}", path) from exc
    return (st.st_mtime_ns, st.st_size, st.st_ino, stat.S_ISDIR(st.st_mode))


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


@attrs.define
class _Parsed:
    sig: Signature
    template: TaskTemplate | None
    error: TemplateError | None
    # The bytes that were parsed, kept while the signature is too recent to trust.
    content: bytes | None

    def result(self) -> TaskTemplate:
        if self.error is not None:
            raise self.error.with_traceback(None)
        assert self.template is not None
        return self.template


class ParsedFiles:
    """Templates by file path; a file is parsed again only when its content changed.

    A broken file is cached too (its TemplateError is raised again), so a hot path that keeps
    asking for it does not re-parse it either. ``enabled=False`` keeps nothing (config
    ``templates.cache: false``).
    """

    def __init__(
        self, *, enabled: bool, default_max_attempts: int, racy_window_ns: int, clock: Clock
    ) -> None:
        self.enabled = enabled
        self.default_max_attempts = default_max_attempts
        self.racy_window_ns = racy_window_ns
        self.clock = clock
        self.parses = 0
        self._entries: dict[str, _Parsed] = {}

    def is_racy(self, sig: Signature) -> bool:
        """Whether a change to this path could still go unnoticed by its signature."""
        return self.clock() - sig[0] < self.racy_window_ns

    def load(self, path: str, sig: Signature) -> TaskTemplate:
        """The template in ``path`` (whose current signature is ``sig``); TemplateError if bad."""
        entry = self._entries.get(path)
        if entry is not None and entry.sig == sig:
            if entry.content is None:
                return entry.result()
            if _read_bytes(path) == entry.content:
                if not self.is_racy(sig):
                    entry.content = None
                return entry.result()
        return self._parse(path, sig)

    def _parse(self, path: str, sig: Signature) -> TaskTemplate:
        racy = self.is_racy(sig)
        before = _read_bytes(path) if racy else None
        self.parses += 1
        try:
            template: TaskTemplate | None = load_template_file(
                path, default_max_attempts=self.default_max_attempts
            )
            error = None
        except TemplateError as exc:
            template, error = None, exc
        # Keep the result only if the file held still while it was read.
        steady = signature(path) == sig and (not racy or _read_bytes(path) == before)
        entry = _Parsed(sig, template, error, before)
        if self.enabled and steady:
            self._entries[path] = entry
        else:
            self._entries.pop(path, None)
        return entry.result()

    def clear(self) -> None:
        self._entries.clear()


@attrs.frozen
class VersionFile:
    """A file whose name is a version (rules 1 and 3)."""

    version: Version
    stem: str
    filename: str
    path: str


@attrs.frozen
class Listing:
    """One directory: every entry name (so an absent file costs no ``stat``), and its version
    files, best first and by version for exact lookups."""

    names: frozenset[str]
    ordered: tuple[VersionFile, ...]
    by_version: dict[Version, tuple[VersionFile, ...]]


_EMPTY = Listing(frozenset(), (), {})


def _extension_order(entry: VersionFile) -> tuple[str, int]:
    return (entry.stem, 0 if entry.filename.endswith(".yml") else 1)


def _scan(directory: str) -> Listing:
    files: list[VersionFile] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return _EMPTY
    except OSError as exc:
        raise TemplateError(
            f"cannot list template directory: {exc.strerror or exc}", directory
        ) from exc
    for entry in entries:
        stem = split_extension(entry.name)
        if stem is None:
            continue
        version = parse_version(stem)
        if version is None:
            continue
        try:
            if not entry.is_file():
                continue
        except OSError:
            continue
        files.append(VersionFile(version, stem, entry.name, entry.path))
    # Best rank first; equal versions ("1.0", "1.0.0") by stem, .yml before .yaml. Two stable
    # sorts, because a Version cannot be negated to mix descending and ascending keys.
    files.sort(key=_extension_order)
    files.sort(key=lambda file: rank(file.version), reverse=True)
    by_version: dict[Version, list[VersionFile]] = {}
    for file in files:
        by_version.setdefault(file.version, []).append(file)
    names = frozenset(entry.name for entry in entries)
    return Listing(names, tuple(files), {v: tuple(group) for v, group in by_version.items()})


class Listings:
    """Directory listings, each re-read only when the directory's signature changes.

    Adding, removing or renaming an entry changes the directory's mtime, so a cached listing
    also proves which files are *absent* without a ``stat`` per file.
    """

    def __init__(self, *, enabled: bool, files: ParsedFiles) -> None:
        self.enabled = enabled
        self._files = files
        self.scans = 0
        self._entries: dict[str, tuple[Signature, Listing]] = {}

    def get(self, directory: str, sig: Signature) -> Listing:
        cached = self._entries.get(directory)
        if cached is not None and cached[0] == sig:
            return cached[1]
        self.scans += 1
        listing = _scan(directory)
        if self.enabled and not self._files.is_racy(sig) and signature(directory) == sig:
            self._entries[directory] = (sig, listing)
        return listing

    def clear(self) -> None:
        self._entries.clear()
