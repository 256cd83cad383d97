"""Every file the docs cite exists, and so does every file a docstring or comment cites.

The text read: ``docs/*.md``, ``README.md``, and every docstring (module, class, function)
and comment of every module under ``sse_hub/``. What is checked in it:

- a path under ``sse_hub/`` names a file or a folder of the repository (a ``*`` in it
  must match something);
- a dotted name ``sse_hub.a.b`` is a module or a package, or one of them followed by a
  name it defines at its top level (``sse_hub.cli.main``; what follows that, a method or
  an attribute, is not checked);
- a path under another top-level folder (``docs/``, ``tests/``, ``bench/``...) exists;
- a bare ``.py`` or ``.md`` file name (``front.py``, ``routes/publish.py``) is the end of
  some file's path in the repository, unless it is another project's file that the text
  names as such (``EXTERNAL``).

A failure lists each citation as ``file:line: name``; fix the text, or the tree.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sse_hub"
# Top-level folders whose paths the text cites (``sse_hub/`` is checked on its own).
FOLDERS = ("bench", "deploy", "docs", "scripts", "tests")
# Folders that are not the repository's own files (nor is any other folder named ``.*``).
NOT_OURS = frozenset({"node_modules", "__pycache__", "test-artifacts", "sse_hub.egg-info"})
DOT_FOLDERS_OURS = frozenset({".ci"})
# Other projects' files, named as theirs (docs/performance-log.md: aiohttp's web_protocol.py).
EXTERNAL = frozenset({"web_protocol.py"})

# Not inside a longer path, a URL or a dotted name: nothing of those before the match.
_START = r"(?<![\w./:-])"
SLASHED = re.compile(_START + r"sse_hub/[\w./*-]*")
DOTTED = re.compile(_START + r"sse_hub(?:\.[A-Za-z_]\w*)+")
IN_FOLDER = re.compile(_START + r"(?:" + "|".join(FOLDERS) + r")/[\w./*-]*")
BARE = re.compile(_START + r"(?:[\w-]+/)*[\w-]+\.(?:py|md)\b")


# -- the text ------------------------------------------------------------------------------


def doc_files() -> list[Path]:
    return [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def module_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def doc_lines(path: Path) -> Iterator[tuple[int, str]]:
    yield from enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)


def docstrings_and_comments(path: Path) -> Iterator[tuple[int, str]]:
    """(line, text) for every docstring and every comment of a module."""
    source = path.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source, str(path))):
        if not isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        first = node.body[0] if node.body else None
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            for offset, line in enumerate(first.value.value.splitlines()):
                yield first.lineno + offset, line
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            yield token.start[0], token.string


def texts() -> Iterator[tuple[str, int, str, bool]]:
    """(file, line, text, is_code) for every line of text to check."""
    for path in doc_files():
        for number, line in doc_lines(path):
            yield str(path.relative_to(ROOT)), number, line, False
    for path in module_files():
        for number, line in docstrings_and_comments(path):
            yield str(path.relative_to(ROOT)), number, line, True


# -- the tree ------------------------------------------------------------------------------


def repository_files() -> list[str]:
    """Every file of the repository, as a path relative to its root."""
    found = []
    stack = [ROOT]
    while stack:
        for entry in stack.pop().iterdir():
            if entry.is_dir():
                if entry.name not in NOT_OURS and (entry.name in DOT_FOLDERS_OURS or entry.name[0] != "."):
                    stack.append(entry)
            else:
                found.append(entry.relative_to(ROOT).as_posix())
    return found


def path_exists(cited: str) -> bool:
    cited = cited.rstrip(".,:;")
    if "*" in cited:
        return any(ROOT.glob(cited.rstrip("/")))
    return (ROOT / cited).exists()


def module_path(name: str) -> Path | None:
    """The file of module or package ``name`` (dotted), or None."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def top_level_names(path: Path) -> set[str]:
    """The names a module defines at its top level (also under ``if``/``try``)."""
    names: set[str] = set()
    body = list(ast.parse(path.read_text(encoding="utf-8"), str(path)).body)
    while body:
        node = body.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
        elif isinstance(node, ast.If | ast.Try):
            body.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
            for handler in getattr(node, "handlers", []):
                body.extend(handler.body)
    return names


def dotted_exists(cited: str) -> bool:
    """A module or package, or one followed by a name it defines (then anything)."""
    parts = cited.split(".")
    for end in range(len(parts), 0, -1):
        path = module_path(".".join(parts[:end]))
        if path is None:
            continue
        return end == len(parts) or parts[end] in top_level_names(path)
    return False


def bare_exists(cited: str, files: list[str]) -> bool:
    if cited in EXTERNAL:
        return True
    return any(path == cited or path.endswith("/" + cited) for path in files)


# -- the checks ----------------------------------------------------------------------------


def dangling() -> list[str]:
    files = repository_files()
    found = []
    for where, number, line, _ in texts():
        cited = [match for match in SLASHED.findall(line) if not path_exists(match)]
        cited += [match for match in DOTTED.findall(line) if not dotted_exists(match)]
        cited += [match for match in IN_FOLDER.findall(line) if not path_exists(match)]
        for match in BARE.finditer(line):
            name = match.group(0)
            if name.startswith(("sse_hub/", *(folder + "/" for folder in FOLDERS))):
                continue  # checked above, as a path from the root
            if not bare_exists(name, files):
                cited.append(name)
        found += [f"{where}:{number}: {name}" for name in cited]
    return found


def test_the_text_is_read() -> None:
    # Guards the check against passing on text it failed to read.
    docs = {line for _, _, line, is_code in texts() if not is_code}
    comments = [line for where, _, line, is_code in texts() if is_code and where == "sse_hub/core/hub.py"]
    assert any("sse_hub/" in line for line in docs)
    assert any(line.lstrip().startswith("#") for line in comments)
    assert any("Exactly one writer per socket" in line for line in comments)


def test_the_check_finds_what_is_missing() -> None:
    files = repository_files()
    assert path_exists("sse_hub/core/flusher.py") and path_exists("sse_hub/broker/redis/")
    assert not path_exists("sse_hub/positions.py")
    assert dotted_exists("sse_hub.core.hub") and dotted_exists("sse_hub.broker.redis")
    assert dotted_exists("sse_hub.cli.main") and dotted_exists("sse_hub.core.hub.Hub.publish")
    assert not dotted_exists("sse_hub.models") and not dotted_exists("sse_hub.cli.no_such_name")
    assert bare_exists("front.py", files) and bare_exists("routes/publish.py", files)
    assert not bare_exists("sharded_subscriber.py", files) and not bare_exists("design.md", files)
    assert SLASHED.findall("see sse_hub/web/front.py.") == ["sse_hub/web/front.py."]
    assert BARE.findall("https://example.com/a/b.py, ../deploy/README.md") == []


def test_every_cited_file_is_in_the_repository() -> None:
    missing = dangling()
    assert not missing, "cited, but not in the repository:\n" + "\n".join(missing)
