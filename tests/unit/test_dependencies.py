"""Every package ``sse_hub`` imports is declared in pyproject.toml: an import that works only
because another dependency happens to pull its package in breaks the day that one stops.

A plain import must be in ``[project] dependencies``; one guarded by ``try: ... except
ImportError`` (uvloop, hiredis) may instead be in a runtime extra (``fast``). Import names are
mapped to distributions with ``importlib.metadata.packages_distributions()``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sse_hub"
RUNTIME_EXTRAS = ("fast",)  # not test or bench: those are never installed to run the hub


def normalize(name: str) -> str:
    """PEP 503: ``PyJWT``, ``typing_extensions`` -> ``pyjwt``, ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared() -> tuple[set[str], set[str]]:
    """The distributions in ``[project] dependencies``, and those of the runtime extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = {normalize(Requirement(line).name) for line in project["dependencies"]}
    extras = project.get("optional-dependencies", {})
    optional = {normalize(Requirement(line).name) for extra in RUNTIME_EXTRAS for line in extras.get(extra, [])}
    return required, optional


def guards_import_error(node: ast.Try) -> bool:
    for handler in node.handlers:
        caught = handler.type
        names = caught.elts if isinstance(caught, ast.Tuple) else [caught]
        if any(isinstance(name, ast.Name) and name.id in ("ImportError", "ModuleNotFoundError") for name in names):
            return True
    return False


def imports(node: ast.AST, guarded: bool = False) -> Iterator[tuple[str, int, bool]]:
    """``(top-level module, line, inside try/except ImportError)`` for each absolute import."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name.partition(".")[0], node.lineno, guarded
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
        yield node.module.partition(".")[0], node.lineno, guarded
    elif isinstance(node, ast.Try) and guards_import_error(node):
        for statement in node.body:
            yield from imports(statement, guarded=True)
        rest: list[ast.AST] = [*node.handlers, *node.orelse, *node.finalbody]
        for part in rest:
            yield from imports(part, guarded)
    else:
        for child in ast.iter_child_nodes(node):
            yield from imports(child, guarded)


def third_party_imports() -> Iterator[tuple[str, str, bool]]:
    """``(module, "path:line", guarded)`` for each import outside the stdlib and sse_hub."""
    for path in sorted(PACKAGE.rglob("*.py")):
        for module, line, guarded in imports(ast.parse(path.read_text(), str(path))):
            if module in sys.stdlib_module_names or module in ("__future__", "sse_hub"):
                continue
            yield module, f"{path.relative_to(ROOT)}:{line}", guarded


def distributions(module: str, installed: Mapping[str, list[str]]) -> set[str]:
    # A module that is not installed here (uvloop, hiredis in the plain run) is taken to be
    # its own distribution's name.
    return {normalize(dist) for dist in installed.get(module, [module])}


def test_the_scan_sees_the_imports_it_must_judge() -> None:
    found = {module: guarded for module, _, guarded in third_party_imports()}
    assert found.get("aiohttp") is False and found.get("redis") is False
    assert found.get("uvloop") is True and found.get("hiredis") is True, "sse_hub/ops/server.py, script_connection.py"


def test_every_third_party_import_in_sse_hub_is_declared_in_pyproject() -> None:
    required, optional = declared()
    installed = importlib.metadata.packages_distributions()
    missing = []
    for module, where, guarded in third_party_imports():
        names = distributions(module, installed)
        if names & required or (guarded and names & optional):
            continue
        extra = " (in an extra: only a try/except ImportError import may use one)" if names & optional else ""
        missing.append(f"{where}: `{module}` (distribution {' or '.join(sorted(names))}){extra}")
    assert not missing, "imported but not declared in pyproject.toml [project] dependencies:\n" + "\n".join(missing)
