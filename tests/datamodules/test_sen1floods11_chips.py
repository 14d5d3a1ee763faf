import json
import logging
from pathlib import Path

import pytest
import torch

from datamodules import Sen1Floods11Chips, Sen1Floods11ChipsDataModule
from datamodules.sen1floods11_chips import DEFAULT_SPLITS, read_splits
from tests.data.sen1floods11.data import write_official_chips

SPLITS = {
    "train": ["Wet_1", "Dry_1", "EmptyS1_1", "NoLabel_1"],
    "val": ["NoS1_1"],
    "test": ["Wet_2"],
}


@pytest.fixture(scope="module")
def chips_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_official_chips(tmp_path_factory.mktemp("chips"))


def test_missing_and_empty_files_make_modalities_absent(chips_root: Path) -> None:
    with pytest.warns(UserWarning) as caught:
        train = Sen1Floods11Chips(chips_root, "train", tile_size=16, splits=SPLITS)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2  # one warning per chip left out, naming it
    assert any("'EmptyS1_1'" in m and "no modality has data" in m for m in messages)
    assert any("'NoLabel_1'" in m and "no labelled pixel" in m for m in messages)
    assert set(train.chips) == {"Wet_1", "Dry_1"} and set(train.excluded) == {
        "EmptyS1_1",
        "NoLabel_1",
    }
    assert train.chip_modalities == {"Wet_1": ("s1", "s2"), "Dry_1": ("s1",)}
    assert len(train) == 8  # two 32 px chips of four 16 px tiles
    summary = train.summary()
    assert "train split: 2 chips, 8 tiles" in summary
    assert "s1: 1 chips, 4 tiles" in summary and "s1+s2: 1 chips, 4 tiles" in summary
    assert "left out: EmptyS1_1" in summary and "left out: NoLabel_1" in summary
    dry = [i for i in range(len(train)) if train.tile_name(i).startswith("Dry_1")]
    sample = train[dry[0]]
    assert sample["present"].tolist() == [True, False] and not sample["s2"].any()
    val = Sen1Floods11Chips(chips_root, "val", tile_size=16, splits=SPLITS)
    assert val.chip_modalities == {"NoS1_1": ("s2",)}
    assert val[0]["present"].tolist() == [False, True]


def test_training_draws_among_the_tiles_modalities_and_eval_counts_the_rest(
    chips_root: Path,
) -> None:
    with pytest.warns(UserWarning):
        train = Sen1Floods11Chips(
            chips_root, "train", tile_size=16, splits=SPLITS, modality_sampling="uniform"
        )
    train.generator = torch.Generator().manual_seed(0)
    dry = next(i for i in range(len(train)) if train.tile_name(i).startswith("Dry_1"))
    assert all(train[dry]["present"].tolist() == [True, False] for _ in range(10))
    test = Sen1Floods11Chips(chips_root, "test", tile_size=16, splits=SPLITS)
    assert test[0]["present"].all()
    val = Sen1Floods11Chips(
        chips_root, "val", tile_size=16, splits=SPLITS, modality_sampling=["s1"]
    )
    assert not val[0]["present"].any()  # the fixed subset has no file there: left out, counted


def test_split_files_official_csv_and_json(chips_root: Path, tmp_path: Path) -> None:
    for split, name in (
        ("train", "flood_train_data"),
        ("valid", "flood_valid_data"),
        ("test", "flood_test_data"),
    ):
        chips = {"train": ["Wet_1", "Dry_1"], "valid": ["NoS1_1"], "test": ["Wet_2"]}[split]
        lines = [f"{c}_S1Hand.tif,{c}_LabelHand.tif" for c in chips]
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    assert read_splits(tmp_path) == {
        "train": ("Wet_1", "Dry_1"),
        "val": ("NoS1_1",),
        "test": ("Wet_2",),
    }
    split_json = tmp_path / "splits.json"
    split_json.write_text(json.dumps({"train": ["Wet_1"], "test": ["Wet_2"]}))
    assert read_splits(split_json)["val"] == ()
    assert read_splits(None) == DEFAULT_SPLITS


@pytest.mark.parametrize(
    ("splits", "error", "message"),
    [
        ({"train": ["Atlantis_1"]}, FileNotFoundError, "'Atlantis_1'.*no file"),
        ({"train": ["Wet_1"], "test": ["Wet_1"]}, ValueError, "both the 'train' and 'test'"),
        ({"training": ["Wet_1"]}, ValueError, "Unknown split name"),
        ({"train": ["EmptyS1_1"]}, ValueError, "holds no usable chip"),
    ],
)
def test_bad_splits_are_named(chips_root: Path, splits, error, message) -> None:
    with pytest.warns(UserWarning) if "EmptyS1_1" in str(splits) else _nothing():
        with pytest.raises(error, match=message):
            Sen1Floods11Chips(chips_root, "train", tile_size=16, splits=splits)


def test_malformed_split_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "splits.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_splits(bad)
    (tmp_path / "flood_train_data.csv").write_text("Wet_1_S1Hand.tif,Wet_1_LabelHand.tif\n")
    with pytest.raises(FileNotFoundError, match="flood_valid_data.csv"):
        read_splits(tmp_path)
    for name in ("flood_valid_data.csv", "flood_test_data.csv"):
        (tmp_path / name).write_text("")
    (tmp_path / "flood_train_data.csv").write_text("Wet_1.tif,Wet_1_LabelHand.tif\n")
    with pytest.raises(ValueError, match="flood_train_data.csv, line 1"):
        read_splits(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_splits(tmp_path / "nowhere.json")


def test_datamodule_logs_each_splits_summary(chips_root: Path, caplog) -> None:
    dm = Sen1Floods11ChipsDataModule(
        root=str(chips_root), tile_size=16, splits=SPLITS, batch_size=2
    )
    with (
        caplog.at_level(logging.INFO, logger="datamodules.sen1floods11_chips"),
        pytest.warns(UserWarning),
    ):
        dm.setup("fit")
    text = caplog.text
    assert "train split: 2 chips" in text and "val split: 1 chips" in text
    batch = next(iter(dm.train_dataloader()))
    assert batch["s1"].shape == (2, 2, 16, 16)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args) -> None:
        return None
