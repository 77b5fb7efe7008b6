"""The built extension must carry the tables of the repo's spec/states.toml.

The native tables are generated from the spec when the extension is built, so editing the spec
without rebuilding leaves a stale module. These tests name the drifting entry and say to rebuild.
The last test shows the generation really follows the file: it runs the same generator the build
script uses (tasker-fsm's `spec_tables` example, which compiles codegen/tables.rs) on an edited
copy of the spec.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

import tasker_core._native as native

ROOT = Path(__file__).resolve().parents[2]
STATES = ROOT / "spec" / "states.toml"
EVENTS = ROOT / "spec" / "events.toml"
REBUILD = "the extension is stale: rebuild it with `pip install -e .`"
MACHINES = {"task": native.TASK_MACHINE, "step": native.STEP_MACHINE}


def spec() -> dict[str, Any]:
    return tomllib.loads(STATES.read_text(encoding="utf-8"))


def spec_triples(table: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(t["event"], frm, t["to"]) for t in table["transitions"] for frm in t["from"]}


def native_tables(machine: native.StateMachine) -> dict[str, Any]:
    """The built module's table in the spec's vocabulary (names, not codes)."""
    states, events = machine.states, machine.events
    return {
        "states": states,
        "events": events,
        "initial": states[machine.initial],
        "terminal": [s for i, s in enumerate(states) if machine.is_terminal(i)],
        "satisfies_dependency": [
            s for i, s in enumerate(states) if machine.satisfies_dependency(i)
        ],
        "transitions": sorted(
            (events[e], states[f], states[t]) for e, f, t in machine.transitions()
        ),
    }


@pytest.mark.parametrize("kind", ["task", "step"])
def test_every_table_entry_matches_the_spec(kind: str) -> None:
    table = spec()[kind]
    built = native_tables(MACHINES[kind])
    for key in ("states", "events", "initial", "terminal"):
        assert built[key] == table[key], f"{kind}.{key} differs from spec/states.toml: {REBUILD}"
    want_satisfies = table.get("satisfies_dependency", [])
    assert built["satisfies_dependency"] == want_satisfies, (
        f"{kind}.satisfies_dependency differs from spec/states.toml: {REBUILD}"
    )
    want, got = spec_triples(table), set(built["transitions"])
    problems = [
        f"{kind} transition {e!r}: {f} -> {t} is in spec/states.toml but not in the built module"
        for e, f, t in sorted(want - got)
    ] + [
        f"{kind} transition {e!r}: {f} -> {t} is in the built module but not in spec/states.toml"
        for e, f, t in sorted(got - want)
    ]
    assert not problems, "\n".join([*problems, REBUILD])


def test_embedded_spec_is_the_repo_spec() -> None:
    digest = hashlib.sha256(STATES.read_bytes()).hexdigest()
    assert digest == native.SPEC_DIGEST, f"spec/states.toml changed since the build: {REBUILD}"
    assert STATES.read_text(encoding="utf-8") == native.SPEC_STATES_TOML, REBUILD
    assert EVENTS.read_text(encoding="utf-8") == native.SPEC_EVENTS_TOML, (
        f"spec/events.toml changed since the build: {REBUILD}"
    )


def generate(cargo: str, states_toml: Path) -> dict[str, Any]:
    """Run the build script's table generator on ``states_toml``; its tables, by name."""
    run = subprocess.run(
        [
            cargo,
            "run",
            "--quiet",
            "--manifest-path",
            str(ROOT / "tasker_native" / "Cargo.toml"),
            "-p",
            "tasker-fsm",
            "--example",
            "spec_tables",
            "--",
            str(states_toml),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    tables: dict[str, Any] = json.loads(run.stdout)
    for table in tables.values():
        table["transitions"] = sorted(tuple(t) for t in table["transitions"])
    return tables


def test_generated_tables_follow_an_edited_spec(tmp_path: Path) -> None:
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.skip("cargo is not on PATH: the table generator cannot run")
    text = STATES.read_text(encoding="utf-8")

    original = generate(cargo, STATES)
    for kind, machine in MACHINES.items():
        assert original[kind] == native_tables(machine), f"{kind}: {REBUILD}"

    # Edit: drop the last step transition block (up to the next table header or the end).
    marker = "[[step.transitions]]"
    start = text.rindex(marker)
    end = text.find("\n[", start + len(marker))
    edited_text = text[:start] + (text[end + 1 :] if end != -1 else "")
    removed = spec()["step"]["transitions"][-1]
    edited_path = tmp_path / "states.toml"
    edited_path.write_text(edited_text, encoding="utf-8")

    edited = generate(cargo, edited_path)
    assert edited["task"] == original["task"]
    gone = {(removed["event"], frm, removed["to"]) for frm in removed["from"]}
    assert set(original["step"]["transitions"]) - set(edited["step"]["transitions"]) == gone
    assert set(edited["step"]["transitions"]) <= set(original["step"]["transitions"])
