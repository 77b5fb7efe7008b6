"""ZAP authentication for CURVE servers: which client public keys may connect.

A CURVE server already refuses any client that does not know its public key; an allow-list
narrows that to named clients. Each ZAP domain (one per listening socket) gets a directory of
client public certificates (``*.key``), read again on every connection attempt, so adding or
deleting a file takes effect for the next connection without a restart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

__all__ = ["PUBLISHERS", "SUBSCRIBERS", "start_authenticator"]

log = logging.getLogger("tasker.zmq")

PUBLISHERS = "tasker.publishers"
"""ZAP domain of the socket publishers connect to (the proxy's frontend)."""
SUBSCRIBERS = "tasker.subscribers"
"""ZAP domain of a socket subscribers connect to (the proxy's backend, a bound sink)."""


class _AllowList:
    """pyzmq's credentials-provider shape: ``callback(domain, z85_key) -> bool``."""

    def __init__(self, directories: Mapping[str, Path | None]) -> None:
        self._directories = dict(directories)

    def callback(self, domain: str, key: bytes) -> bool:
        if domain not in self._directories:
            log.warning("CURVE client refused: unknown ZAP domain %r", domain)
            return False
        directory = self._directories[domain]
        if directory is None:
            return True
        try:
            allowed = zmq.auth.load_certificates(directory)
        except (OSError, ValueError) as exc:
            log.error("CURVE client refused: cannot read allowed keys in %s: %s", directory, exc)
            return False
        if key in allowed:
            return True
        log.warning(
            "CURVE client refused on %s: key %s is not in %s", domain, key.decode(), directory
        )
        return False


def start_authenticator(
    context: zmq.Context[zmq.Socket[bytes]], directories: Mapping[str, Path | None]
) -> ThreadAuthenticator:
    """Start ZAP on ``context``: per domain, clients whose keys are in the directory (None: any).

    Sockets choose their domain with ``socket.zap_domain``; a domain not listed is refused.
    """
    auth = ThreadAuthenticator(context, log=logging.getLogger("tasker.zmq.auth"))
    auth.start()
    provider = _AllowList(directories)
    for domain in directories:
        auth.configure_curve_callback(domain=domain, credentials_provider=provider)
    return auth
