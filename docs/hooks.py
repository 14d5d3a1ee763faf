"""MkDocs hook: the site shows the figures of ``experiments/results/`` without copies in ``docs/``.

Pages link a figure by its path from the page's own file in the repository, e.g.
``![S1 + S2](../experiments/results/scene/s1_s2.png)`` in ``docs/scene.md``, so the link works
when the page is read on GitHub. MkDocs serves only what lies under ``docs/``: this hook adds each
figure that a page links (and only those) to the site at its repository path, and points the
page's links at it. A linked figure that does not exist is a warning, so ``mkdocs build
--strict`` fails on it. The figures themselves are made by the repository's commands
(``make reproduce``, ``experiments/scene_example.sh``, ``fusion evaluate --quicklook``).
"""

from __future__ import annotations

import logging
import posixpath
import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.figures")

FIGURES = "experiments/results/"
# a Markdown link or image target that climbs out of docs/ into experiments/results/
_LINK = re.compile(r"\]\(((?:\.\./)+" + re.escape(FIGURES) + r"[^)\s]+)\)")


def _repo_path(page_src_uri: str, target: str) -> str:
    """The repository path of ``target``, a link written in ``docs/<page_src_uri>``."""
    return posixpath.normpath(posixpath.join("docs", posixpath.dirname(page_src_uri), target))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add every figure of experiments/results/ that a page links to the site's files."""
    docs_dir = Path(config.docs_dir)
    repo_root = docs_dir.parent
    wanted: set[str] = set()
    for page in files.documentation_pages():
        text = Path(page.abs_src_path).read_text(encoding="utf-8")
        for target in _LINK.findall(text):
            path = _repo_path(page.src_uri, target)
            if not path.startswith(FIGURES) or not (repo_root / path).is_file():
                log.warning("%s links %s, which is not a file of %s", page.src_uri, target, FIGURES)
                continue
            wanted.add(path)
    for path in sorted(wanted):
        files.append(File(path, str(repo_root), config.site_dir, config.use_directory_urls))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point links at the figures' place in the site, relative to the page."""
    page_dir = posixpath.dirname(page.file.src_uri) or "."

    def relink(match: re.Match[str]) -> str:
        path = _repo_path(page.file.src_uri, match.group(1))
        return "](" + posixpath.relpath(path, page_dir) + ")"

    return _LINK.sub(relink, markdown)
