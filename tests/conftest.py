"""Shared fixtures: tiny datasets written in the real on-disk layouts."""

from __future__ import annotations

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
