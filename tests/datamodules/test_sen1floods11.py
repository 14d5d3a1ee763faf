import re
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio
import torch

from datamodules import IGNORE_INDEX, Sen1Floods11Chip, Sen1Floods11DataModule
from datamodules.datamodule import check_disjoint_splits
from datamodules.sen1floods11 import SHARED_CHIP_FOLDER
from tests.data.sen1floods11.data import write_sen1floods11

# The real chip: skipped where ../shared/realdata/sen1floods11 is missing, failed under CI=true
# (the `sen1floods11_chip_folder` fixture of tests/conftest.py).
needs_real_chip = pytest.mark.usefixtures("sen1floods11_chip_folder")


def _pixels(dataset: Sen1Floods11Chip) -> set[tuple[int, int]]:
    """Every (row, column) of the chip that a tile of the dataset covers."""
    return {
        (int(w.row_off) + r, int(w.col_off) + c)
        for _, w in dataset.tiles
        for r in range(int(w.height))
        for c in range(int(w.width))
    }


def test_three_disjoint_areas(tmp_path: Path) -> None:
    root = write_sen1floods11(tmp_path / "chips", size=64)
    splits = {s: Sen1Floods11Chip(root, split=s, tile_size=16) for s in ("train", "val", "test")}
    assert [len(splits[s]) for s in ("train", "val", "test")] == [8, 4, 4]
    train, val, test = (_pixels(splits[s]) for s in ("train", "val", "test"))
    assert train == {(r, c) for r in range(32) for c in range(64)}  # top half
    assert val == {(r, c) for r in range(32, 64) for c in range(32)}  # bottom left
    assert test == {(r, c) for r in range(32, 64) for c in range(32, 64)}  # bottom right
    check_disjoint_splits(splits)  # no error
    # Overlapping training tiles stay inside the top half.
    strided = Sen1Floods11Chip(root, split="train", tile_size=16, stride=8)
    assert len(strided) == 3 * 7 and _pixels(strided) == train
    with pytest.raises(ValueError, match="Splits 'val' and 'test' overlap"):
        check_disjoint_splits({"val": splits["val"], "test": splits["val"]})
    with pytest.raises(ValueError, match="quarter"):
        Sen1Floods11Chip(root, split="val", tile_size=48)


@needs_real_chip
def test_tiles_shapes_dtypes_and_labels() -> None:
    train = Sen1Floods11Chip(split="train", tile_size=64)
    val = Sen1Floods11Chip(split="val", tile_size=64)
    test = Sen1Floods11Chip(split="test", tile_size=64)
    assert len(train) == 32 and len(val) == len(test) == 16
    sample = train[5]
    assert sample["s1"].shape == (2, 64, 64) and sample["s1"].dtype == torch.float32
    assert sample["s2"].shape == (4, 64, 64) and sample["s2"].dtype == torch.float32
    assert sample["mask"].shape == (64, 64) and sample["mask"].dtype == torch.int64
    values = set()
    for ds in (train, val, test):
        for i in range(len(ds)):
            values |= set(ds[i]["mask"].unique().tolist())
    assert values == {0, 1, IGNORE_INDEX}


def test_spatial_split_and_band_selection(sen1floods11_chip_folder: Path) -> None:
    train = Sen1Floods11Chip(split="train", tile_size=128, normalize=False)
    val = Sen1Floods11Chip(split="val", tile_size=128, normalize=False)
    test = Sen1Floods11Chip(split="test", tile_size=128, normalize=False)
    rows = {int(w.row_off) for _, w in train.tiles}
    assert rows == {0, 128} and {int(w.row_off) for _, w in val.tiles} == {256, 384}
    assert {int(w.col_off) for _, w in val.tiles} == {0, 128}
    assert {int(w.col_off) for _, w in test.tiles} == {256, 384}
    with rasterio.open(sen1floods11_chip_folder / "Spain_7370579_S2Hand.tif") as src:
        b8 = src.read(8)[256:384, 128:256]
    tile = val[1]
    assert val.tile_name(1) == "Spain_7370579_r256_c128"
    assert torch.equal(tile["s2"][3], torch.from_numpy(b8).float())


@needs_real_chip
def test_water_is_darker_in_sar_and_wetter_in_s2() -> None:
    ds = Sen1Floods11Chip(split="train", tile_size=128, normalize=False)
    vv, ndwi, water = [], [], []
    for i in range(len(ds)):
        s = ds[i]
        vv.append(s["s1"][0].flatten())
        green, nir = s["s2"][1].flatten(), s["s2"][3].flatten()
        ndwi.append((green - nir) / (green + nir + 1e-6))
        water.append(s["mask"].flatten())
    vv, ndwi, water = torch.cat(vv), torch.cat(ndwi), torch.cat(water)
    assert vv[water == 1].mean() < vv[water == 0].mean() - 4
    assert ndwi[water == 1].mean() > ndwi[water == 0].mean() + 0.2


@needs_real_chip
def test_stride_overlaps_training_tiles_only() -> None:
    assert len(Sen1Floods11Chip(split="train", tile_size=128, stride=64)) == 3 * 7
    assert len(Sen1Floods11Chip(split="val", tile_size=128, stride=64)) == 2 * 2


@needs_real_chip
def test_datamodule() -> None:
    dm = Sen1Floods11DataModule(batch_size=4, tile_size=64, crop_size=48)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["s1"].shape == (4, 2, 48, 48)
    assert dm.modality_specs == {"s1": 2, "s2": 4}


def test_missing_chip_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="No Sen1Floods11 chip"):
        Sen1Floods11Chip(root=tmp_path)
    (tmp_path / "X_1_S1Hand.tif").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="X_1_S2Hand.tif"):
        Sen1Floods11Chip(root=tmp_path)


def test_real_chip_is_expected_beside_the_repository() -> None:
    repository = Path(__file__).resolve().parents[2]
    assert SHARED_CHIP_FOLDER == repository.parent / "shared" / "realdata" / "sen1floods11"


def test_missing_real_data_fails_under_ci(
    require_real_data: Callable[[Path], Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "shared/realdata/sen1floods11"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=re.escape(str(missing))):
        require_real_data(missing)
    missing.mkdir(parents=True)
    assert require_real_data(missing) == missing


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_real_data_skips_outside_ci(
    require_real_data: Callable[[Path], Path],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    ci: str | None,
) -> None:
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    missing = tmp_path / "absent"
    with pytest.raises(pytest.skip.Exception, match=re.escape(str(missing))):
        require_real_data(missing)
