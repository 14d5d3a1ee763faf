"""ThresholdTask: each rule on hand-made batches whose answer is known, Otsu per tile, thresholds
fitted on a synthetic training set, and ``fusion fit`` + ``fusion evaluate`` on the real chip."""

import csv
from pathlib import Path

import pytest
import torch
from torch import Tensor

from fusion.cli import main
from fusion.tasks import ThresholdTask
from fusion.tasks.threshold import NDWI, VH, best_iou_threshold, tile_otsu_thresholds
from tests.tiny_models import quiet_run_arguments

REPO = Path(__file__).resolve().parents[3]
MODALITIES = {"s1": 2, "s2": 4}
STATS = {
    "s1": {"mean": [-12.0, -20.0], "std": [6.0, 5.0]},
    "s2": {"mean": [1200.0, 1100.0, 1000.0, 1500.0], "std": [300.0, 400.0, 500.0, 900.0]},
}
WATER, LAND = 1, 0


def s1_raster(vh_db: Tensor) -> Tensor:
    """``[B, 2, H, W]`` normalized VV (-10 dB), VH from VH dB ``[B, H, W]``."""
    physical = torch.stack([torch.full_like(vh_db, -10.0), vh_db], dim=1)
    mean, std = (torch.tensor(STATS["s1"][key])[:, None, None] for key in ("mean", "std"))
    return (physical - mean) / std


def s2_raster(ndwi: Tensor) -> Tensor:
    """``[B, 4, H, W]`` normalized B2, B3, B4, B8 whose NDWI is ``ndwi`` ``[B, H, W]``."""
    green = 1000.0 * (1 + ndwi)  # green + nir = 2000, green - nir = 2000 * ndwi
    nir = 1000.0 * (1 - ndwi)
    physical = torch.stack([torch.full_like(ndwi, 900.0), green, torch.full_like(ndwi, 800.0), nir])
    mean, std = (torch.tensor(STATS["s2"][key])[:, None, None] for key in ("mean", "std"))
    return (physical.transpose(0, 1) - mean) / std


def make_batch(
    vh_db: Tensor,
    ndwi: Tensor,
    present: list[tuple[bool, bool]],
    valid: Tensor | None = None,
    mask: Tensor | None = None,
) -> dict:
    """A batch of the sample contract; ``valid`` ``[B, 2, H, W]`` defaults to ``present``."""
    present_tensor = torch.tensor(present)  # [B, 2]
    if valid is None:
        valid = torch.ones(*present_tensor.shape, *vh_db.shape[1:], dtype=torch.bool)
    valid = valid & present_tensor[:, :, None, None]
    return {
        "s1": s1_raster(vh_db),
        "s2": s2_raster(ndwi),
        "present": present_tensor,
        "valid": valid,
        "mask": torch.zeros(vh_db.shape, dtype=torch.int64) if mask is None else mask,
        "name": [f"tile_{i}" for i in range(len(vh_db))],
    }


def test_fixed_rule_votes_per_shown_modality_and_joins_them() -> None:
    task = ThresholdTask(MODALITIES, stats=STATS)  # VH < -20 dB, NDWI > 0
    # Columns: VH -25 / -15 dB and NDWI +0.4 / -0.4 in all four combinations.
    row_vh = torch.tensor([-25.0, -25.0, -15.0, -15.0])
    row_ndwi = torch.tensor([0.4, -0.4, 0.4, -0.4])
    vh_db, ndwi = row_vh.expand(4, 1, 4), row_ndwi.expand(4, 1, 4)
    present = [(True, False), (False, True), (True, True), (True, True)]
    valid = torch.ones(4, 2, 1, 4, dtype=torch.bool)
    # The last tile: S1 no data in columns 0 and 1, S2 no data in columns 0 and 2.
    valid[3, 0, 0, :2] = False
    valid[3, 1, 0, [0, 2]] = False
    prediction = task.predict_step(make_batch(vh_db, ndwi, present, valid), 0)
    assert prediction["name"] == ["tile_0", "tile_1", "tile_2", "tile_3"]
    expected = torch.tensor(
        [
            [1, 1, 0, 0],  # S1 only: VH below -20 dB, whatever the absent S2 raster holds
            [1, 0, 1, 0],  # S2 only: NDWI above 0
            [1, 1, 1, 0],  # both: either
            [0, 0, 0, 0],  # no data: col 0 neither, col 1 S2 only (dry), col 2 S1 only (dry)
        ]
    )
    assert torch.equal(prediction["semantic"], expected[:, None, :])
    assert prediction["semantic"].dtype == torch.int64


