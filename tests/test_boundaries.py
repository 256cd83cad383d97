"""The package's import boundaries, read from the source with ``ast`` (every import
statement, those inside functions included), plus one real import in a fresh interpreter.
The rules name packages, not modules, so a new module is checked by where it lives:

- the client (``sse_hub/client/``) and the server (every other package) do not import
  each other; the one meeting point is the ``sse-hub`` command (``sse_hub/cli.py``),
  which registers the client's ``publish`` and ``tail`` beside ``serve``;
- imports go one way down the layers of style.md and docs/architecture.md,
  ``cli -> ops -> web -> {core, broker, mercure} -> messages -> {config, errors}``, with no
  cycles; in the middle layer core and broker never import each other, the brokers import
  no Mercure, and Mercure imports neither core nor the brokers;
- nothing imports ``ops`` but the command; the fast publish path (``web/front*.py``)
  imports no route module;
- core imports no aiohttp at all, and no layer below web uses ``aiohttp.web``.
"""

from __future__ import annotations

import ast
import fnmatch
import graphlib
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = "sse_hub"
CLIENT = "sse_hub.client"
# The ``sse-hub`` command is the one module that may see both sides.
MEETING_POINTS = frozenset({"sse_hub.cli"})
# ``sse_hub/__init__.py`` holds only the version: neither side.
NEUTRAL = frozenset({PACKAGE})


def package(name: str) -> tuple[str, ...]:
    """The patterns of a package and everything in it."""
    return (f"{PACKAGE}.{name}", f"{PACKAGE}.{name}.*")


# The layers, highest first; a module may import its own layer or any below it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("cli", ("sse_hub.cli", "sse_hub.__main__")),
    ("ops", package("ops")),
    ("web", package("web")),
    ("core, broker, mercure", (*package("core"), *package("broker"), *package("mercure"))),
    ("messages", package("messages")),
    ("config, errors", (*package("config"), "sse_hub.errors")),
]
# Packages of one layer that must not import each other, in the direction given.
APART: list[tuple[str, str]] = [("core", "broker"), ("broker", "core"), ("broker", "mercure")]
APART += [("mercure", "core"), ("mercure", "broker")]
# Who may import a package (besides the package itself).
ONLY_FROM: dict[str, tuple[str, ...]] = {"ops": ("sse_hub.cli", "sse_hub.__main__")}
# The fast publish path reads requests below aiohttp: it shares no code with a route.
FAST_PATH = ("sse_hub.web.front", "sse_hub.web.front_http")
# No aiohttp at all, so the hub runs and is tested without an HTTP stack.
WITHOUT_AIOHTTP = package("core")
# "Only the HTTP-facing modules import aiohttp.web" (style.md).
WITHOUT_A_SERVER = (*package("core"), *package("broker"), *package("messages"), *package("config"))
WITHOUT_A_SERVER += (*package("mercure"), "sse_hub.errors")


@dataclass
class Module:
    name: str
    is_package: bool
    imports: set[str] = field(default_factory=set)  # every dotted name imported, resolved
    uses_aiohttp_web: bool = False
    uses_aiohttp: bool = False


