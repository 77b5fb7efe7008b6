"""Developer sessions. `nox -s tests` is the whole test suite (what CI runs).

Sessions run in the current environment (venv_backend "none"): the Rust extension is built once
by `pip install -e .`, and rebuilding it in a fresh virtualenv per session would only cost minutes.
"""

from __future__ import annotations

import os
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.default_venv_backend = "none"

ROOT = Path(__file__).parent
CARGO_MANIFEST = str(ROOT / "tasker_native" / "Cargo.toml")
CONTRIB = sorted(p for p in (ROOT / "contrib").glob("*") if (p / "pyproject.toml").exists())
PLUGINS = sorted(p for p in (ROOT / "plugins").glob("*") if (p / "pyproject.toml").exists())


@nox.session
def tests(session: nox.Session) -> None:
    """Rust unit tests, then every Python suite: kernel, contrib plugins, first-party plugins."""
    session.run("cargo", "test", "--quiet", "--manifest-path", CARGO_MANIFEST, external=True)
    env = {"HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "ci")}
    paths = ["tests", *[str(p / "tests") for p in CONTRIB + PLUGINS if (p / "tests").exists()]]
    session.run("python", "-m", "pytest", *paths, *session.posargs, env=env, external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over everything Python; rustfmt and clippy over the native crates."""
    session.run("ruff", "check", ".", external=True)
    session.run("ruff", "format", "--check", ".", external=True)
    session.run(
        "cargo", "fmt", "--all", "--check", "--manifest-path", CARGO_MANIFEST, external=True
    )
    session.run(
        "cargo",
        "clippy",
        "--quiet",
        "--all-targets",
        "--manifest-path",
        CARGO_MANIFEST,
        "--",
        "-D",
        "warnings",
        external=True,
    )
    # tasker-zmq's own extension (a separate crate: it links to pyzmq's libzmq at run time).
    zmq_native = str(ROOT / "contrib" / "tasker-zmq" / "native" / "Cargo.toml")
    session.run("cargo", "fmt", "--check", "--manifest-path", zmq_native, external=True)
    session.run(
        "cargo",
        "clippy",
        "--quiet",
        "--manifest-path",
        zmq_native,
        "--",
        "-D",
        "warnings",
        external=True,
    )


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict over the kernel, and stubtest of the hand-written native stub."""
    session.run("mypy", "tasker_core", external=True)
    session.run("python", "-m", "mypy.stubtest", "tasker_core._native", external=True)
    kit = {"MYPYPATH": str(ROOT / "plugins" / "pytest-tasker")}  # editable installs hide it
    for package in CONTRIB + PLUGINS:
        session.run(
            "mypy", "--strict", "--follow-imports=silent", str(package), env=kit, external=True
        )


@nox.session
def rust(session: nox.Session) -> None:
    """The native crates alone: fmt, clippy, cargo test."""
    session.run(
        "cargo", "fmt", "--all", "--check", "--manifest-path", CARGO_MANIFEST, external=True
    )
    session.run("cargo", "test", "--manifest-path", CARGO_MANIFEST, external=True)


@nox.session
def bench(session: nox.Session) -> None:
    """Every benchmark; prints the markdown tables that docs/performance.md holds."""
    quick = ["--quick"] if "--quick" in session.posargs else []
    for script in sorted((ROOT / "benchmarks").glob("bench_*.py")):
        session.run("python", str(script), *quick, external=True)
