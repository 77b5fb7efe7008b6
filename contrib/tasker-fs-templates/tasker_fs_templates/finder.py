"""FilesystemTemplateFinder: the search rules of :mod:`tasker_fs_templates.layout`, cached.

Every answer (a template, or "not here") is remembered with what it was derived from: the
signature of each path the search looked at, in order. Asking again re-stats exactly those paths,
a handful per configured directory whatever the number of template files, and returns the
remembered answer when none changed; so a hot path costs microseconds and never parses YAML, yet an
edited, added or removed template is seen on the next call, without a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

import attrs
from packaging.version import Version
from tasker_core import TaskTemplate

from tasker_fs_templates.cache import Clock, Listings, ParsedFiles, Signature, signature
from tasker_fs_templates.layout import EXTENSIONS, NAME, accept, parse_version, rank

__all__ = ["DEFAULT_RACY_WINDOW", "FilesystemTemplateFinder", "FinderStats"]

DEFAULT_RACY_WINDOW = 2.0
"""Seconds after a change during which a signature is not trusted alone (FAT's 2 s mtime
granularity is the coarsest in common use; ext4, xfs, btrfs, APFS and NTFS are far finer)."""

_Key = tuple[str, str, str | None]
_Observed = tuple[tuple[str, Signature | None], ...]


@attrs.define
class FinderStats:
    """Counters for tests and benchmarks: how often the cache answered, and what it cost."""

    hits: int = 0
    searches: int = 0


@attrs.frozen
class _Answer:
    template: TaskTemplate | None
    observed: _Observed

    def still_valid(self) -> bool:
        # A plain loop: this is the hot path, and all() over a generator costs more.
        for path, sig in self.observed:  # noqa: SIM110
            if signature(path) != sig:
                return False
        return True


class _Search:
    """The paths one search looked at, and whether their signatures can be trusted yet."""

    def __init__(self, files: ParsedFiles) -> None:
        self.files = files
        self.observed: list[tuple[str, Signature | None]] = []
        self.trusted = True

    def stat(self, path: str) -> Signature | None:
        sig = signature(path)
        self.observed.append((path, sig))
        if sig is not None and self.files.is_racy(sig):
            self.trusted = False
        return sig


@attrs.frozen
class _Place:
    """Where one rule looks in one directory: a directory of version files, or two file names."""

    rule: int
    directory: str | None
    files: tuple[str, ...]
    parts: tuple[str, ...]  # the path below the templates directory, without the file name


class FilesystemTemplateFinder:
    """Finds templates in YAML files under ``paths`` (a :class:`tasker_core.TemplateFinder`).

    ``paths`` are searched in order and used as given: relative ones resolve against the current
    directory at each lookup. ``cache=False`` re-reads every file on every lookup.
    ``default_max_attempts`` is handed to the template loader (config
    ``execution.default_max_attempts``). ``racy_window`` and ``clock`` exist for tests.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        cache: bool = True,
        default_max_attempts: int = 3,
        racy_window: float = DEFAULT_RACY_WINDOW,
        clock: Clock = time.time_ns,
    ) -> None:
        self.paths: tuple[str, ...] = tuple(os.fspath(path) for path in paths)
        self.cache = cache
        self.stats = FinderStats()
        self.files = ParsedFiles(
            enabled=cache,
            default_max_attempts=default_max_attempts,
            racy_window_ns=int(racy_window * 1e9),
            clock=clock,
        )
        self.listings = Listings(enabled=cache, files=self.files)
        self._answers: dict[_Key, _Answer] = {}

    def find(self, namespace: str, name: str, version: str | None) -> TaskTemplate | None:
        """The template (the latest when ``version`` is None), or None if no file holds it.

        Raises TemplateError (file:line:column) when the file that would answer is invalid or
        contradicts its path.
        """
        key = (namespace, name, version)
        answer = self._answers.get(key)
        if answer is not None and answer.still_valid():
            self.stats.hits += 1
            return answer.template
        return self._search(key)

    def clear(self) -> None:
        """Forget everything cached (files are re-read on the next lookup)."""
        self._answers.clear()
        self.files.clear()
        self.listings.clear()

    # ----------------------------------------------------------------------------- searching

    def _search(self, key: _Key) -> TaskTemplate | None:
        namespace, name, version = key
        self.stats.searches += 1
        if not (NAME.match(namespace) and NAME.match(name)):
            return None
        wanted = None if version is None else parse_version(version)
        if version is not None and wanted is None:
            return None
        search = _Search(self.files)
        if wanted is None:
            template = self._latest(namespace, name, search)
        else:
            template = self._exact(namespace, name, wanted, version, search)
        if self.cache and search.trusted:
            self._answers[key] = _Answer(template, tuple(search.observed))
        else:
            self._answers.pop(key, None)
        return template

    def _places(self, namespace: str, name: str) -> Iterable[_Place]:
        """Every place a rule looks, in order of precedence."""
        for root in self.paths:
            yield _Place(1, os.path.join(root, namespace, name), (), (namespace, name))
            yield _Place(2, None, _named(os.path.join(root, namespace), name), (namespace,))
            yield _Place(3, os.path.join(root, name), (), (name,))
            yield _Place(4, None, _named(root, name), ())

    def _candidate(
        self, place: _Place, path: str, sig: Signature, namespace: str
    ) -> TaskTemplate | None:
        template = self.files.load(path, sig)
        return accept(path, (*place.parts, os.path.basename(path)), place.rule, namespace, template)

    def _exact(
        self, namespace: str, name: str, wanted: Version, text: str | None, search: _Search
    ) -> TaskTemplate | None:
        """The first file, in order of precedence, holding version ``wanted``."""
        for place in self._places(namespace, name):
            if place.directory is not None:
                sig = search.stat(place.directory)
                if sig is None or not sig[3]:
                    continue
                group = self.listings.get(place.directory, sig).by_version.get(wanted, ())
                # The file named exactly as asked comes first among equal versions (1.0, 1.0.0).
                for file in sorted(group, key=lambda file: file.stem != text):
                    file_sig = search.stat(file.path)
                    if file_sig is None or file_sig[3]:
                        continue
                    found = self._candidate(place, file.path, file_sig, namespace)
                    if found is not None:
                        return found
                continue
            for path in place.files:
                file_sig = search.stat(path)
                if file_sig is None or file_sig[3]:
                    continue
                found = self._candidate(place, path, file_sig, namespace)
                if found is not None and found.parsed_version == wanted:
                    return found
        return None

    def _latest(self, namespace: str, name: str, search: _Search) -> TaskTemplate | None:
        """The highest-ranked version anywhere; among equals, the first in precedence."""
        best: TaskTemplate | None = None
        best_rank: tuple[bool, Version] | None = None
        for place in self._places(namespace, name):
            if place.directory is not None:
                sig = search.stat(place.directory)
                if sig is None or not sig[3]:
                    continue
                for file in self.listings.get(place.directory, sig).ordered:
                    if best_rank is not None and rank(file.version) <= best_rank:
                        break
                    file_sig = search.stat(file.path)
                    if file_sig is None or file_sig[3]:
                        continue
                    found = self._candidate(place, file.path, file_sig, namespace)
                    if found is not None:
                        best, best_rank = found, rank(file.version)
                        break
                continue
            for path in place.files:
                file_sig = search.stat(path)
                if file_sig is None or file_sig[3]:
                    continue
                found = self._candidate(place, path, file_sig, namespace)
                if found is None:
                    continue
                found_rank = rank(found.parsed_version)
                if best_rank is None or found_rank > best_rank:
                    best, best_rank = found, found_rank
        return best


def _named(directory: str, name: str) -> tuple[str, ...]:
    return tuple(os.path.join(directory, name + extension) for extension in EXTENSIONS)
