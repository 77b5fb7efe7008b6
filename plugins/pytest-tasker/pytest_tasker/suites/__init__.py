"""The abstract conformance suites: subclass one, override the fixture that builds your backend.

``StoreSuite`` (fixture ``store``), ``QueueSuite`` (``queue``), ``EventSinkSuite`` (``sink``) and
``TemplateFinderSuite`` (``finder``); each documents its capabilities and optional overrides.
"""

from pytest_tasker.suites.base import requires
from pytest_tasker.suites.finder import TemplateFinderSuite
from pytest_tasker.suites.queue import QueueSuite
from pytest_tasker.suites.sink import EventSinkSuite
from pytest_tasker.suites.store import StoreSuite

__all__ = ["EventSinkSuite", "QueueSuite", "StoreSuite", "TemplateFinderSuite", "requires"]
