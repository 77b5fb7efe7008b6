"""AuditSink: appends each event as one JSON line; rotates files by size.

Rotation works like logging's RotatingFileHandler (``path`` -> ``path.1`` -> ... ->
``path.N``, the oldest dropped), but is decided per event before it is written, so no line is
ever split across files and every file but a lone oversized event stays within ``max_bytes``.
The engine calls ``publish`` from one event thread, so the sink needs no lock of its own.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from tasker_core import Event

from tasker_example_audit.options import SECTION, AuditOptions

__all__ = ["AuditSink", "audit_files", "read_audit_log"]


def _line(event: Event) -> bytes:
    record = event.to_dict()
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


class AuditSink:
    """An EventSink writing JSON lines to ``options.path`` with size-based rotation."""

    name = SECTION

    def __init__(self, options: AuditOptions) -> None:
        self.options = options
        self.path = Path(options.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] | None = None
        self._size = 0
        self.rotations = 0

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open across batches
            self._size = self._file.tell()
        return self._file

    def _rotate(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        backups = self.options.backups
        if backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            # Shift the existing backups up by one, newest last so nothing is overwritten.
            for n in sorted(_backup_numbers(self.path), reverse=True):
                older = self.path.with_name(f"{self.path.name}.{n}")
                if n >= backups:
                    older.unlink()
                else:
                    os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
            os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self.rotations += 1

    def publish(self, events: Sequence[Event]) -> None:
        if not events:
            return
        out = self._open()
        for event in events:
            line = _line(event)
            if self._size and self._size + len(line) > self.options.max_bytes:
                out.flush()
                self._rotate()
                out = self._open()
            out.write(line)
            self._size += len(line)
        out.flush()
        if self.options.fsync:
            os.fsync(out.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            if self.options.fsync:
                os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def files(self) -> list[Path]:
        """The audit files that exist, oldest first (``path.N`` .. ``path.1``, ``path``)."""
        return audit_files(self.path, self.options.backups)


def _backup_numbers(live: Path) -> list[int]:
    """N of every ``live.N`` file that exists (one directory listing, whatever ``backups`` is)."""
    prefix = live.name + "."
    try:
        names = os.listdir(live.parent)
    except FileNotFoundError:
        return []
    return [
        int(name[len(prefix) :])
        for name in names
        if name.startswith(prefix) and name[len(prefix) :].isdigit()
    ]


def audit_files(path: str | os.PathLike[str], backups: int) -> list[Path]:
    """The audit files of a log at ``path`` keeping ``backups`` rotated files, oldest first."""
    live = Path(path)
    kept = sorted((n for n in _backup_numbers(live) if 1 <= n <= backups), reverse=True)
    rotated = [live.with_name(f"{live.name}.{n}") for n in kept]
    return [*rotated, live] if live.exists() else rotated


def read_audit_log(path: str | os.PathLike[str], backups: int) -> list[dict[str, Any]]:
    """Every event still on disk, oldest first, as the dicts that were written."""
    out: list[dict[str, Any]] = []
    for file in audit_files(path, backups):
        with open(file, encoding="utf-8") as f:
            out.extend(json.loads(line) for line in f if line.strip())
    return out
