"""The native batch sender: every message of a batch through libzmq under one GIL release.

pyzmq releases the GIL for each frame it sends, and each release wakes one of the engine's
waiting threads; ``tasker_zmq._sender`` sends a whole batch with one release, coalescing
consecutive events of one name into a message as :func:`tasker_zmq.wire.group` does. It must
call the very libzmq that made pyzmq's socket (a socket handle means nothing to another copy), so
:func:`open_native_sender` finds the libzmq this process has already loaded for pyzmq, opens it
without loading anything (``RTLD_NOLOAD``), and checks its version against pyzmq's. When any of
that fails the sink sends through pyzmq instead; the reason is logged once per process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol

import zmq
from tasker_core import Event

__all__ = ["NativeSender", "loaded_libzmq", "open_native_sender"]

log = logging.getLogger("tasker.zmq")

_MAPS = Path("/proc/self/maps")
_logged_fallback = False


class NativeSender(Protocol):
    """What the sink uses of ``tasker_zmq._sender.Sender``."""

    @property
    def path(self) -> str: ...

    def send(
        self,
        topics: list[bytes],
        payloads: list[bytes | None],
        max_events: int,
        max_bytes: int,
    ) -> tuple[int, int, int, int]: ...

    def send_events(
        self,
        events: list[Event],
        payloads: list[bytes | None],
        max_events: int,
        max_bytes: int,
    ) -> tuple[int, int, int, int]: ...


def _mapped_libraries(maps: Path = _MAPS) -> set[Path]:
    """The resolved paths of the libzmq files mapped into this process (Linux; empty elsewhere)."""
    try:
        text = maps.read_text()
    except OSError:
        return set()
    found: set[Path] = set()
    for line in text.splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and Path(fields[5]).name.startswith("libzmq"):
            found.add(Path(fields[5]).resolve())
    return found


def loaded_libzmq(maps: Path = _MAPS) -> Path | None:
    """The libzmq pyzmq uses, if it is loaded in this process and can be told apart.

    pyzmq's wheels bundle theirs in ``pyzmq.libs`` next to the ``zmq`` package; a pyzmq built
    against a system libzmq uses the only one loaded. With several loaded and none of them
    pyzmq's bundled one, there is no telling which made the socket: None.
    """
    loaded = _mapped_libraries(maps)
    bundled = Path(zmq.__file__).resolve().parent.parent / "pyzmq.libs"
    for candidate in sorted(bundled.glob("libzmq*")):
        if candidate.resolve() in loaded:
            return candidate.resolve()
    if len(loaded) == 1:
        return next(iter(loaded))
    return None


def _fallback(reason: str) -> None:
    global _logged_fallback
    if not _logged_fallback:
        _logged_fallback = True
        log.info("zmq sink: sending through pyzmq, one GIL release per frame: %s", reason)


def open_native_sender(
    socket: zmq.Socket[bytes], library: Path | None = None
) -> NativeSender | None:
    """A native sender bound to ``socket``, or None (reason logged once) to send via pyzmq.

    ``library`` overrides the search (tests use it); the file must already be loaded. The
    sender must be used only by the thread that owns ``socket`` at the time (one at a time), and
    only while it is open.
    """
    try:
        from tasker_zmq._sender import Sender
    except ImportError as exc:
        _fallback(f"the native sender is not built ({exc})")
        return None
    path = library if library is not None else loaded_libzmq()
    if path is None:
        _fallback("cannot tell which libzmq file pyzmq loaded")
        return None
    try:
        sender = Sender(str(path), socket.underlying)
    except OSError as exc:
        _fallback(str(exc))
        return None
    if sender.version != zmq.zmq_version_info():
        _fallback(f"{path} is libzmq {sender.version}, pyzmq uses {zmq.zmq_version_info()}")
        return None
    return sender
