"""Retry delays: the native backoff, keyed per (task, step) so jitter reproduces across runs."""

from __future__ import annotations

import hashlib

from tasker_core import _native


def jitter_key(task_id: str, step: str) -> int:
    """A stable unsigned 64-bit key for one step of one task (same in every store/process)."""
    digest = hashlib.blake2b(f"{task_id}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def retry_delay(
    *,
    attempt: int,
    base: float,
    max_delay: float,
    jitter: float,
    seed: int,
    task_id: str,
    step: str,
    retry_after: float | None = None,
) -> float:
    """Seconds to wait after failed attempt ``attempt``; a handler's ``retry_after`` wins."""
    return _native.backoff_delay(
        attempt, base, max_delay, jitter, jitter_key(task_id, step), seed, retry_after
    )
