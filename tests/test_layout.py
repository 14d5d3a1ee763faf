"""No import circles in ``fusion/`` and ``datamodules/``: a command imports the code it runs.

The check reads each module's source (nothing is imported) and collects the imports that run
when the module is imported: the statements at the top of the file, those under ``if
TYPE_CHECKING:`` (a circle of types is still a circle of the design) and in ``try`` blocks, but
not those inside functions. Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, except
those the importing module sits in (Python has started them before it). Any cycle in that graph
fails the test, printed module by module.
"""

import ast
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fusion", "datamodules")

Graph = dict[str, set[str]]


def module_names(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted name -> file of every module of the packages (a package by its ``__init__``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def import_statements(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The imports a module runs when it is imported, and those under ``if TYPE_CHECKING:``."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            pending.extend(
                child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)
            )


def imported_modules(
    name: str, path: Path, statement: ast.Import | ast.ImportFrom, modules: Collection[str]
) -> Iterator[tuple[str, bool]]:
    """``(module, named)`` for each module a statement runs.

    ``named`` is True for a module the statement takes something from (or binds), False for a
    package that only runs first because a module inside it is imported.
    """
    if isinstance(statement, ast.Import):
        targets = [alias.name for alias in statement.names]
    else:
        base = statement.module or ""
        if statement.level:  # relative: from the importing module's package upwards
            package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
            package = package[: len(package) - statement.level + 1]
            base = ".".join([*package, base] if base else package)
        submodules = [f"{base}.{alias.name}" for alias in statement.names]
        targets = [module for module in submodules if module in modules]
        if len(targets) < len(submodules):  # names defined in ``base`` itself
            targets.append(base)
    for target in targets:
        parts = target.split(".")
        for end in range(1, len(parts)):
            yield ".".join(parts[:end]), False
        yield target, True


def import_graph(root: Path, packages: Iterable[str] = PACKAGES) -> Graph:
    """Module -> the modules of ``packages`` it imports at module level."""
    modules = module_names(root, packages)
    graph: Graph = {}
    for name, path in modules.items():
        ancestors = {".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 1)}
        edges = set()
        for statement in import_statements(ast.parse(path.read_text())):
            for target, named in imported_modules(name, path, statement, modules):
                if target in modules and target != name and (named or target not in ancestors):
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: Graph) -> list[list[str]]:
    """One cycle through each strongly connected group of modules, as ``[a, b, ..., a]``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's algorithm
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
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [shortest_cycle(graph, group) for group in groups]


def shortest_cycle(graph: Graph, group: list[str]) -> list[str]:
    """The shortest path from the group's first module back to itself, inside the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & members):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"{group} holds no cycle")


def test_no_import_circles() -> None:
    found = cycles(import_graph(REPO))
    listed = "\n".join(" -> ".join(cycle) for cycle in found)
    assert not found, f"module-level import circles:\n{listed}"


def test_the_check_finds_circles_of_types_and_through_packages(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub.b import B\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from pkg.sub.b import B\n"
    )
    (package / "sub" / "b.py").write_text("from . import c\n\nB = 1\n")
    (package / "sub" / "c.py").write_text(
        "import pkg.a\n\n\ndef later():\n    from pkg import d\n"  # a function's import: no edge
    )
    (package / "d.py").write_text("from pkg.sub import c\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.sub.b"] == {"pkg.sub.c"}  # its own package's __init__ is no edge
    assert graph["pkg.d"] == {"pkg.sub", "pkg.sub.c"}  # importing pkg.sub.c runs pkg.sub
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c", "pkg.a"]]
