"""Benchmark: what a template lookup costs, cached and cold, with 1 and 1,000 template files.

    python contrib/tasker-fs-templates/benchmarks/bench_finder.py [--quick]

Prints a markdown table (docs/performance.md, "Filesystem template finder"). Trees:
- ``1 file``: ``bench/flow/1.0.0.yml`` only;
- ``1,000 files, wide``: that file plus 999 other templates spread over the four layouts;
- ``1,000 files, deep``: 1,000 versions of ``bench/flow`` in one directory (the worst case for
  "latest": the listing has 1,000 entries).
Files are dated an hour back, as deployed templates are: a file changed within the last 2 s is
compared byte for byte on each lookup (measured separately, "recently edited").
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tasker_core import Config, load_template_file
from tasker_core.plugin import PluginHost

from tasker_fs_templates import FilesystemTemplateFinder

TEMPLATE = """\
namespace: {namespace}
name: {name}
version: '{version}'
description: A five-step order flow, a typical template size
context_schema:
  type: object
  required: [order_id]
  properties:
    order_id: {{type: integer}}
steps:
  - name: validate
    handler: bench.validate
  - name: charge
    handler: bench.charge
    depends_on: [validate]
    retry: {{retryable: true, max_attempts: 5, backoff: {{base: 1s, max: 60s}}}}
    timeout: 30s
  - name: reserve
    handler: bench.reserve
    depends_on: [validate]
  - name: ship
    handler: bench.ship
    depends_on: [charge, reserve]
    config: {{carrier: sandbox}}
  - name: notify
    handler: bench.notify
    depends_on: [ship]
"""


def write(path: Path, namespace: str, name: str, version: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TEMPLATE.format(namespace=namespace, name=name, version=version))
    return path


def age(root: Path) -> None:
    past = time.time_ns() - 3600 * 10**9
    for directory, dirs, files in os.walk(root):
        for entry in [*dirs, *files]:
            os.utime(os.path.join(directory, entry), ns=(past, past))
        os.utime(directory, ns=(past, past))


def build(root: Path, shape: str) -> None:
    write(root / "bench/flow/1.0.0.yml", "bench", "flow", "1.0.0")
    if shape == "wide":
        for i in range(999):
            name = f"other_{i:03d}"
            place = [
                f"bench/{name}/1.0.0.yml",
                f"bench/{name}.yml",
                f"{name}/1.0.0.yml",
                f"{name}.yml",
            ][i % 4]
            write(root / place, "bench", name, "1.0.0")
    elif shape == "deep":
        for i in range(1, 1000):
            write(root / f"bench/flow/1.{i}.0.yml", "bench", "flow", f"1.{i}.0")
    age(root)


def per_call(fn: Callable[[], object], *, budget: float, repeats: int) -> float:
    """Median seconds per call over ``repeats`` runs of about ``budget`` seconds each."""
    fn()
    count = 1
    while True:
        start = time.perf_counter()
        for _ in range(count):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= budget / 10:
            break
        count *= 4
    count = max(1, int(count * (budget / max(elapsed, 1e-9))))
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(count):
            fn()
        samples.append((time.perf_counter() - start) / count)
    return statistics.median(samples)


def fmt(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    return f"{seconds * 1e3:.2f} ms"


def measure(root: Path, budget: float, repeats: int) -> list[float]:
    """Cached exact, cached latest, cold exact, cold latest: seconds per lookup."""
    warm = FilesystemTemplateFinder([root])
    assert warm.find("bench", "flow", "1.0.0") is not None
    assert warm.find("bench", "flow", None) is not None

    def cold(version: str | None) -> object:
        return FilesystemTemplateFinder([root]).find("bench", "flow", version)

    calls: list[Callable[[], object]] = [
        lambda: warm.find("bench", "flow", "1.0.0"),
        lambda: warm.find("bench", "flow", None),
        lambda: cold("1.0.0"),
        lambda: cold(None),
    ]
    return [per_call(call, budget=budget, repeats=repeats) for call in calls]


def extras(one: Path, budget: float, repeats: int) -> list[tuple[str, float]]:
    """Reference points on the one-file tree."""
    target = one / "bench/flow/1.0.0.yml"
    host = PluginHost.create(env={"TASKER_LOAD_PLUGINS": "fs_templates"}, default_plugins={})
    config = Config.from_mapping({"templates": {"paths": [str(one)]}})
    uncached = FilesystemTemplateFinder([one], cache=False)
    out = [
        (
            "`load_template_file` alone (parse + validate)",
            per_call(lambda: load_template_file(target), budget=budget, repeats=repeats),
        ),
        (
            "cached, exact, through `PluginHost.find_template` (pluggy)",
            per_call(
                lambda: host.find_template("bench", "flow", "1.0.0", config),
                budget=budget,
                repeats=repeats,
            ),
        ),
        (
            "`templates.cache: false` (re-parse every lookup)",
            per_call(
                lambda: uncached.find("bench", "flow", "1.0.0"), budget=budget, repeats=repeats
            ),
        ),
    ]
    os.utime(target)  # now: inside the racy window, so compared byte for byte
    fresh = FilesystemTemplateFinder([one])
    recent = per_call(lambda: fresh.find("bench", "flow", "1.0.0"), budget=budget, repeats=3)
    out.append(("cached, exact, file edited < 2 s ago (byte compare)", recent))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    options = parser.parse_args()
    budget, repeats = (0.05, 3) if options.quick else (0.3, 7)
    shapes = (("one", "1 file"), ("wide", "1,000 files, wide"), ("deep", "1,000 files, deep"))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-fs-templates-") as scratch:
        for shape, label in shapes:
            root = Path(scratch) / shape
            build(root, shape)
            rows.append((label, measure(root, budget, repeats)))
        # The racy-window row must run within 2 s of its os.utime: keep its budget short.
        reference = extras(Path(scratch) / "one", min(budget, 0.2), repeats)

    header = ["template files", "cached, exact", "cached, latest", "cold, exact", "cold, latest"]
    print("| " + " | ".join(header) + " |")
    print("|---|---:|---:|---:|---:|")
    for label, costs in rows:
        print(f"| {label} | " + " | ".join(fmt(cost) for cost in costs) + " |")
    print()
    print("| for comparison (1 file) | per lookup |")
    print("|---|---:|")
    for what, cost in reference:
        print(f"| {what} | {fmt(cost)} |")


if __name__ == "__main__":
    main()
