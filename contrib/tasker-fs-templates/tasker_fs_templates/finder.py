"""FilesystemTemplateFinder: the search rules of :mod:`tasker_fs_templates.layout`, cached.

Every answer (a template, or "not here") is remembered with what it was derived from: the
signature of each path the search looked at, in order. Asking again re-stats exactly those paths,
two to five per configured directory whatever the number of template files, and returns the
remembered answer when none changed; so a hot path costs microseconds and never parses YAML, yet an
edited, added or removed template is seen on the next call, without a restart.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator

import attrs
from packaging.version import Version
from tasker_core import TaskTemplate

from tasker_fs_templates.cache import Clock, Listing, Listings, ParsedFiles, Signature, signature
from tasker_fs_templates.layout import EXTENSIONS, NAME, accept, parse_version, rank

__all__ = ["DEFAULT_RACY_WINDOW", "FilesystemTemplateFinder", "FinderStats"]

DEFAULT_RACY_WINDOW = 2.0
"""Seconds after a change during which a signature is not trusted alone (FAT's 2 s mtime
granularity is the coarsest in common use; ext4, xfs, btrfs, APFS and NTFS are far finer)."""

DEFAULT_MAX_ANSWERS = 10_000
"""Remembered answers before the memory is reset: requests for ever new versions that do not
exist (each answer is "not here") must not grow a long-running worker without bound."""

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
        """Whether every observed path still has its signature: the whole cost of a hit.

        ``signature()`` inlined, as this runs on every cached lookup; the inode makes a file
        turned into a directory (or back) a change too.
        """
        for path, sig in self.observed:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                if sig is None:
                    continue
                return False
            except OSError:
                return False  # unreadable now: search again, which reports it
            if (
                sig is None
                or st.st_mtime_ns != sig[0]
                or st.st_size != sig[1]
                or st.st_ino != sig[2]
            ):
                return False
        return True


class _Search:
    """The paths one search looked at (each once), and whether their signatures can be trusted.

    Directories are read through their cached listing, so a file that is not there costs no
    ``stat`` of its own: its directory's signature already proves it absent.
    """

    def __init__(self, files: ParsedFiles, listings: Listings) -> None:
        self.files = files
        self.listings = listings
        self.observed: dict[str, Signature | None] = {}
        self.trusted = True

    def stat(self, path: str) -> Signature | None:
        if path in self.observed:
            return self.observed[path]
        sig = signature(path)
        self.observed[path] = sig
        if sig is not None and self.files.is_racy(sig):
            self.trusted = False
        return sig

    def listing(self, directory: str) -> Listing | None:
        sig = self.stat(directory)
        if sig is None or not sig[3]:
            return None
        return self.listings.get(directory, sig)


@attrs.frozen
class _Place:
    """Where one rule looks: a directory of version files, or one file that exists."""

    rule: int
    parts: tuple[str, ...]  # the path below the templates directory, without the file name
    listing: Listing | None = None
    path: str = ""


class FilesystemTemplateFinder:
    """Finds templates in YAML files under ``paths`` (a :class:`tasker_core.TemplateFinder`).

    ``paths`` are searched in order and used as given: relative ones resolve against the current
    directory at each lookup. ``cache=False`` re-reads every file on every lookup.
    ``default_max_attempts`` is handed to the template loader (config
    ``execution.default_max_attempts``). ``max_answers`` bounds the answers kept;
    ``racy_window`` and ``clock`` exist for tests.
    """

    def __init__(
        self,
        paths: Iterable[str | os.PathLike[str]],
        *,
        cache: bool = True,
        default_max_attempts: int = 3,
        racy_window: float = DEFAULT_RACY_WINDOW,
        clock: Clock = time.time_ns,
        max_answers: int = DEFAULT_MAX_ANSWERS,
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
        self.max_answers = max_answers
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
        search = _Search(self.files, self.listings)
        if wanted is None:
            template = self._latest(namespace, name, search)
        else:
            template = self._exact(namespace, name, wanted, version, search)
        if self.cache and search.trusted:
            if len(self._answers) >= self.max_answers:
                self._answers.clear()
            self._answers[key] = _Answer(template, tuple(search.observed.items()))
        else:
            self._answers.pop(key, None)
        return template

    def _places(self, namespace: str, name: str, search: _Search) -> Iterator[_Place]:
        """Every place a rule looks, in order of precedence, skipping what is not there.

        Rule 1's directory is stat-ed directly (the usual layout: an exact hit then costs two
        ``stat`` calls); the rest is read from the listings of ``<dir>`` and ``<dir>/{namespace}``.
        """
        for root in self.paths:
            versions = search.listing(os.path.join(root, namespace, name))
            if versions is not None:
                yield _Place(1, (namespace, name), listing=versions)
            top = search.listing(root)
            if top is None:
                continue
            if namespace in top.names:
                inner = search.listing(os.path.join(root, namespace))
                for filename in _filenames(name, inner):
                    yield _Place(2, (namespace,), path=os.path.join(root, namespace, filename))
            if name in top.names:
                versions = search.listing(os.path.join(root, name))
                if versions is not None:
                    yield _Place(3, (name,), listing=versions)
            for filename in _filenames(name, top):
                yield _Place(4, (), path=os.path.join(root, filename))

    def _candidate(
        self, place: _Place, path: str, search: _Search, namespace: str
    ) -> TaskTemplate | None:
        """The template in ``path`` if it answers for ``namespace`` under the place's rule."""
        sig = search.stat(path)
        if sig is None or sig[3]:
            return None
        template = self.files.load(path, sig)
        return accept(path, (*place.parts, os.path.basename(path)), place.rule, namespace, template)

    def _exact(
        self, namespace: str, name: str, wanted: Version, text: str | None, search: _Search
    ) -> TaskTemplate | None:
        """The first file, in order of precedence, holding version ``wanted``."""
        for place in self._places(namespace, name, search):
            if place.listing is None:
                found = self._candidate(place, place.path, search, namespace)
                if found is not None and found.parsed_version == wanted:
                    return found
                continue
            group = place.listing.by_version.get(wanted, ())
            # The file named exactly as asked comes first among equal versions (1.0, 1.0.0).
            for file in sorted(group, key=lambda file: file.stem != text):
                found = self._candidate(place, file.path, search, namespace)
                if found is not None:
                    return found
        return None

    def _latest(self, namespace: str, name: str, search: _Search) -> TaskTemplate | None:
        """The highest-ranked version anywhere; among equals, the first in precedence."""
        best: TaskTemplate | None = None
        best_rank: tuple[bool, Version] | None = None
        for place in self._places(namespace, name, search):
            if place.listing is None:
                found = self._candidate(place, place.path, search, namespace)
                found_rank = None if found is None else rank(found.parsed_version)
                if found_rank is not None and (best_rank is None or found_rank > best_rank):
                    best, best_rank = found, found_rank
                continue
            for file in place.listing.ordered:
                if best_rank is not None and rank(file.version) <= best_rank:
                    break
                found = self._candidate(place, file.path, search, namespace)
                if found is not None:
                    best, best_rank = found, rank(file.version)
                    break
        return best


def _filenames(name: str, listing: Listing | None) -> list[str]:
    """``name.yml`` then ``name.yaml``, those that the listing holds."""
    if listing is None:
        return []
    return [name + ext for ext in EXTENSIONS if name + ext in listing.names]
