"""Every `fusion.x` / `datamodules.x` a docstring or a docs page names exists, and every file path.

Docstrings point readers (and the documentation site's API pages) at other objects by their
dotted path, e.g. `fusion.scene.predict.predict_scene`. A module moved or a name changed
leaves such a reference dangling; this test resolves each one and fails with the list of those
that no longer resolve, naming where they are.
"""

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("fusion", "datamodules")
REFERENCE = re.compile(r"`+:?(?:\w+:)?`?((?:fusion|datamodules)(?:\.\w+)+)(?:\(\))?`+")


def docstrings(path: Path) -> list[tuple[int, str]]:
    """The module's, classes' and functions' docstrings with their line numbers."""
    tree = ast.parse(path.read_text())
    found = []
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                found.append((getattr(node, "lineno", 1), text))
    return found


def resolves(dotted: str) -> bool:
    """Whether ``dotted`` names a module, or an attribute reached from the longest module."""
    parts = dotted.split(".")
    for split in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for name in parts[split:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


def test_dotted_references_in_docstrings_resolve() -> None:
    dangling = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for line, text in docstrings(path):
                for dotted in sorted(set(REFERENCE.findall(text))):
                    if not resolves(dotted):
                        dangling.append(f"{path.relative_to(REPO)}:{line}: {dotted}")
    assert not dangling, "docstrings name objects that do not exist:\n" + "\n".join(dangling)


def test_the_check_finds_a_dangling_reference() -> None:
    assert resolves("fusion.cli.main") and resolves("datamodules")
    assert not resolves("fusion.cli.no_such_function")
    assert not resolves("fusion.no_such_module.thing")
    assert REFERENCE.findall("see `fusion.scene.predict` and ``datamodules.dataset.Modality``") == [
        "fusion.scene.predict",
        "datamodules.dataset.Modality",
    ]


def test_paths_and_names_in_the_docs_exist() -> None:
    # The pages name files and objects in code spans (not links, which mkdocs --strict checks).
    dangling = []
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    file_path = re.compile(
        r"\b((?:fusion|datamodules|benchmarks|tests|experiments)/[\w/.\-]+\.(?:py|yaml|sh))\b"
    )
    for page in pages:
        text = page.read_text()
        for path in sorted(set(file_path.findall(text))):
            if not (REPO / path).exists():
                dangling.append(f"{page.relative_to(REPO)}: {path}")
        for dotted in sorted(set(re.findall(r"`((?:fusion|datamodules)(?:\.\w+)+)", text))):
            if not resolves(dotted):
                dangling.append(f"{page.relative_to(REPO)}: {dotted}")
    assert not dangling, "pages name files or objects that do not exist:\n" + "\n".join(dangling)
