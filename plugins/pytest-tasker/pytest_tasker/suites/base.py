"""What every suite shares: declared capabilities, and skipping what a backend does not claim.

A backend's test class says what it can do in ``capabilities``; a test that needs more is
decorated with :func:`requires` and is skipped (with the missing capability in the reason), never
failed. Unknown capability names are a usage error, so a typo cannot silently skip tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, settings

from pytest_tasker.plugin import examples

__all__ = ["SuiteBase", "machine_settings", "requires"]

F = TypeVar("F", bound=Callable[..., Any])

_REQUIRES = "_tasker_requires"


def requires(*needed: str) -> Callable[[F], F]:
    """Mark a suite test as needing these capabilities (skipped when the backend lacks one)."""

    def mark(fn: F) -> F:
        setattr(fn, _REQUIRES, frozenset(needed) | getattr(fn, _REQUIRES, frozenset()))
        return fn

    return mark


def machine_settings(fraction: float, steps: int) -> settings:
    """Settings for a suite's state machine: ``fraction`` of the active profile's examples.

    Backends are built once per test function and shared by every example (ids are unique per
    example), hence the function-scoped-fixture health check is suppressed.
    """
    return settings(
        max_examples=examples(fraction),
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.function_scoped_fixture,
            HealthCheck.data_too_large,
        ],
    )


class SuiteBase:
    """Capability bookkeeping for the suites; subclass a concrete suite, not this."""

    capabilities: ClassVar[frozenset[str] | set[str]] = frozenset()
    """What the backend under test claims; tests needing anything else are skipped."""

    KNOWN_CAPABILITIES: ClassVar[frozenset[str]] = frozenset()
    """Every capability this suite understands (documented on the concrete suite)."""

    def has(self, capability: str) -> bool:
        """Whether the backend under test claims ``capability``."""
        return capability in self.capabilities

    @pytest.fixture(autouse=True)
    def _tasker_capability_gate(self, request: pytest.FixtureRequest) -> Iterator[None]:
        """Runs before the backend fixture: skip tests whose capabilities are not claimed."""
        claimed = frozenset(self.capabilities)
        unknown = claimed - self.KNOWN_CAPABILITIES
        if unknown:
            raise pytest.UsageError(
                f"{type(self).__name__}.capabilities names unknown capabilities "
                f"{sorted(unknown)}; {type(self).__mro__[1].__name__} knows "
                f"{sorted(self.KNOWN_CAPABILITIES)}"
            )
        needed: frozenset[str] = getattr(request.function, _REQUIRES, frozenset())
        missing = needed - claimed
        if missing:
            pytest.skip(
                f"{type(self).__name__} does not claim capability "
                + ", ".join(repr(m) for m in sorted(missing))
            )
        yield
