"""Griffe extension for the API pages: each object is documented once, in its own module.

A package's ``__init__`` re-exports names from its modules (``from fusion.scene.pipeline import
SceneModel``), and the API pages render each package with its modules, so every re-exported
object would appear twice. This extension hides the re-exports from rendering; they stay in
Griffe's tree, and mkdocstrings registers their paths as further anchors of the object where it is
defined, so ``[SceneModel][fusion.scene.SceneModel]`` links to ``fusion.scene.pipeline.SceneModel``.
"""

from __future__ import annotations

from typing import Any

import griffe


class HideReexports(griffe.Extension):
    """Mark every alias that points inside its own package as not to be rendered."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Hide the internal re-exports of ``pkg`` and of every sub-package."""
        packages = [pkg]
        while packages:
            package = packages.pop()
            for member in package.members.values():
                if member.is_alias:
                    if member.target_path.startswith(package.path + "."):
                        member.public = False
                elif member.is_module:
                    packages.append(member)
