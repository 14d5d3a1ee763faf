"""Per-chip scores and quick-looks (``fusion evaluate --per_chip --quicklook``) of the fixed
water threshold on Sen1Floods11 chips in the official layout, whose water is exactly where VH is
below -20 dB and NDWI above 0: every chip a subset can score is scored 1.0."""

import csv
import json
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
from matplotlib.image import imread

from datamodules import Sen1Floods11ChipsDataModule
from fusion.cli import main
from fusion.evaluation.chips import (
    check_chip_setup,
    chip_tiles,
    evaluate_chips,
    parse_tile_name,
    write_chip_tables,
)
from fusion.evaluation.quicklooks import chip_imagery, quicklook_figure, stitch_predictions
from fusion.tasks import ThresholdTask
from tests.data.sen1floods11.data import write_official_chips
from tests.tiny_models import quiet_run_arguments

REPO = Path(__file__).resolve().parents[3]
SPLITS = {
    "train": ["NoS1_1"],
    "val": ["Wet_1"],
    "test": ["Wet_2", "Dry_1", "NoS1_2", "NoLabel_1"],
}
SUBSETS = ("s1+s2", "s1", "s2")
TILE, IMAGE = 16, 32  # 32 px chips cut into 4 tiles of 16 px, resized to 32 px for the model


@pytest.fixture(scope="module")
def chips_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The writer's chips, and NoS1_2: a copy of NoS1_1 (S2 only) for the test split."""
    root = write_official_chips(tmp_path_factory.mktemp("chips"), size=32)
    for folder in ("S2Hand", "LabelHand"):
        shutil.copy(root / folder / f"NoS1_1_{folder}.tif", root / folder / f"NoS1_2_{folder}.tif")
    return root


def data_arguments(root: Path) -> list[str]:
    args = ["--data", "datamodules.Sen1Floods11ChipsDataModule", "--data.root", str(root)]
    args += ["--data.init_args.splits", json.dumps(SPLITS)]
    args += ["--data.init_args.tile_size", str(TILE), "--data.init_args.stride", str(TILE)]
    args += ["--data.init_args.image_size", str(IMAGE), "--data.init_args.batch_size", "3"]
    return args