def module_name(path: Path, root: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(root).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def resolve(module: Module, node: ast.ImportFrom) -> str:
    """The absolute module of ``from <node.module> import ...``, relative imports included."""
    if not node.level:
        return node.module or ""
    base = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def read_module(path: Path, root: Path) -> Module:
    name, is_package = module_name(path, root)
    module = Module(name, is_package)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            module.imports.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = resolve(module, node)
            module.imports.add(source)
            # ``from a import b`` may import the module a.b; which ones are is decided later.
            module.imports.update(f"{source}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute) and node.attr == "web":
            module.uses_aiohttp_web |= isinstance(node.value, ast.Name) and node.value.id == "aiohttp"
    module.uses_aiohttp_web |= any(name.startswith("aiohttp.web") for name in module.imports)
    module.uses_aiohttp = any(name.split(".")[0] == "aiohttp" for name in module.imports)
    return module


def read_package(root: Path = ROOT) -> dict[str, Module]:
    modules = (read_module(path, root) for path in sorted((root / PACKAGE).rglob("*.py")))
    return {module.name: module for module in modules}


def internal_imports(modules: dict[str, Module]) -> dict[str, set[str]]:
    """Each module's imports of the package's own modules (``from sse_hub import
    __version__`` counts as importing ``sse_hub``, the module that defines it)."""
    graph: dict[str, set[str]] = {}
    for name, module in modules.items():
        targets = set()
        for imported in module.imports:
            if imported.split(".")[0] != PACKAGE:
                continue
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def is_client(name: str) -> bool:
    return name == CLIENT or name.startswith(CLIENT + ".")


def layer_of(name: str) -> int | None:
    for rank, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            return rank
    return None


def path_to(graph: dict[str, set[str]], start: str, target: str) -> list[str]:
    """The import chain from start to target (breadth first), for the failure message."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        name = queue.popleft()
        if name == target:
            chain = [name]
            while chain[-1] != start:
                chain.append(came_from[chain[-1]])
            return chain[::-1]
        for nxt in sorted(graph[name]):
            if nxt not in came_from and nxt != start:
                came_from[nxt] = name
                queue.append(nxt)
    return []


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for nxt in graph[stack.pop()] - seen:
            seen.add(nxt)
            stack.append(nxt)
    return seen


# -- the checks, as functions of a package graph (so they can be run on a planted copy) ----


def client_server_crossings(graph: dict[str, set[str]]) -> list[str]:
    crossings = []
    for name, targets in sorted(graph.items()):
        if name in MEETING_POINTS:
            continue
        for target in sorted(targets - NEUTRAL):
            if is_client(name) != is_client(target):
                crossings.append(f"{name} imports {target}")
    return crossings


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """For each module and each higher layer it reaches, one import chain that does it."""
    found = []
    for name in sorted(graph):
        rank = layer_of(name)
        if rank is None:
            continue
        above: dict[int, str] = {}
        for target in sorted(reachable(graph, name)):
            target_rank = layer_of(target)
            if target_rank is not None and target_rank < rank:
                above.setdefault(target_rank, target)
        for target_rank, target in sorted(above.items()):
            chain = " -> ".join(path_to(graph, name, target))
            found.append(f"{LAYERS[rank][0]} reaches {LAYERS[target_rank][0]}: {chain}")
    return found


def server_free_modules_using_aiohttp_web(modules: dict[str, Module]) -> list[str]:
    return sorted(
        name
        for name, module in modules.items()
        if module.uses_aiohttp_web and any(fnmatch.fnmatchcase(name, pattern) for pattern in WITHOUT_A_SERVER)
    )


def in_package(name: str, short: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in package(short))


def imports_across_apart_packages(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} ({source}) imports {target} ({forbidden})"
        for source, forbidden in APART
        for name, targets in sorted(graph.items())
        if in_package(name, source)
        for target in sorted(targets)
        if in_package(target, forbidden)
    ]


def imports_of_guarded_packages(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} imports {target}"
        for guarded, allowed in ONLY_FROM.items()
        for name, targets in sorted(graph.items())
        if name not in allowed and not in_package(name, guarded)
        for target in sorted(targets)
        if in_package(target, guarded)
    ]


def fast_path_route_imports(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} reaches {target}: {' -> '.join(path_to(graph, name, target))}"
        for name in FAST_PATH
        for target in sorted(reachable(graph, name))
        if in_package(target, "web.routes")
    ]


def modules_outside_the_layers(modules: dict[str, Module]) -> list[str]:
    return sorted(
        name
        for name in modules
        if layer_of(name) is None and not is_client(name) and name not in NEUTRAL | MEETING_POINTS
    )


# -- tests ---------------------------------------------------------------------------------


MODULES = read_package()
GRAPH = internal_imports(MODULES)


def test_the_import_graph_is_read_from_every_module() -> None:
    # Guards the checks below against passing on an empty or misread package.
    assert {"sse_hub.core.hub", "sse_hub.web.app", "sse_hub.broker.redis", "sse_hub.client.subscription"} <= set(GRAPH)
    assert {"sse_hub.core.hub", "sse_hub.config.settings"} <= GRAPH["sse_hub.web.app"]
    assert "sse_hub.client.errors" in GRAPH["sse_hub.client.publisher"]
    assert MODULES["sse_hub.web.app"].uses_aiohttp_web


def test_every_server_module_lives_in_a_layer() -> None:
    assert modules_outside_the_layers(MODULES) == []


def test_client_and_server_do_not_import_each_other() -> None:
    assert client_server_crossings(GRAPH) == []


def test_imports_go_one_way_down_the_layers() -> None:
    assert upward_imports(GRAPH) == []


def test_core_and_broker_and_mercure_keep_apart() -> None:
    assert imports_across_apart_packages(GRAPH) == []


def test_nothing_imports_ops_but_the_command() -> None:
    assert imports_of_guarded_packages(GRAPH) == []


def test_the_fast_publish_path_reaches_no_route_module() -> None:
    assert fast_path_route_imports(GRAPH) == []


def test_the_package_has_no_import_cycles() -> None:
    graphlib.TopologicalSorter(GRAPH).prepare()  # raises CycleError with the cycle


def test_core_imports_no_aiohttp_and_the_lower_layers_no_aiohttp_web() -> None:
    assert server_free_modules_using_aiohttp_web(MODULES) == []
    assert [name for name, module in MODULES.items() if module.uses_aiohttp and name.startswith("sse_hub.core")] == []


def test_each_rule_catches_an_import_planted_against_it() -> None:
    """The checks run on a copy of the graph with one forbidden import added each."""
    planted = {
        "sse_hub.core.hub": "sse_hub.web.app",  # upward
        "sse_hub.broker.memory": "sse_hub.core.hub",  # across
        "sse_hub.web.app": "sse_hub.ops.server",  # into ops
        "sse_hub.web.front": "sse_hub.web.routes.publish",  # fast path into a route
    }
    for source, target in planted.items():
        graph = {name: set(targets) for name, targets in GRAPH.items()}
        graph[source].add(target)
        found = upward_imports(graph) + imports_across_apart_packages(graph) + imports_of_guarded_packages(graph)
        found += fast_path_route_imports(graph)
        assert any(source in line and target in line for line in found), (source, target, found)


def test_importing_the_client_or_the_command_loads_no_server_module() -> None:
    # A real import, which also catches what the ast cannot see (sse_hub/__init__.py
    # growing an import, a plugin hook): `sse-hub publish` and `tail` start client-only.
    script = (
        "import sys, sse_hub.client, sse_hub.client.cli, sse_hub.cli\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.startswith('sse_hub'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert [name for name in loaded if not is_client(name) and name not in MEETING_POINTS | NEUTRAL] == []
