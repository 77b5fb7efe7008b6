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


PUBLIC = re.compile(r"^tasker_core(\.plugin(\.\w+)*|\.protocols)?$")
IMPORT = re.compile(
    r"^\s*(?:from\s+(tasker_core[\w.]*)\s+import|import\s+(tasker_core[\w.]*))", re.M
)
FIRST_PARTY_PLUGINS = ("tasker_postgres", "tasker_zmq", "tasker_fs_templates", "pytest_tasker")


def _package_sources() -> list[Path]:
    """The importable code of every contrib and plugins distribution (not its tests)."""
    found: list[Path] = []
    for dist in [*ROOT.glob("contrib/*"), *ROOT.glob("plugins/*"), ROOT / "examples"]:
        for package in dist.glob("*/__init__.py"):
            if package.parent.name not in ("tests", "benchmarks"):
                found.extend(package.parent.rglob("*.py"))
    return found


def test_plugins_import_only_the_public_api() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in _package_sources()
        for match in IMPORT.finditer(path.read_text())
        if not PUBLIC.match(module := match.group(1) or match.group(2))
    ]
    assert not offenders, "import these through tasker_core's public API:\n" + "\n".join(offenders)


def test_the_kernel_imports_no_plugin() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "tasker_core").rglob("*.py")
        if any(
            re.search(rf"\b(import|from)\s+{name}\b", path.read_text())
            for name in FIRST_PARTY_PLUGINS
        )
    ]
    assert not offenders
