"""The pytest11 entry point: registers the kit's hypothesis profiles and loads the chosen one.

Profiles: ``dev`` (the local default feel), ``ci`` (many derandomized examples, no deadline) and
``fast`` (a quick smoke run). ``HYPOTHESIS_PROFILE=ci`` selects one; hypothesis's own
``--hypothesis-profile`` option still wins because it is applied later, at configure time.
``examples()`` scales a costly test's example count with the active profile.
Kept tiny on purpose: every pytest run in an environment with the kit installed imports it.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.errors import InvalidArgument

PROFILE_ENV = "HYPOTHESIS_PROFILE"

settings.register_profile("dev", max_examples=100, deadline=timedelta(seconds=1))
settings.register_profile(
    "ci",
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fast", max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

_chosen = os.environ.get(PROFILE_ENV)
if _chosen:
    try:
        settings.load_profile(_chosen)
    except InvalidArgument as exc:
        raise pytest.UsageError(f"{PROFILE_ENV}={_chosen!r}: {exc}") from exc


def examples(fraction: float, minimum: int = 10) -> int:
    """``fraction`` of the active profile's max_examples (at least ``minimum``).

    For tests whose examples are expensive (big graphs, long stateful runs): they still scale
    with the profile, so ``ci`` runs more of them than ``fast`` does.
    """
    active = settings.default
    base = active.max_examples if active is not None else 100
    return max(minimum, int(base * fraction))
