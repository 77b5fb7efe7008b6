"""The kit's strategies produce what they promise (checked with the reference model)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from tasker_core.errors import CycleError, GraphError

from pytest_tasker.plugin import examples
from pytest_tasker.reference import RefGraph
from pytest_tasker.strategies import (
    Graph,
    big_dags,
    chain,
    dags,
    defective_graphs,
    diamond,
    fan_out_fan_in,
    layered_dag,
    mixed,
    shapes,
    step_names,
    tree,
)

SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]


@given(
    data=st.data(),
    max_width=st.integers(1, 6),
    max_depth=st.integers(1, 6),
    max_parents=st.integers(1, 4),
)
@settings(suppress_health_check=SLOW)
def test_dags_respect_their_size_limits(
    data: st.DataObject, max_width: int, max_depth: int, max_parents: int
) -> None:
    names, deps = data.draw(
        dags(max_steps=30, max_width=max_width, max_depth=max_depth, max_parents=max_parents)
    )
    graph = RefGraph(names, deps)
    levels = graph.levels()
    assert len(names) <= 30
    assert max(levels, default=0) < max_depth
    assert max(Counter(levels).values(), default=0) <= max_width
    assert all(len(set(d)) <= max_parents for d in deps)


@given(graph=dags(min_steps=1, max_steps=20, names=step_names()))
def test_dags_with_drawn_names_have_unique_names(graph: Graph) -> None:
    names, deps = graph
    assert len(set(names)) == len(names)
    RefGraph(names, deps)


@given(graph=st.one_of(shapes(), big_dags(max_steps=200)))
@settings(suppress_health_check=SLOW)
def test_shapes_and_big_dags_are_valid(graph: Graph) -> None:
    RefGraph(*graph)


@given(graph=defective_graphs(max_steps=20))
def test_defective_graphs_are_always_rejected(graph: Graph) -> None:
    with pytest.raises(GraphError):
        RefGraph(*graph)


@given(graph=defective_graphs(max_steps=20, defects=("cycle",)))
def test_cycle_defects_make_cycles(graph: Graph) -> None:
    with pytest.raises(CycleError):
        RefGraph(*graph)


def test_the_classic_shapes() -> None:
    assert RefGraph(*chain(4)).levels() == [0, 1, 2, 3]
    assert RefGraph(*diamond()).levels() == [0, 1, 1, 2]
    assert len(tree(3, 2)[0]) == 1 + 2 + 4 + 8
    fan = RefGraph(*fan_out_fan_in(5, stages=2))
    assert len(fan) == 1 + 2 * 6 and max(fan.levels()) == 4
    mix = RefGraph(*mixed(2, [3, 1], 2))
    assert mix.leaves() == [mix.index("finish")]
    assert mix.roots() == [mix.index("prep0")]


def test_layered_dag_is_reproducible_and_layered() -> None:
    assert layered_dag(500, width=20, seed=3) == layered_dag(500, width=20, seed=3)
    assert layered_dag(500, width=20, seed=3) != layered_dag(500, width=20, seed=4)
    graph = RefGraph(*layered_dag(500, width=20, seed=3, shuffle=True))
    assert sorted(Counter(graph.levels()).values()) == [20] * 25


@pytest.mark.parametrize(
    "strategy",
    [dags(min_steps=10, max_width=2, max_depth=2), defective_graphs(defects=("typo",))],
    ids=["steps-do-not-fit", "unknown-defect"],
)
def test_impossible_arguments_are_refused(strategy: st.SearchStrategy[Graph]) -> None:
    @given(strategy)
    def draw_one(graph: Graph) -> None:
        raise AssertionError(f"drew {graph} from impossible arguments")

    with pytest.raises(InvalidArgument):
        draw_one()


def test_examples_scale_with_the_active_profile() -> None:
    active = settings.default
    assert active is not None
    assert examples(0.5, minimum=1) == max(1, int(active.max_examples * 0.5))
    assert examples(0.0, minimum=7) == 7


@pytest.mark.parametrize("profile", ["dev", "ci", "fast"])
def test_the_profiles_are_registered(profile: str) -> None:
    assert settings.get_profile(profile).max_examples >= 10
