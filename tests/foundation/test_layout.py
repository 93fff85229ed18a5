"""The house holds its shape: who may import whom, no import cycle, no citation of files outside the repository.

Read from the source (the AST of every module, imports inside functions
included), never by importing it:

* the domains — ``broadcast``, ``hotline``, ``cases``, ``schedules``, ``alerts``, ``phonecast`` — never
  import each other; a capability crosses through a Protocol the receiving
  domain defines, satisfied in ``server.py`` (the one seam read across: ``phonecast`` implements the
  hotline's ``hotline.phonecast`` Protocol and may import that module, and only it);
* the leaves ``tts`` and ``storage``, and the foundation ``common``,
  ``accounts``, ``areas``, import no domain;
* nothing below the composition root imports ``web``, ``server`` or ``cli``
  (``web`` may import the domains, never ``server`` or ``cli``; ``server``
  never imports ``cli``);
* no module imports another that (directly or not) imports it back;
* no module, test or benchmark cites ``design.md`` or ``../shared``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = ("broadcast", "hotline", "cases", "schedules", "alerts", "phonecast")
# Seams a domain may read from another: the Protocol module the other side owns (and nothing else of it).
SEAMS = {"phonecast": ("hotline.phonecast",)}
LEAVES = ("tts", "storage")
FOUNDATION = ("common", "accounts", "areas")
TOP = ("web", "server", "cli")
PACKAGES = (*FOUNDATION, *LEAVES, *DOMAINS, "web", "cli")
MODULES = ("server", "settings")
# What each group may not import, besides the rules of its own.
FORBIDDEN = {
    **{package: {*DOMAINS, *TOP} - {package} for package in (*FOUNDATION, *LEAVES)},
    **{package: {*DOMAINS, *TOP} - {package} for package in DOMAINS},
    "web": {"server", "cli"},
    "server": {"cli"},
    "settings": {*DOMAINS, *TOP, *FOUNDATION, *LEAVES},
}
# Files that name the forbidden citations in order to forbid them.
CITATION_GUARDS = {"tests/foundation/test_docs.py", "tests/foundation/test_layout.py"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Every first-party module by its dotted name (migration scripts are data, not modules)."""
    modules: dict[str, Path] = {name: root / f"{name}.py" for name in MODULES if (root / f"{name}.py").exists()}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "versions" in path.relative_to(root).parts:
                continue
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_names(path: Path) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of every absolute import in the file, at any depth (functions included)."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def violations(modules: dict[str, Path], root: Path = ROOT) -> list[str]:
    found = []
    for name, path in modules.items():
        forbidden = FORBIDDEN.get(name.split(".")[0], set())
        seams = SEAMS.get(name.split(".")[0], ())
        for line, imported in imported_names(path):
            if any(imported == seam or imported.startswith(f"{seam}.") for seam in seams):
                continue
            if imported.split(".")[0] in forbidden:
                found.append(f"{path.relative_to(root).as_posix()}:{line} imports {imported}")
    return sorted(found)


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module → the first-party modules it imports (``from a.b import c`` is a.b.c when that is a module)."""

    def resolve(dotted: str) -> str | None:
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            candidate = ".".join(parts[:end])
            if candidate in modules:
                return candidate
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {resolve(imported) for _line, imported in imported_names(path)}
        graph[name] = {target for target in targets if target is not None and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_domain_imports_another_and_no_leaf_or_foundation_imports_a_domain() -> None:
    modules = module_files()
    assert {"cases.workflow", "hotline.intake", "broadcast.dispatcher", "schedules.scheduler"} <= modules.keys()
    assert violations(modules) == []


def test_no_two_modules_import_each_other_even_through_others() -> None:
    assert cycles(import_graph(module_files())) == []


def test_the_checks_see_imports_inside_functions_and_cycles_through_a_third_module(tmp_path: Path) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "cases" / "calls.py").write_text("def later():\n    from hotline.ami import AmiLink\n")
    (tmp_path / "tts" / "speak.py").write_text("import broadcast.production\n")
    (tmp_path / "web" / "a.py").write_text("from web.b import thing\n")
    (tmp_path / "web" / "b.py").write_text("def thing():\n    from web.c import other\n")
    (tmp_path / "web" / "c.py").write_text("import web.a\n")
    modules = module_files(tmp_path)
    assert violations(modules, tmp_path) == [
        "cases/calls.py:2 imports hotline.ami.AmiLink",
        "tts/speak.py:1 imports broadcast.production",
    ]
    assert cycles(import_graph(modules)) == [["web.a", "web.b", "web.c"]]


def project_text_files() -> list[Path]:
    skipped = {".venv", "data", "build", "__pycache__", "cunxiang.egg-info"}
    return sorted(
        path
        for suffix in ("*.py", "*.j2", "*.html", "*.js", "*.css", "*.sh", "*.toml", "*.ini", "*.service")
        for path in ROOT.rglob(suffix)
        if not any(part in skipped or part.startswith(".") for part in path.relative_to(ROOT).parts)
        and path.relative_to(ROOT).as_posix() not in CITATION_GUARDS
    )


@pytest.mark.parametrize("needle", ["design" + ".md", "../" + "shared"])
def test_no_code_test_or_script_cites_a_file_outside_the_repository(needle: str) -> None:
    citing = [path.relative_to(ROOT).as_posix() for path in project_text_files() if needle in path.read_text("utf-8")]
    assert citing == []
