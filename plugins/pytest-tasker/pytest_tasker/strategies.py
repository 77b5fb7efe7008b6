"""Hypothesis strategies (and one seeded generator) for workflow step graphs.

A graph is ``(names, dependencies)``: ``names[i]`` is step i and ``dependencies[i]`` lists the
names step i depends on -- exactly what ``WorkflowGraph`` and templates take. The strategies cover
random DAGs with size/width/depth limits, the classic shapes (chain, diamond, tree, fan-out/fan-in,
mixed), graphs with defects (duplicates, unknown dependencies, self edges, cycles) and readiness
inputs, so backends and the native core are exercised on the shapes workflows really have.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import NamedTuple

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

__all__ = [
    "DEFECTS",
    "Graph",
    "ReadinessInput",
    "big_dags",
    "chain",
    "chains",
    "dags",
    "defective_graphs",
    "diamond",
    "diamonds",
    "fan_out_fan_in",
    "fan_out_fan_ins",
    "graphs",
    "layered_dag",
    "mixed",
    "mixed_dags",
    "readiness_inputs",
    "shapes",
    "step_names",
    "tree",
    "trees",
]

Graph = tuple[list[str], list[list[str]]]
DEFECTS = ("cycle", "self", "unknown", "duplicate")


def step_names(max_size: int = 12) -> st.SearchStrategy[str]:
    """Step names as users write them, plus non-ASCII ones to exercise string marshalling."""
    plain = st.text("abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=max_size)
    exotic = st.text(
        st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
        min_size=1,
        max_size=max_size,
    )
    return st.one_of(plain, exotic)


def _named(dependencies: Sequence[Sequence[int]], names: Sequence[str]) -> Graph:
    return list(names), [[names[p] for p in deps] for deps in dependencies]


@st.composite
def dags(
    draw: st.DrawFn,
    min_steps: int = 0,
    max_steps: int = 30,
    max_width: int | None = None,
    max_depth: int | None = None,
    max_parents: int = 3,
    names: st.SearchStrategy[str] | None = None,
) -> Graph:
    """A random valid DAG.

    Steps are laid out in levels: at most ``max_width`` steps per level and at most
    ``max_depth`` levels. Each step below the top has one parent on the level just above (so its
    level is exact) and up to ``max_parents - 1`` more from any level above, listed in random
    order and possibly repeated (a repeat counts once). Positions are shuffled, so position
    order is not a topological order. Names are ``s0, s1, ...`` unless ``names`` draws them.
    """
    width = max_width if max_width is not None else max(max_steps, 1)
    depth_cap = max_depth if max_depth is not None else max(max_steps, 1)
    if min(width, depth_cap, max_parents) < 1 or not 0 <= min_steps <= max_steps:
        raise InvalidArgument(
            f"dags(min_steps={min_steps}, max_steps={max_steps}, max_width={max_width}, "
            f"max_depth={max_depth}, max_parents={max_parents}): sizes must be positive and "
            "min_steps <= max_steps"
        )
    if min_steps > width * depth_cap:
        raise InvalidArgument(
            f"min_steps={min_steps} steps do not fit {depth_cap} levels of {width}"
        )
    n = draw(st.integers(min_steps, min(max_steps, width * depth_cap)))
    if n == 0:
        return [], []
    depth = draw(st.integers(max(1, math.ceil(n / width)), min(n, depth_cap)))
    sizes = [1] * depth
    for _ in range(n - depth):
        room = [level for level in range(depth) if sizes[level] < width]
        sizes[draw(st.sampled_from(room))] += 1
    starts = [sum(sizes[:level]) for level in range(depth)]
    deps_by_id: list[list[int]] = [[] for _ in range(sizes[0])]
    for level in range(1, depth):
        for _ in range(sizes[level]):
            above = st.integers(starts[level - 1], starts[level] - 1)
            extra = draw(st.lists(st.integers(0, starts[level] - 1), max_size=max_parents - 1))
            extra.insert(draw(st.integers(0, len(extra))), draw(above))
            deps_by_id.append(extra)
    position_of_id = draw(st.permutations(range(n)))
    deps_by_pos: list[list[int]] = [[] for _ in range(n)]
    for step_id, deps in enumerate(deps_by_id):
        deps_by_pos[position_of_id[step_id]] = [position_of_id[p] for p in deps]
    chosen = (
        [f"s{i}" for i in range(n)]
        if names is None
        else draw(st.lists(names, min_size=n, max_size=n, unique=True))
    )
    return _named(deps_by_pos, chosen)


# -- the classic shapes ------------------------------------------------------------------------


def chain(n: int) -> Graph:
    """step_1 <- step_2 <- ... <- step_n: every step waits for the one before."""
    names = [f"step_{i + 1}" for i in range(n)]
    return names, [[] if i == 0 else [names[i - 1]] for i in range(n)]


def diamond() -> Graph:
    """The four-step diamond: one start, two parallel branches, one join."""
    return ["start", "left", "right", "join"], [[], ["start"], ["start"], ["left", "right"]]


def tree(depth: int, branching: int) -> Graph:
    """A root whose every step below ``depth`` has ``branching`` children (each waits for it)."""
    names = ["node"]
    deps: list[list[str]] = [[]]
    frontier = ["node"]
    for _ in range(depth):
        grown = []
        for parent in frontier:
            for b in range(branching):
                child = f"{parent}.{b}"
                names.append(child)
                deps.append([parent])
                grown.append(child)
        frontier = grown
    return names, deps


def fan_out_fan_in(width: int, stages: int = 1) -> Graph:
    """``stages`` rounds of: one step fans out to ``width`` parallel steps that all join again."""
    names = ["source"]
    deps: list[list[str]] = [[]]
    join = "source"
    for stage in range(stages):
        branch = [f"stage{stage}.worker{w}" for w in range(width)]
        names.extend(branch)
        deps.extend([join] for _ in branch)
        join = f"stage{stage}.join"
        names.append(join)
        deps.append(list(branch))
    return names, deps


def mixed(prefix: int, branches: Sequence[int], tail_width: int) -> Graph:
    """A chain of ``prefix`` steps, parallel chains of the given lengths, a join, then a fan-out
    of ``tail_width`` steps that a final step joins: the shape most real workflows have."""
    names = [f"prep{i}" for i in range(prefix)]
    deps: list[list[str]] = [[] if i == 0 else [names[i - 1]] for i in range(prefix)]
    last = names[-1] if names else None
    ends = []
    for b, length in enumerate(branches):
        previous = last
        for i in range(length):
            name = f"branch{b}.{i}"
            names.append(name)
            deps.append([] if previous is None else [previous])
            previous = name
        if previous is not None:
            ends.append(previous)
    names.append("merge")
    deps.append(ends if ends else ([last] if last is not None else []))
    tail = [f"tail{i}" for i in range(tail_width)]
    names.extend(tail)
    deps.extend(["merge"] for _ in tail)
    names.append("finish")
    deps.append(tail if tail else ["merge"])
    return names, deps


def chains(min_steps: int = 1, max_steps: int = 20) -> st.SearchStrategy[Graph]:
    return st.integers(min_steps, max_steps).map(chain)


def diamonds() -> st.SearchStrategy[Graph]:
    return st.just(diamond())


def trees(max_depth: int = 4, max_branching: int = 3) -> st.SearchStrategy[Graph]:
    return st.builds(tree, st.integers(0, max_depth), st.integers(1, max_branching))


def fan_out_fan_ins(max_width: int = 12, max_stages: int = 3) -> st.SearchStrategy[Graph]:
    return st.builds(fan_out_fan_in, st.integers(1, max_width), st.integers(1, max_stages))


def mixed_dags(
    max_prefix: int = 4, max_branches: int = 4, max_len: int = 4
) -> st.SearchStrategy[Graph]:
    return st.builds(
        mixed,
        st.integers(0, max_prefix),
        st.lists(st.integers(1, max_len), max_size=max_branches),
        st.integers(0, max_len),
    )


def shapes() -> st.SearchStrategy[Graph]:
    """Any of the classic shapes, at modest sizes."""
    return st.one_of(chains(), diamonds(), trees(), fan_out_fan_ins(), mixed_dags())


# -- invalid graphs ----------------------------------------------------------------------------


def _absent_name(names: Sequence[str], hint: str) -> str:
    taken = set(names)
    candidate = f"{hint}?"
    while candidate in taken:
        candidate += "?"
    return candidate


@st.composite
def defective_graphs(
    draw: st.DrawFn,
    max_steps: int = 30,
    names: st.SearchStrategy[str] | None = None,
    defects: Sequence[str] = DEFECTS,
) -> Graph:
    """A DAG spoiled by one or more of ``defects`` (cycle, self, unknown, duplicate).

    Several defects may meet in one graph, so validation precedence is exercised too. A cycle is
    closed by making an ancestor depend on its descendant, so it always really exists.
    """
    unknown_defects = set(defects) - set(DEFECTS)
    if unknown_defects or not defects:
        raise InvalidArgument(f"defects must be a non-empty subset of {DEFECTS}, got {defects}")
    step_names_, deps = draw(dags(min_steps=1, max_steps=max_steps, names=names))
    chosen = draw(st.lists(st.sampled_from(list(defects)), min_size=1, max_size=4))
    n = len(step_names_)
    for defect in sorted(chosen, key=DEFECTS.index):
        if defect == "cycle":
            position = {name: i for i, name in enumerate(step_names_)}
            has_parents = [i for i in range(n) if deps[i]]
            if not has_parents:  # no edge to close: make two steps wait for each other
                if n < 2:
                    step_names_.append(_absent_name(step_names_, step_names_[0]))
                    deps.append([])
                    n += 1
                a, b = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=2, unique=True))
                deps[a].append(step_names_[b])
                deps[b].append(step_names_[a])
                continue
            low = draw(st.sampled_from(has_parents))
            ancestor = low
            for _ in range(draw(st.integers(1, 6))):
                if not deps[ancestor]:
                    break
                ancestor = position[draw(st.sampled_from(deps[ancestor]))]
            if ancestor != low:
                deps[ancestor].insert(draw(st.integers(0, len(deps[ancestor]))), step_names_[low])
        elif defect == "self":
            i = draw(st.integers(0, n - 1))
            deps[i].insert(draw(st.integers(0, len(deps[i]))), step_names_[i])
        elif defect == "unknown":
            i = draw(st.integers(0, n - 1))
            ghost = _absent_name(step_names_, step_names_[draw(st.integers(0, n - 1))])
            deps[i].insert(draw(st.integers(0, len(deps[i]))), ghost)
        else:
            at = draw(st.integers(0, len(step_names_)))
            twin = step_names_[draw(st.integers(0, len(step_names_) - 1))]
            parents = draw(st.lists(st.sampled_from(step_names_), max_size=2))
            step_names_.insert(at, twin)
            deps.insert(at, parents)
    return step_names_, deps


def graphs(
    max_steps: int = 30, names: st.SearchStrategy[str] | None = None
) -> st.SearchStrategy[Graph]:
    """Valid DAGs, classic shapes and defective graphs: everything a validator may be handed."""
    return st.one_of(
        dags(max_steps=max_steps, names=names),
        shapes(),
        defective_graphs(max_steps=max_steps, names=names),
    )


# -- readiness inputs --------------------------------------------------------------------------


class ReadinessInput(NamedTuple):
    """The per-step columns ``WorkflowGraph.ready`` takes, plus ``now``."""

    states: list[int]
    attempts: list[int]
    max_attempts: list[int]
    retryable: list[bool]
    next_retry_at: list[float]
    leased: list[bool]
    now: float


@st.composite
def readiness_inputs(draw: st.DrawFn, n: int, state_count: int) -> ReadinessInput:
    """Random per-step columns for ``n`` steps, state codes in ``range(state_count)``.

    Attempts, limits and times are drawn from small ranges so that the boundaries
    (``attempts == max_attempts``, ``now == next_retry_at``) are hit often.
    """
    small = st.integers(0, 4)
    times = st.sampled_from([0.0, 1.0, 2.5, 3.0, 10.0])
    return ReadinessInput(
        states=draw(st.lists(st.integers(0, state_count - 1), min_size=n, max_size=n)),
        attempts=draw(st.lists(small, min_size=n, max_size=n)),
        max_attempts=draw(st.lists(st.integers(1, 4), min_size=n, max_size=n)),
        retryable=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        next_retry_at=draw(st.lists(times, min_size=n, max_size=n)),
        leased=draw(st.lists(st.booleans(), min_size=n, max_size=n)),
        now=draw(st.sampled_from([0.0, 1.0, 2.5, 3.0, 10.0])),
    )


# -- large graphs ------------------------------------------------------------------------------


def layered_dag(
    n_steps: int,
    width: int = 100,
    max_parents: int = 3,
    seed: int = 0,
    shuffle: bool = False,
) -> Graph:
    """A reproducible layered DAG of ``n_steps`` steps, ``width`` per level.

    Not a strategy: drawing every edge through hypothesis is far too slow past a few dozen
    steps. Each step below the first level depends on 1..max_parents distinct random steps of
    the level above. Positions follow the levels unless ``shuffle`` permutes them.
    """
    rng = random.Random(seed)
    deps_by_id: list[list[int]] = []
    for i in range(n_steps):
        level_start = i - i % width
        if level_start == 0:
            deps_by_id.append([])
            continue
        above = range(level_start - width, level_start)
        deps_by_id.append(rng.sample(above, rng.randint(1, min(max_parents, width))))
    position_of_id = list(range(n_steps))
    if shuffle:
        rng.shuffle(position_of_id)
    deps_by_pos: list[list[int]] = [[] for _ in range(n_steps)]
    for step_id, deps in enumerate(deps_by_id):
        deps_by_pos[position_of_id[step_id]] = [position_of_id[p] for p in deps]
    return _named(deps_by_pos, [f"step-{i:06d}" for i in range(n_steps)])


def big_dags(
    min_steps: int = 50, max_steps: int = 400, max_width: int = 40, max_parents: int = 4
) -> st.SearchStrategy[Graph]:
    """Shuffled layered DAGs of hundreds of steps, generated from a drawn seed (fast; they
    shrink only in size, width and seed, so pair them with ``dags`` for minimal examples)."""
    return st.builds(
        layered_dag,
        st.integers(min_steps, max_steps),
        st.integers(1, max_width),
        st.integers(1, max_parents),
        st.integers(0, 2**32 - 1),
        st.just(True),
    )
