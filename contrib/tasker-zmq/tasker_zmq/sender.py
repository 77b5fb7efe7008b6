"""The native publisher: a thread that sends queued events through libzmq without the GIL.

The engine's threads hand ``tasker_zmq._sender.Publisher.publish`` each batch of events, which
skips the unwanted ones and encodes the rest into messages (:func:`tasker_core.encode_event_runs`
cuts runs of one name by the rule of :func:`tasker_zmq.wire.group`), and return; the publisher's
own thread, which owns the socket from then on, sends them and reads the socket's subscriptions,
never taking the GIL. A Python sending thread would take the GIL from the engine for every batch.
It must call the very libzmq that made pyzmq's socket (a socket handle means nothing to another
copy), so :func:`open_native_publisher` finds the libzmq this process has already loaded for pyzmq,
opens it without loading anything (``RTLD_NOLOAD``), and checks its version against pyzmq's. When
any of that fails the sink sends through pyzmq instead; the reason is logged once per process.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:  # the extension may not be built; its stub (_sender.pyi) types it anyway
    from tasker_zmq._sender import Publisher as NativePublisher

__all__ = ["loaded_libzmq", "open_native_publisher"]

log = logging.getLogger("tasker.zmq")

_MAPS = Path("/proc/self/maps")
_logged_fallback = False


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
        log.info("zmq sink: sending through pyzmq from a Python thread: %s", reason)


def open_native_publisher(
    socket: zmq.Socket[bytes],
    *,
    max_events: int,
    max_bytes: int,
    capacity: int,
    library: Path | None = None,
) -> NativePublisher | None:
    """A native publisher that has taken ``socket`` over, or None (reason logged once) to send
    through pyzmq.

    At most ``max_events`` events and ``max_bytes`` bytes of payload per message; at most
    ``capacity`` events queued. ``library`` overrides the search (tests use it); the file must
    already be loaded. The publisher comes started: until its ``stop`` returns the socket is its
    thread's alone, and the caller must neither use nor close it.
    """
    try:
        from tasker_zmq._sender import Publisher
    except ImportError as exc:
        _fallback(f"the native publisher is not built ({exc})")
        return None
    path = library if library is not None else loaded_libzmq()
    if path is None:
        _fallback("cannot tell which libzmq file pyzmq loaded")
        return None
    try:
        publisher = Publisher(str(path), socket.underlying, max_events, max_bytes, capacity)
    except OSError as exc:
        _fallback(str(exc))
        return None
    if publisher.version != zmq.zmq_version_info():
        _fallback(f"{path} is libzmq {publisher.version}, pyzmq uses {zmq.zmq_version_info()}")
        return None
    publisher.start()
    return publisher
