"""Stamp files that make dataset generation idempotent, and safe replacement of a dataset folder.

A dataset folder written by this package ends with ``.synthetic.json``: the generator version,
the seed and the sizes it was made with. The folder is built under a temporary name next to its
final place, the stamp is written last, and only then is the folder moved into place; so a folder
with a stamp is complete, and a later call with the same settings can skip the work.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

STAMP_FILE_NAME = ".synthetic.json"


def read_stamp(dataset_dir: Path) -> dict[str, Any] | None:
    """Read the stamp of a generated dataset folder.

    Args:
        dataset_dir: the dataset folder, e.g. ``data/quadruplets``.

    Returns:
        The stamp's content, or None when there is no readable stamp.
    """
    try:
        return json.loads((dataset_dir / STAMP_FILE_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def build_dataset_folder(
    dataset_dir: Path,
    stamp: Mapping[str, Any],
    build: Callable[[Path], None],
    force: bool = False,
) -> bool:
    """Build a dataset folder unless an identical stamp says it is already there.

    Args:
        dataset_dir: final location of the dataset.
        stamp: JSON-serialisable settings that fully determine the folder's content.
        build: writes the dataset into the folder it is given (a temporary sibling).
        force: rebuild even when the stamp matches.

    Returns:
        True when the folder was (re)built, False when it was up to date and left alone.

    Raises:
        FileExistsError: if ``dataset_dir`` exists, is not empty and was not written by this
            package (no stamp): it may hold real data, which is never deleted.
    """
    existing = read_stamp(dataset_dir)
    if not force and existing == dict(stamp):
        return False
    if existing is None and dataset_dir.exists() and any(dataset_dir.iterdir()):
        raise FileExistsError(
            f"{dataset_dir} exists and has no {STAMP_FILE_NAME}: it was not written by "
            "datamodules.synthetic, so it is left alone; move it away or choose another root"
        )
    staging_dir = dataset_dir.with_name(f".{dataset_dir.name}.partial")
    shutil.rmtree(staging_dir, ignore_errors=True)
    staging_dir.mkdir(parents=True)
    build(staging_dir)
    (staging_dir / STAMP_FILE_NAME).write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n")
    if dataset_dir.exists():
        shutil.rmtree(dataset_dir)
    staging_dir.rename(dataset_dir)
    return True