@pytest.fixture(scope="module")
def evaluated(chips_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fusion fit`` (one pass) and ``fusion evaluate --per_chip --quicklook Wet_2``."""
    tmp_path = tmp_path_factory.mktemp("evaluate")
    args = ["--config", str(REPO / "experiments/threshold_sen1floods11.yaml")]
    args += data_arguments(chips_root) + quiet_run_arguments(tmp_path, "run")
    main(["fit", *args])  # reads the training split only: nothing to say about NoLabel_1
    checkpoint = tmp_path / "run/version_0/checkpoints/last.ckpt"
    out = tmp_path / "subsets"
    with pytest.warns(UserWarning, match="NoLabel_1"):
        main(["evaluate", *args, "--ckpt_path", str(checkpoint), "--out_dir", str(out)]
             + ["--per_chip", "--quicklook", "Wet_2"])  # fmt: skip
    return out


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    return {row["chip"]: row for row in csv.DictReader(path.open())}


def test_per_chip_table_scores_each_chip_where_its_modalities_are(evaluated: Path) -> None:
    rows = read_rows(evaluated / "per_chip.csv")
    assert list(rows) == ["Wet_2", "Dry_1", "NoS1_2", "NoLabel_1"]  # the left-out chip last
    columns = next(iter(rows.values())).keys()
    assert [c for c in columns if c.endswith("/iou_1")] == [f"{s}/iou_1" for s in SUBSETS]
    # The water is exactly VH < -20 dB (S1) and NDWI > 0 (S2): the fixed threshold is exact.
    scored = {(chip, s) for chip in rows for s in SUBSETS if rows[chip][f"{s}/iou_1"] != "-"}
    assert scored == {
        ("Wet_2", "s1+s2"), ("Wet_2", "s1"), ("Wet_2", "s2"),
        ("Dry_1", "s1+s2"), ("Dry_1", "s1"),
        ("NoS1_2", "s1+s2"), ("NoS1_2", "s2"),
    }  # fmt: skip
    for chip, subset in scored:
        assert float(rows[chip][f"{subset}/iou_1"]) == pytest.approx(1.0)
        assert float(rows[chip][f"{subset}/miou"]) == pytest.approx(1.0)
        assert int(rows[chip][f"{subset}/tiles"]) == 4
    # S2 on the chip without S2, S1 on the chip without S1: "-", why, and 4 tiles excluded.
    assert rows["Dry_1"]["s2/miou"] == "-" and rows["Dry_1"]["s2/note"] == "no S2 data"
    assert rows["Dry_1"]["s2/excluded_tiles"] == "4"
    assert rows["NoS1_2"]["s1/iou_1"] == "-" and rows["NoS1_2"]["s1/note"] == "no S1 data"
    assert all(rows["NoLabel_1"][f"{s}/iou_1"] == "-" for s in SUBSETS)
    assert "left out of the split" in rows["NoLabel_1"]["s1/note"]

    text = (evaluated / "per_chip.md").read_text()
    assert "| Chip | S1, S2 | S1 | S2 |" in text and "IoU water per chip" in text
    assert "| Dry_1 | 1.000 | 1.000 | - (no S2 data) |" in text
    # The subset table counts the same excluded tiles: Dry_1's for S2, NoS1_2's for S1.
    subsets = {row["modalities"]: row for row in csv.DictReader((evaluated / "subsets.csv").open())}
    assert float(subsets["s2"]["test/excluded_tiles"]) == 4
    assert float(subsets["s1"]["test/iou_1"]) == pytest.approx(1.0)


def test_quicklook_png_has_a_panel_per_modality_label_and_subset(evaluated: Path) -> None:
    image = imread(evaluated / "quicklook_Wet_2.png")
    # 3 x 100 px per panel: S1, S2, label, and the predictions of S1 + S2, S1 and S2.
    assert image.shape[1] == 6 * 300


@pytest.fixture(scope="module")
def datamodule(chips_root: Path) -> Sen1Floods11ChipsDataModule:
    dm = Sen1Floods11ChipsDataModule(
        root=str(chips_root), splits=SPLITS, tile_size=TILE, image_size=IMAGE, batch_size=3
    )
    with pytest.warns(UserWarning, match="NoLabel_1"):
        dm.setup("test")
    return dm


def test_quicklook_of_a_chip_without_s2_and_the_stitched_prediction(datamodule) -> None:
    task = ThresholdTask(datamodule.modality_specs, stats=datamodule.normalization_stats)
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    evaluation = evaluate_chips(
        trainer,
        task,
        datamodule,
        chips=["Dry_1"],
        keep=["Dry_1"],
        progress=lambda items, **_: items,
    )
    assert evaluation.chips == ["Dry_1"] and not evaluation.left_out  # only Dry_1's tiles read
    assert datamodule.eval_modalities == "all"  # restored
    imagery = chip_imagery(datamodule.test_dataset, "Dry_1")
    assert list(imagery.modalities) == ["s1"] and imagery.label.shape == (32, 32)
    # Physical dB, not normalized: water (the left quarter) near -25 dB in VH, land near -12.
    vh = imagery.modalities["s1"][1]
    assert vh[:, :8].max() < -23 and vh[:, 8:].min() > -14
    water = stitch_predictions(imagery, evaluation.predictions[("s1",)])
    assert np.array_equal(water, imagery.label)  # resized back from 32 px to the 16 px tiles
    assert set(evaluation.predictions[("s2",)]) == set()  # Dry_1 has no S2: nothing predicted
    figure = quicklook_figure(imagery, evaluation, datamodule.display_channels)
    titles = [axis.get_title() for axis in figure.axes]
    assert len(titles) == 4  # S1, label, S1 + S2 (scored on S1), S1; not S2
    assert titles[2].startswith("S1, S2: IoU water 1.000") and "no S2 here" in titles[2]
    assert titles[3].startswith("S1: IoU water 1.000")

    paths = write_chip_tables(evaluation, datamodule.test_dataset.root.parent / "tables")
    assert "| Dry_1 | 1.000 | 1.000 | - (no S2 data) |" in paths["per_chip"].read_text()


def test_tile_names_must_hold_a_chip(datamodule) -> None:
    assert parse_tile_name("Sri-Lanka_534068_r128_c0") == ("Sri-Lanka_534068", 128, 0)
    assert parse_tile_name("a_r1_c2_r3_c4") == ("a_r1_c2", 3, 4)
    tiles = chip_tiles(datamodule.test_dataset)
    assert list(tiles) == ["Wet_2", "Dry_1", "NoS1_2"] and all(len(t) == 4 for t in tiles.values())
    for name in ("tile_0", "Spain_1_r0", "Spain_1_rx_c0"):
        with pytest.raises(ValueError, match=r"<chip>_r<row>_c<col>"):
            parse_tile_name(name)


def test_quicklook_chips_and_tasks_are_checked_before_the_long_part(datamodule) -> None:
    task = ThresholdTask(datamodule.modality_specs, stats=datamodule.normalization_stats)
    check_chip_setup(task, datamodule, "test", ["Wet_2", "NoS1_2"])
    with pytest.raises(ValueError, match="no such chip in the test split; it has Wet_2, Dry_1"):
        check_chip_setup(task, datamodule, "test", ["Wet_1"])
    with pytest.raises(ValueError, match="left it out.*no labelled pixel"):
        check_chip_setup(task, datamodule, "test", ["NoLabel_1"])
    task.hparams["task"] = "instance"
    with pytest.raises(ValueError, match="need a semantic task"):
        check_chip_setup(task, datamodule, "test")
