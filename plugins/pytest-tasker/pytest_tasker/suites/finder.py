"""TemplateFinderSuite: the TemplateFinder contract as tests a finder inherits.

The suite owns the catalogue of templates (the ``templates`` fixture: template mappings as
``tasker_core.templates.template_from_mapping`` reads them); override ``finder`` to build a
finder that serves exactly those, e.g. by writing each one where your finder looks::

    class TestMyFinder(TemplateFinderSuite):
        @pytest.fixture
        def finder(self, templates, tmp_path):
            for t in templates:
                path = tmp_path / t["namespace"] / t["name"] / f"{t['version']}.yml"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(t))          # JSON is YAML
            return MyFinder([tmp_path])

No capabilities yet: every finder must find exact versions and the latest, and answer None for
anything it does not hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from packaging.version import Version
from tasker_core import TaskTemplate, TemplateFinder

from pytest_tasker.plugin import examples
from pytest_tasker.suites.base import SuiteBase

__all__ = ["TemplateFinderSuite", "finder_catalogue"]

Query = tuple[str, str, str | None]


def _template(namespace: str, name: str, version: str, shape: int) -> dict[str, Any]:
    """A template whose steps differ by version, so a wrong version is caught by its steps."""
    steps: list[dict[str, Any]] = [{"name": "start", "handler": f"{namespace}.start"}]
    for i in range(shape):
        steps.append({"name": f"work_{i}", "handler": f"{namespace}.work", "depends_on": ["start"]})
    steps.append(
        {
            "name": "finish",
            "handler": f"{namespace}.finish",
            "depends_on": [f"work_{i}" for i in range(shape)] or ["start"],
            "retry": {"max_attempts": 4},
        }
    )
    return {
        "namespace": namespace,
        "name": name,
        "version": version,
        "description": f"{name} {version}",
        "steps": steps,
    }


def finder_catalogue() -> list[dict[str, Any]]:
    """Several workflows and versions, chosen so that string order and semver order disagree
    (1.10.0 > 1.9.0) and one name exists in two namespaces."""
    return [
        _template("kit", "orders", "1.0.0", 1),
        _template("kit", "orders", "1.2.0", 2),
        _template("kit", "orders", "2.0.0", 3),
        _template("kit", "billing", "1.9.0", 1),
        _template("kit", "billing", "1.10.0", 4),
        _template("other", "orders", "3.0.0", 2),
        _template("other", "single", "0.1.0", 0),
    ]


def _expected(catalogue: list[dict[str, Any]], query: Query) -> dict[str, Any] | None:
    namespace, name, version = query
    mine = [t for t in catalogue if (t["namespace"], t["name"]) == (namespace, name)]
    if version is not None:
        mine = [t for t in mine if Version(t["version"]) == Version(version)]
    if not mine:
        return None
    return max(mine, key=lambda t: Version(t["version"]))


def _shape(found: TaskTemplate) -> tuple[Any, ...]:
    return (
        found.namespace,
        found.name,
        found.version,
        tuple((s.name, s.handler, tuple(s.depends_on)) for s in found.steps),
    )


def _mapping_shape(t: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        t["namespace"],
        t["name"],
        t["version"],
        tuple((s["name"], s["handler"], tuple(s.get("depends_on", ()))) for s in t["steps"]),
    )


class TemplateFinderSuite(SuiteBase):
    """Exact versions, the latest version, and None for what the finder does not hold."""

    KNOWN_CAPABILITIES: ClassVar[frozenset[str]] = frozenset()

    @pytest.fixture
    def templates(self) -> list[dict[str, Any]]:
        """The catalogue the finder must serve (see :func:`finder_catalogue`)."""
        return finder_catalogue()

    @pytest.fixture
    def finder(self, templates: list[dict[str, Any]]) -> TemplateFinder:
        """Override: a finder that serves exactly ``templates``."""
        pytest.fail(
            f"{type(self).__name__} must override the 'finder' fixture to build a finder "
            "serving the suite's templates",
            pytrace=False,
        )

    def _check(self, finder: TemplateFinder, templates: list[dict[str, Any]], query: Query) -> None:
        found = finder.find(*query)
        want = _expected(templates, query)
        if want is None:
            assert found is None, f"find{query} returned {found!r}; nothing matches it"
            return
        assert found is not None, f"find{query} returned None; expected {want['version']}"
        assert isinstance(found, TaskTemplate)
        assert _shape(found) == _mapping_shape(want), (
            f"find{query} returned {found.key}, expected {want['namespace']}/{want['name']}@"
            f"{want['version']} (steps included)"
        )

    def test_is_a_template_finder(self, finder: TemplateFinder) -> None:
        assert isinstance(finder, TemplateFinder)

    def test_finds_every_exact_version(
        self, finder: TemplateFinder, templates: list[dict[str, Any]]
    ) -> None:
        for t in templates:
            self._check(finder, templates, (t["namespace"], t["name"], t["version"]))

    def test_latest_is_the_highest_version_not_the_last_string(
        self, finder: TemplateFinder, templates: list[dict[str, Any]]
    ) -> None:
        for namespace, name in sorted({(t["namespace"], t["name"]) for t in templates}):
            self._check(finder, templates, (namespace, name, None))
        found = finder.find("kit", "billing", None)
        assert found is not None and found.version == "1.10.0", "1.10.0 is later than 1.9.0"

    def test_same_name_in_another_namespace_is_another_workflow(
        self, finder: TemplateFinder
    ) -> None:
        found = finder.find("kit", "orders", None)
        assert found is not None and (found.namespace, found.version) == ("kit", "2.0.0")
        assert finder.find("other", "orders", "1.0.0") is None

    @pytest.mark.parametrize(
        "query",
        [
            ("kit", "orders", "9.9.9"),
            ("kit", "nope", None),
            ("kit", "nope", "1.0.0"),
            ("nowhere", "orders", None),
            ("other", "billing", "1.9.0"),
        ],
    )
    def test_none_for_unknown(self, finder: TemplateFinder, query: Query) -> None:
        assert finder.find(*query) is None, f"find{query} must be None"

    def test_random_lookups_agree_with_the_catalogue(
        self, finder: TemplateFinder, templates: list[dict[str, Any]]
    ) -> None:
        namespaces = sorted({t["namespace"] for t in templates} | {"ghost"})
        names = sorted({t["name"] for t in templates} | {"ghost"})
        versions = sorted({t["version"] for t in templates} | {"0.0.1", "10.0.0"})
        queries = st.tuples(
            st.sampled_from(namespaces),
            st.sampled_from(names),
            st.none() | st.sampled_from(versions),
        )

        @given(queries=st.lists(queries, min_size=1, max_size=5))
        @settings(
            max_examples=examples(0.2),
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        def lookups(queries: list[Query]) -> None:
            for query in queries:
                self._check(finder, templates, query)

        lookups()
