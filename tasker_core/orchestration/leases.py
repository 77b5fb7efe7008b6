"""Worker identity and liveness.

A lease owner is ``host:pid:nonce``. When a restarted engine finds a step leased by a process of
the same host that no longer exists, the lease is dead now rather than when it expires: a run
killed with SIGKILL resumes at once instead of waiting out the lease.
"""

from __future__ import annotations

import os
import socket
import uuid


def new_owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str | None) -> bool:
    """True only when ``owner`` is provably gone: same host, and its pid does not exist."""
    if not owner:
        return True
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != socket.gethostname():
        return False
    try:
        pid = int(parts[1])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # another engine in this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