def test_invalid_pixels_do_not_vote_but_the_other_modality_does() -> None:
    task = ThresholdTask(MODALITIES, stats=STATS, vh_threshold_db=-18.0, ndwi_threshold=0.2)
    vh_db = torch.tensor([[[-25.0, -25.0, -19.0, -10.0]]])
    ndwi = torch.tensor([[[0.1, 0.5, 0.3, 0.5]]])
    valid = torch.ones(1, 2, 1, 4, dtype=torch.bool)
    valid[0, 0, 0, 1] = False  # S1's water vote in column 1 is no data; S2 says water there
    valid[0, 1, 0, 3] = False  # S2's water vote in column 3 is no data; S1 says dry there
    classes = task(make_batch(vh_db, ndwi, [(True, True)], valid))
    assert classes.tolist() == [[[1, 1, 1, 0]]]  # col 0 S1 (-25 < -18), col 2 S2 (0.3 > 0.2)


def test_a_task_of_one_modality_ignores_the_others_and_needs_statistics() -> None:
    task = ThresholdTask({"s1": 2, "dem": 1}, stats={"s1": STATS["s1"]})
    assert task.indices == (VH,)
    batch = {
        "s1": s1_raster(torch.tensor([[[-30.0, -5.0]]])),
        "dem": torch.zeros(1, 1, 1, 2),
        "present": torch.tensor([[True, True]]),
        "valid": torch.ones(1, 2, 1, 2, dtype=torch.bool),
    }
    assert task(batch).tolist() == [[[1, 0]]]
    with pytest.raises(RuntimeError, match="no normalization statistics"):
        ThresholdTask(MODALITIES)(make_batch(-torch.ones(1, 1, 2), torch.zeros(1, 1, 2), [(1, 1)]))
    with pytest.raises(ValueError, match="needs an s1 or s2"):
        ThresholdTask({"dem": 1})
    with pytest.raises(ValueError, match="rule"):
        ThresholdTask(MODALITIES, rule="median")


