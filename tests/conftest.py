"""The plugins that hold the shared fixtures (``tests/support/``), and a marker per test
folder: ``unit``, ``app``, ``redis``, ``redis_cluster``, ``e2e`` (pyproject.toml declares
them). ``scripts/test --quick`` runs ``-m "unit or app"``."""

from __future__ import annotations

import pytest

from tests.support.paths import ROOT  # noqa: F401  # tests/test_boundaries.py imports it from here

pytest_plugins = ["tests.support.plugin", "tests.support.nginx", "tests.support.front"]

# The marker of each folder under tests/; the fault-injection harness runs real processes.
MARKER_BY_FOLDER = {
    "unit": "unit",
    "app": "app",
    "redis": "redis",
    "redis_cluster": "redis_cluster",
    "e2e": "e2e",
    "faults": "e2e",
}
# Test files at the top of tests/, by kind.
MARKER_BY_FILE = {"test_boundaries.py": "unit"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = config.rootpath / "tests"
    for item in items:
        parts = item.path.relative_to(tests).parts
        marker = MARKER_BY_FOLDER.get(parts[0]) if len(parts) > 1 else MARKER_BY_FILE.get(parts[0])
        if marker is None:
            raise pytest.UsageError(f"{item.nodeid}: put the file in a folder of tests/ named for its kind")
        item.add_marker(marker)
