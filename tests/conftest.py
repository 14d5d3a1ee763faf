"""Shared fixtures: tiny datasets written in the real on-disk layouts, and the real data."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.data.dfc2023.data import write_dfc2023
from tests.data.quadruplets.data import write_quadruplets


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def quadruplets_root(tmp_path: Path) -> Path:
    return write_quadruplets(tmp_path / "quadruplets")


@pytest.fixture
def dfc2023_root(tmp_path: Path) -> Path:
    return write_dfc2023(tmp_path / "dfc2023")


def _require_real_data(folder: Path) -> Path:
    """Returns ``folder`` if it exists; otherwise fails under ``CI=true`` and skips elsewhere.

    CI (``CI=true bash .ci/run``) runs on a clone with ``../shared`` beside it, so a missing
    folder there is a broken setup, and skipping would hide every test that reads real data.
    """
    if folder.is_dir():
        return folder
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(
            f"CI=true but the real data folder {folder} is missing; CI expects ../shared/realdata "
            f"beside the repository",
            pytrace=False,
        )
    pytest.skip(f"needs the real data folder {folder} (missing; CI=true would fail instead)")


@pytest.fixture
def require_real_data() -> Callable[[Path], Path]:
    """The real-data check: ``require_real_data(folder)`` returns it, fails in CI, or skips."""
    return _require_real_data


@pytest.fixture
def sen1floods11_chip_folder() -> Path:
    """The real Sen1Floods11 chip, ``../shared/realdata/sen1floods11`` beside the repository."""
    from datamodules.sen1floods11 import SHARED_CHIP_FOLDER

    return _require_real_data(SHARED_CHIP_FOLDER)
