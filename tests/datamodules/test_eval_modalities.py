"""``set_eval_modalities`` switches what validation and test batches (and so the model) see."""

from pathlib import Path

import pytest
import torch

from datamodules import QuadrupletsDataModule
from fusion.tasks.batches import split_batch

NO_DATA_ID = {"dnw": 9}  # an absent class map holds its no-data id, other modalities zeros


def batches(dm: QuadrupletsDataModule, split: str) -> list[dict]:
    loader = dm.test_dataloader() if split == "test" else dm.val_dataloader()
    return list(loader)


def assert_shows_only(batch: dict, full: dict, shown: list[str], modalities: tuple) -> None:
    """``batch`` holds ``full``'s data for ``shown`` and the absence placeholders elsewhere."""
    for column, name in enumerate(modalities):
        present = batch["present"][:, column]
        valid = batch["valid"][:, column]
        if name in shown:
            assert present.all(), name
            torch.testing.assert_close(batch[name], full[name], rtol=0, atol=0)
            torch.testing.assert_close(valid, full["valid"][:, column], rtol=0, atol=0)
        else:
            assert not present.any(), name
            assert not valid.any(), name
            assert (batch[name] == NO_DATA_ID.get(name, 0)).all(), name
            assert not torch.equal(batch[name], full[name]), name  # the real data differs
    torch.testing.assert_close(batch["mask"], full["mask"], rtol=0, atol=0)  # labels unchanged
    inputs, _ = split_batch(batch, modalities)
    assert sorted(inputs) == sorted(shown)  # what the backbone receives


@pytest.mark.parametrize("split", ["test", "val"])
def test_subset_switches_the_data_the_loader_shows(quadruplets_root: Path, split: str) -> None:
    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=2)
    dm.setup("test" if split == "test" else "validate")
    full = batches(dm, split)
    assert len(full) == 1 and full[0]["present"].all()
    for shown in (["dem"], ["s1", "s2"], ["s2", "dnw"]):
        dm.set_eval_modalities(shown)
        (batch,) = batches(dm, split)
        assert_shows_only(batch, full[0], shown, dm.modalities)
    dm.set_eval_modalities(list(dm.modalities))
    (batch,) = batches(dm, split)
    assert_shows_only(batch, full[0], list(dm.modalities), dm.modalities)


def test_subset_set_before_setup_is_used_by_the_new_datasets(quadruplets_root: Path) -> None:
    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=2)
    dm.set_eval_modalities(["dnw"])
    dm.setup("test")
    (batch,) = batches(dm, "test")
    assert batch["present"].tolist() == [[False, False, False, True]] * 2


def test_unknown_modality_is_refused_by_name(quadruplets_root: Path) -> None:
    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=2)
    dm.setup("test")
    with pytest.raises(ValueError, match=r"Unknown modality name\(s\) \['sar'\].*'s1', 's2'"):
        dm.set_eval_modalities(["s1", "sar"])
    with pytest.raises(ValueError, match="modality set is empty"):
        dm.set_eval_modalities([])
