"""The sink's settings, read from the ``events.audit`` section of tasker.yaml.

tasker hands every sink its own sub-section of ``events`` as ``config.events.sink_options``;
validating it is the plugin's job, and errors name the key path like tasker's own do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
from tasker_core import ConfigError

__all__ = ["DEFAULTS", "SECTION", "AuditOptions", "parse_size"]

SECTION = "audit"
"""Also the sink's name and the plugin's short name."""

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3})
_SIZE = re.compile(r"\s*(\d+)\s*([a-zA-Z]*)\s*\Z")


def parse_size(value: object, key: str) -> int:
    """Bytes from ``10485760``, ``"10MiB"``, ``"500 KB"``; ConfigError naming ``key`` if not."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (m := _SIZE.match(value)) and m[2].lower() in _UNITS:
        size = int(m[1]) * _UNITS[m[2].lower()]
    else:
        raise ConfigError(
            f"expected a size like 10485760, '500KB' or '10MiB', got {value!r}",
            key_path=f"events.{SECTION}.{key}",
        )
    if size < 1:
        raise ConfigError(f"must be at least 1 byte, got {value!r}", f"events.{SECTION}.{key}")
    return size


@attrs.frozen
class AuditOptions:
    """Where the log goes and when it rotates.

    ``path``: the live file (parent directories are created). ``max_bytes``: a file is rotated
    before a write would take it past this size (a single event larger than it still gets a file
    of its own). ``backups``: rotated files kept as ``path.1`` (newest) .. ``path.N``; 0 keeps
    none. ``fsync``: fsync after every batch, for audit trails that must survive a power cut.
    """

    path: str = "tasker-audit.jsonl"
    max_bytes: int = 10 * 1024**2
    backups: int = 5
    fsync: bool = False

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AuditOptions:
        """Validated options from the ``events.audit`` mapping (missing keys take defaults)."""
        known = {f.name for f in attrs.fields(cls)}
        for key in data:
            if key not in known:
                raise ConfigError(
                    f"unknown key; known keys: {', '.join(sorted(known))}",
                    f"events.{SECTION}.{key}",
                )
        values: dict[str, Any] = {}
        if "path" in data:
            if not isinstance(data["path"], str) or not data["path"]:
                raise ConfigError(
                    f"expected a file path, got {data['path']!r}", f"events.{SECTION}.path"
                )
            values["path"] = data["path"]
        if "max_bytes" in data:
            values["max_bytes"] = parse_size(data["max_bytes"], "max_bytes")
        if "backups" in data:
            backups = data["backups"]
            if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
                raise ConfigError(
                    f"expected a whole number >= 0, got {backups!r}", f"events.{SECTION}.backups"
                )
            values["backups"] = backups
        if "fsync" in data:
            if not isinstance(data["fsync"], bool):
                raise ConfigError(
                    f"expected true or false, got {data['fsync']!r}", f"events.{SECTION}.fsync"
                )
            values["fsync"] = data["fsync"]
        return cls(**values)


DEFAULTS = AuditOptions()
