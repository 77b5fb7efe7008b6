"""The event bus proxy: an XSUB/XPUB forwarder where publishers and subscribers meet.

Every worker's sink connects to the *frontend* (XSUB) and every subscriber to the *backend*
(XPUB), so any number of each find each other at two well-known addresses without knowing one
another. Subscriptions travel upstream (subscriber -> XPUB -> XSUB -> each publisher), which is
what lets publishers drop unwanted events at the source. Forwarding runs in libzmq
(``zmq.proxy_steerable``) on a thread of its own; the control socket stops it and reads its
counters.

With CURVE the proxy is the server on both sockets (one key pair), and each side may be limited
to a directory of allowed client keys (publishers and subscribers separately, so a key that may
read the bus cannot inject events into it).
"""

from __future__ import annotations

import struct
import threading
import uuid
from pathlib import Path

import attrs
import zmq
from zmq.auth.thread import ThreadAuthenticator

from tasker_zmq.auth import PUBLISHERS, SUBSCRIBERS, start_authenticator
from tasker_zmq.keys import KeyPair

__all__ = ["Proxy", "ProxyCounters"]

_START_TIMEOUT = 30.0
_CONTROL_TIMEOUT_MS = 5000


@attrs.frozen
class ProxyCounters:
    """Frames and bytes through each side, as libzmq counts them.

    A message is two frames and carries one or more events; the proxy forwards messages whole
    without reading them, so it counts messages, not events.
    """

    frontend_frames_in: int
    frontend_bytes_in: int
    frontend_frames_out: int
    frontend_bytes_out: int
    backend_frames_in: int
    backend_bytes_in: int
    backend_frames_out: int
    backend_bytes_out: int

    @property
    def messages_forwarded(self) -> int:
        return self.backend_frames_out // 2


class Proxy:
    """Bind both sockets on :meth:`start`, forward until :meth:`stop`.

    ``frontend``/``backend`` may use port ``*``; :attr:`endpoints` then holds the ports bound.
    """

    def __init__(
        self,
        frontend: str,
        backend: str,
        *,
        hwm: int = 10000,
        server_key: KeyPair | None = None,
        publishers: Path | None = None,
        subscribers: Path | None = None,
    ) -> None:
        if server_key is None and (publishers is not None or subscribers is not None):
            raise ValueError("allowed-key directories need CURVE: give the proxy a server key")
        self.frontend = frontend
        self.backend = backend
        self.hwm = hwm
        self._server_key = server_key
        self._allowed = {PUBLISHERS: publishers, SUBSCRIBERS: subscribers}
        self._control = f"inproc://tasker-proxy-{uuid.uuid4().hex}"
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.endpoints: tuple[str, str] = (frontend, backend)

    def start(self) -> tuple[str, str]:
        """Bind and start forwarding; returns (frontend, backend) as bound. Raises bind errors."""
        self._thread = threading.Thread(target=self._run, name="tasker-zmq-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT):
            raise RuntimeError("the proxy thread did not start")
        if self._error is not None:
            self._thread.join()
            self._context.term()
            raise self._error
        return self.endpoints

    def stop(self) -> ProxyCounters | None:
        """Stop forwarding, close both sockets; the final counters (None if it never ran)."""
        if self._thread is None or not self._thread.is_alive():
            return None

        def terminate(control: zmq.Socket[bytes]) -> ProxyCounters | None:
            try:
                counters: ProxyCounters | None = _read_counters(control)
            except zmq.Again:
                counters = None
            control.send(b"TERMINATE")
            return counters

        # A control socket of the caller's own (sockets never cross threads); a PAIR takes one
        # peer, which is why this is the only place that talks to the forwarder.
        control: zmq.Socket[bytes] = self._context.socket(zmq.PAIR)
        try:
            control.setsockopt(zmq.RCVTIMEO, _CONTROL_TIMEOUT_MS)
            control.connect(self._control)
            counters = terminate(control)
            # Join before closing: closing at once would throw away the unread TERMINATE.
            self._thread.join()
        finally:
            control.close(linger=0)
        self._context.term()
        return counters

    def _run(self) -> None:
        sockets: list[zmq.Socket[bytes]] = []
        auth: ThreadAuthenticator | None = None
        try:
            try:
                frontend, backend, control = self._open(sockets)
                if self._server_key is not None:
                    auth = start_authenticator(self._context, self._allowed)
                frontend.bind(self.frontend)
                backend.bind(self.backend)
                self.endpoints = (
                    frontend.getsockopt_string(zmq.LAST_ENDPOINT),
                    backend.getsockopt_string(zmq.LAST_ENDPOINT),
                )
            except BaseException as exc:
                self._error = exc
                return
            finally:
                self._ready.set()
            zmq.proxy_steerable(frontend, backend, None, control)
        finally:
            for socket in sockets:
                socket.close(linger=0)
            if auth is not None:
                auth.stop()

    def _open(
        self, sockets: list[zmq.Socket[bytes]]
    ) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes], zmq.Socket[bytes]]:
        frontend: zmq.Socket[bytes] = self._context.socket(zmq.XSUB)
        sockets.append(frontend)
        backend: zmq.Socket[bytes] = self._context.socket(zmq.XPUB)
        sockets.append(backend)
        control: zmq.Socket[bytes] = self._context.socket(zmq.PAIR)
        sockets.append(control)
        control.bind(self._control)
        frontend.setsockopt(zmq.RCVHWM, self.hwm)
        backend.setsockopt(zmq.SNDHWM, self.hwm)
        key = self._server_key
        if key is not None:
            for socket, domain in ((frontend, PUBLISHERS), (backend, SUBSCRIBERS)):
                socket.curve_secretkey = key.secret
                socket.curve_publickey = key.public
                socket.curve_server = True
                socket.zap_domain = domain.encode()
        return frontend, backend, control


def _read_counters(control: zmq.Socket[bytes]) -> ProxyCounters:
    control.send(b"STATISTICS")
    frames = control.recv_multipart()
    values = [struct.unpack("=Q", frame)[0] for frame in frames]
    return ProxyCounters(*values)
