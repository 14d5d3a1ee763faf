"""Evaluation loaders of a distributed run split the tiles among the processes, never padding.

Two processes are simulated: ``torch.distributed`` is made to report an initialised group of
world size 2 and, in turn, each rank.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch.distributed as dist
from torch.utils.data import DistributedSampler, RandomSampler, SequentialSampler

from datamodules import QuadrupletsDataModule
from datamodules.samplers import evaluation_sampler
from tests.data.quadruplets.data import write_quadruplets

WORLD_SIZE = 2


@pytest.fixture
def odd_root(tmp_path: Path) -> Path:
    """Quadruplets with 3 tiles per region: 3 validation and 3 test tiles, 6 training ones."""
    return write_quadruplets(tmp_path / "quadruplets", tiles_per_region=3)


def pretend_rank(monkeypatch: pytest.MonkeyPatch, rank: int) -> None:
    """Make ``torch.distributed`` report process ``rank`` of an initialised group of two."""
    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: WORLD_SIZE)
    monkeypatch.setattr(dist, "get_rank", lambda *args, **kwargs: rank)


@pytest.mark.parametrize("split", ["val", "test"])
def test_processes_share_an_odd_split_without_repeats(
    odd_root: Path, monkeypatch: pytest.MonkeyPatch, split: str
) -> None:
    dm = QuadrupletsDataModule(root=str(odd_root), batch_size=2)
    dm.setup("validate" if split == "val" else "test")
    dataset = getattr(dm, f"{split}_dataset")
    assert len(dataset) == 3
    indices, names = [], []
    for rank in range(WORLD_SIZE):
        with monkeypatch.context() as patch:
            pretend_rank(patch, rank)
            loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
            assert isinstance(loader.sampler, DistributedSampler)  # Lightning keeps it
            indices.append(list(loader.sampler))
            names += [name for batch in loader for name in batch["name"]]
    assert indices == [[0, 2], [1]]  # disjoint, unpadded, in order
    assert sorted(names) == sorted(dataset[i]["name"] for i in range(len(dataset)))
    assert len(set(names)) == 3


def test_training_and_single_process_loaders_are_unchanged(
    odd_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dm = QuadrupletsDataModule(root=str(odd_root), batch_size=2)
    dm.setup("fit")
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    assert isinstance(dm.train_dataloader().sampler, RandomSampler)
    pretend_rank(monkeypatch, 1)
    assert isinstance(dm.train_dataloader().sampler, RandomSampler)  # Lightning's to replace


def test_a_split_smaller_than_the_world_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pretend_rank(monkeypatch, 0)
    with pytest.raises(ValueError, match="1 tiles"):
        evaluation_sampler([0])
    assert list(evaluation_sampler([0, 1]) or []) == [0]
    monkeypatch.setattr(dist, "get_world_size", lambda *args, **kwargs: 1)
    assert evaluation_sampler([0]) is None
