"""What the builtin stores do beyond the Store contract (the contract itself is the conformance
kit's StoreSuite, run against both stores in tests/conformance/test_builtin_stores.py).

Here: rejecting duplicate ids and step names, copying payloads, non-JSON payloads, the factories
and hooks, and the memory store's call log.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_tasker.store_model import make_steps, make_task, start_changes

from tasker_core.builtin import memory_store
from tasker_core.builtin.memory_store import MemoryStore, make_memory_store
from tasker_core.builtin.sqlite_store import SQLiteStore, make_sqlite_store
from tasker_core.config import Config
from tasker_core.errors import ConfigError, TaskNotFoundError
from tasker_core.models import Step, StepChange, TaskChange
from tasker_core.protocols import Store


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = (
        MemoryStore()
        if request.param == "memory"
        else SQLiteStore(f"sqlite:///{tmp_path / 'store.db'}")
    )
    yield made
    made.close()


def create(store: Store, task_id: str = "t1", steps: int = 3) -> None:
    store.create_task(make_task(task_id), make_steps(task_id, steps))


def step_of(store: Store, task_id: str, name: str) -> Step:
    return next(s for s in store.get_steps(task_id) if s.name == name)


def snapshot(store: Store, task_id: str) -> tuple[Any, ...]:
    return (store.get_task(task_id), store.get_steps(task_id), store.get_transitions(task_id))


def test_duplicate_task_id_or_step_name_is_rejected(store: Store) -> None:
    create(store)
    with pytest.raises(ValueError, match="already exists"):
        create(store)
    steps = make_steps("t2")
    with pytest.raises(ValueError, match="duplicate step name 's0'"):
        store.create_task(make_task("t2"), [*steps, attrs.evolve(steps[0], index=9)])
    with pytest.raises(TaskNotFoundError):
        store.get_task("t2")


def test_missing_task_has_no_transitions(store: Store) -> None:
    with pytest.raises(TaskNotFoundError, match="nope"):
        store.get_transitions("nope")


def test_stored_payloads_are_copies(store: Store) -> None:
    task = make_task("t1")
    store.create_task(task, make_steps("t1"))
    task.context["order"] = 99
    results = {"items": [1, 2]}
    store.apply(start_changes("t1", "s0"), now=1.0)
    store.apply([StepChange("t1", "s0", "in_progress", "complete", results=results)], now=2.0)
    results["items"].append(3)
    assert store.get_task("t1").context == {"order": 7}
    assert step_of(store, "t1", "s0").results == {"items": [1, 2]}


@pytest.mark.parametrize(
    "bad",
    [
        StepChange("t1", "s1", "pending", "resolved_manually", results={1, 2}),
        StepChange("t1", "s1", "pending", "enqueued", metadata={"x": object()}),
    ],
)
def test_a_non_json_payload_rejects_the_whole_batch(store: Store, bad: StepChange) -> None:
    create(store)
    before = snapshot(store, "t1")
    good: list[StepChange | TaskChange] = [
        StepChange("t1", "s0", "pending", "enqueued"),
        TaskChange("t1", "pending", "in_progress"),
    ]
    with pytest.raises(TypeError):
        store.apply([*good, bad], now=1.0)
    assert snapshot(store, "t1") == before


def test_non_json_results_error_names_the_path(store: Store) -> None:
    create(store)
    store.apply(start_changes("t1", "s0"), now=1.0)
    bad = StepChange("t1", "s0", "in_progress", "complete", results={"items": [1, 2, {3}]})
    with pytest.raises(TypeError, match=r"results\['items'\]\[2\]: set is not JSON"):
        store.apply([bad], now=2.0)


def test_expired_leases_come_oldest_first(store: Store) -> None:
    create(store, "a", steps=3)
    store.apply(
        [
            *start_changes("a", "s0", expires=30.0),
            *start_changes("a", "s1", expires=10.0),
            *start_changes("a", "s2", expires=20.0),
        ],
        now=1.0,
    )
    assert [s.name for s in store.expired_leases(now=100.0, limit=10)] == ["s1", "s2", "s0"]
    assert [s.name for s in store.expired_leases(now=100.0, limit=2)] == ["s1", "s2"]


def test_factories_accept_no_config(tmp_path: Path) -> None:
    memory = make_memory_store("memory://")
    sqlite = make_sqlite_store(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        assert isinstance(memory, Store) and memory.scheme == "memory"
        assert isinstance(sqlite, Store) and sqlite.scheme == "sqlite"
    finally:
        memory.close()
        sqlite.close()


def test_memory_factory_reads_its_options() -> None:
    config = Config.from_mapping(
        {"store": {"url": "memory://", "options": {"record_calls": False}}}
    )
    store = make_memory_store("memory://", config)
    create(store)
    assert store.calls == []
    bad = Config.from_mapping({"store": {"url": "memory://", "options": {"max_calls": "many"}}})
    with pytest.raises(ConfigError, match=r"store\.options\.max_calls"):
        make_memory_store("memory://", bad)


def test_memory_hook_registers_the_memory_scheme() -> None:
    registered: dict[str, Any] = {}
    memory_store.tasker_register_stores(register=lambda scheme, f: registered.update({scheme: f}))
    assert registered == {"memory": make_memory_store}


def test_memory_store_records_calls_and_resets() -> None:
    store = MemoryStore(max_calls=3)
    create(store)
    store.apply(start_changes("t1", "s0"), now=1.0)
    assert store.calls[:2] == [
        ("create_task", {"task_id": "t1", "steps": 3}),
        ("apply", {"changes": 2, "now": 1.0}),
    ]
    for _ in range(10):
        store.get_task("t1")
    assert 3 <= len(store.calls) <= 6
    store.reset()
    assert store.calls == []
    with pytest.raises(TaskNotFoundError):
        store.get_task("t1")
