"""Repository-level promises: what CI installs is what the tests need, and the docs list it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dev_requirements() -> set[str]:
    lines = (ROOT / "requirements-dev.txt").read_text().splitlines()
    return {
        m.group(1).rstrip("/") for line in lines if (m := re.match(r"-e\s+(\S+?)(\[.*\])?$", line))
    }


def test_every_first_party_distribution_is_installed_by_ci_and_the_readme() -> None:
    packages = {
        str(p.parent.relative_to(ROOT))
        for p in [*ROOT.glob("contrib/*/pyproject.toml"), *ROOT.glob("plugins/*/pyproject.toml")]
    }
    packages.add("examples")
    missing = packages - _dev_requirements()
    assert not missing, f"add to requirements-dev.txt: {sorted(missing)}"


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    quick_start = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    install, test = (line.strip() for line in quick_start.strip().splitlines())
    assert install.startswith("python3 -m pip install -r requirements-dev.txt")
    assert "pip install --quiet -r requirements-dev.txt" in ci
    assert test in ci.splitlines(), f"{test!r} must be a line of .ci/run"