def bimodal(low: float, high: float, spread: float, size: int = 32) -> Tensor:
    """``[size, size]`` values: the left half around ``low``, the right half around ``high``."""
    values = torch.full((size, size), high)
    values[:, : size // 2] = low
    return values + spread * torch.randn(size, size).clamp(-2, 2)


def test_otsu_threshold_lies_between_the_modes_and_falls_back_on_poor_tiles() -> None:
    vh_db = torch.stack(
        [bimodal(-25.0, -12.0, 1.0), torch.full((32, 32), -30.0), bimodal(-8, -2, 1)]
    )
    shown = torch.ones(3, 32, 32, dtype=torch.bool)
    shown[2] = False
    shown[2, 0, : 50 // 2] = True  # 25 shown pixels: too few
    thresholds = tile_otsu_thresholds(vh_db, shown, VH, fallback=-20.0, min_pixels=100)
    assert -23.0 < thresholds[0] < -14.0
    assert thresholds[1:].tolist() == [-20.0, -20.0]  # constant tile, too few pixels
    assert torch.equal(VH.is_water(vh_db[0], thresholds[0]), vh_db[0] < -18.5)

    ndwi = bimodal(-0.4, 0.3, 0.05)[None]
    ndwi_threshold = tile_otsu_thresholds(
        ndwi, torch.ones_like(ndwi, dtype=torch.bool), NDWI, 0.5, 10
    )
    assert -0.3 < ndwi_threshold[0] < 0.2
    assert torch.equal(NDWI.is_water(ndwi, ndwi_threshold[0]), ndwi > 0)


def test_otsu_rule_finds_the_dark_water_of_each_tile() -> None:
    # Tile 0: water at -28 dB, land at -22 dB (the fixed -20 dB calls it all water); tile 1:
    # water at -18 dB, land at -8 dB (the fixed rule calls it all land). Otsu gets both right.
    vh_db = torch.stack([bimodal(-28.0, -22.0, 0.5), bimodal(-18.0, -8.0, 0.5)])
    batch = make_batch(vh_db, torch.zeros_like(vh_db), [(True, False), (True, False)])
    truth = torch.zeros(2, 32, 32, dtype=torch.int64)
    truth[:, :, :16] = WATER
    assert torch.equal(ThresholdTask(MODALITIES, rule="otsu", stats=STATS)(batch), truth)
    fixed = ThresholdTask(MODALITIES, rule="fixed", stats=STATS)(batch)
    assert bool(fixed[0].all()) and not bool(fixed[1].any())


def test_best_iou_threshold_takes_the_middle_of_a_gap() -> None:
    edges = torch.arange(11, dtype=torch.float64)  # bins [0, 1), ..., [9, 10)
    water = torch.tensor([0, 5, 5, 0, 0, 0, 0, 0, 0, 0])
    land = torch.tensor([0, 0, 0, 0, 0, 0, 4, 4, 1, 0])
    assert best_iou_threshold(water, land, edges, water_above=False) == (4.5, 1.0)  # edges 3..6
    assert best_iou_threshold(land, water, edges, water_above=True) == (4.5, 1.0)
    assert best_iou_threshold(torch.zeros(10), land, edges, water_above=True) is None


def synthetic_training_batch(size: int = 16) -> dict:
    """Both modalities, water (left half) at -25 dB and NDWI +0.3, land at -10 dB and -0.3."""
    vh_db = bimodal(-25.0, -10.0, 1.0, size).expand(2, size, size)
    ndwi = bimodal(0.3, -0.3, 0.05, size).expand(2, size, size)
    mask = torch.full((2, size, size), LAND)
    mask[:, :, : size // 2] = WATER
    mask[:, 0] = 255  # unlabelled
    return make_batch(vh_db, ndwi, [(True, True), (True, False)], mask=mask)


def test_fitted_rule_learns_thresholds_between_water_and_land() -> None:
    task = ThresholdTask(MODALITIES, rule="fitted", stats=STATS)
    batch = synthetic_training_batch()
    task.on_train_epoch_start()
    assert task.training_step(batch, 0) is None
    # Labelled pixels that vote: S1 of both tiles, S2 of the first.
    assert task.histograms.sum(dim=(1, 2)).tolist() == [2 * 15 * 16, 15 * 16]
    task.fit_thresholds(task.histograms)
    vh_threshold, ndwi_threshold = task.fitted_thresholds.tolist()
    assert -23.0 < vh_threshold < -12.0
    assert -0.2 < ndwi_threshold < 0.2
    assert torch.equal(task(batch)[:, 1:], batch["mask"][:, 1:])

    # The thresholds are buffers: a checkpoint's state carries them to a fresh task.
    fresh = ThresholdTask(MODALITIES, rule="fitted", stats=STATS)
    fresh.load_state_dict(task.state_dict())
    assert fresh.fitted_thresholds.tolist() == [vh_threshold, ndwi_threshold]
    assert "histograms" not in task.state_dict()


def test_other_rules_count_nothing_in_training() -> None:
    task = ThresholdTask(MODALITIES, rule="otsu", stats=STATS)
    task.training_step(synthetic_training_batch(), 0)
    assert not task.histograms.any()


def test_interface_of_the_evaluation_matches_the_segmentation_task() -> None:
    task = ThresholdTask(MODALITIES, stats=STATS)
    assert task.table_metrics == {
        "mIoU": "miou",
        "IoU class 1": "iou_1",
        "excluded tiles": "excluded_tiles",
    }
    assert task.score_names == ("miou", "iou_0", "iou_1")
    labels = [{"mask": torch.tensor([[0, 0, 1], [255, 0, 1]])}]
    assert task.majority_class(labels) == LAND
    scores = task.trivial_scores(labels, majority=LAND)
    assert scores == pytest.approx({"miou": 1.5 / 5, "iou_0": 3 / 5, "iou_1": 0.0})


@pytest.mark.parametrize("rule", ["fixed", "fitted"])
def test_fit_and_evaluate_on_the_real_chip(
    rule: str, sen1floods11_chip_folder: Path, tmp_path: Path
) -> None:
    args = ["--config", str(REPO / "experiments/threshold_sen1floods11.yaml")]
    args += ["--data.root", str(sen1floods11_chip_folder), "--model.init_args.rule", rule]
    args += ["--data.init_args.tile_size", "64", "--data.init_args.stride", "64"]
    args += ["--data.init_args.image_size", "64", "--data.init_args.batch_size", "16"]
    args += quiet_run_arguments(tmp_path, "run")
    main(["fit", *args])
    checkpoint = tmp_path / "run/version_0/checkpoints/last.ckpt"
    state = torch.load(checkpoint, weights_only=False)["state_dict"]
    assert state["mean_s1"].tolist() == pytest.approx([-12.445357, -20.512368])  # the data's
    vh_threshold, ndwi_threshold = state["fitted_thresholds"].tolist()
    if rule == "fitted":  # real water: VH about -25 dB, NDWI about +0.14; land -17 dB, -0.24
        assert -24.0 < vh_threshold < -17.0 and -0.2 < ndwi_threshold < 0.1
    else:
        assert [vh_threshold, ndwi_threshold] == [-20.0, 0.0]

    out = tmp_path / "subsets"
    main(["evaluate", *args, "--ckpt_path", str(checkpoint), "--out_dir", str(out)])
    rows = {row["modalities"]: row for row in csv.DictReader((out / "subsets.csv").open())}
    assert set(rows) == {"s1+s2", "s1", "s2"}
    water_iou = {subset: float(row["test/iou_1"]) for subset, row in rows.items()}
    assert all(0.0 < iou <= 1.0 for iou in water_iou.values()), water_iou
    assert all(float(row["test/excluded_tiles"]) == 0 for row in rows.values())
    assert (
        "| Multimodal input | mIoU | IoU class 1 | excluded tiles |"
        in (out / "subsets.md").read_text()
    )
