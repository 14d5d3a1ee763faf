"""``fusion evaluate`` on a checkpoint trained through the command line, on a Sen1Floods11 chip
whose water is visible in Sentinel-1 only: the subsets score differently, and the
contributions follow the subset table, the chosen metric and the training split's majority."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fusion.cli import main
from fusion.evaluation.contributions import interaction_indices, shapley_values
from tests.data.geotiff import write_tif
from tests.data.sen1floods11.data import write_sen1floods11
from tests.tiny_models import TINY_BACKBONE, TINY_HEAD, model_arguments, quiet_run_arguments

REPO = Path(__file__).resolve().parents[3]
SIZE, BLOCK = 64, 8  # chip side and side of the constant label blocks, pixels
CHIP = {"crs": "EPSG:4326", "origin": (-3.0, 40.0)}  # the grid of write_sen1floods11
JSON_KEYS = {"metric", "title", "empty", "shapley", "interactions", "majority_class"}


def water_label() -> np.ndarray:
    """``int16 [64, 64]``: 0 dry, 1 water, -1 no data.

    The top half (the training split) is a quarter water, the bottom half (validation and
    test) three quarters, so the training majority (dry) is not the test split's (water).
    """
    rows, cols = np.indices((SIZE // BLOCK, SIZE // BLOCK))
    diagonal = (rows + cols) % 4 == 0
    blocks = np.where(rows < SIZE // BLOCK // 2, diagonal, ~diagonal)
    label = np.kron(blocks, np.ones((BLOCK, BLOCK), dtype=bool)).astype(np.int16)
    label[0, :4] = -1
    label[44:46, 40:52] = -1  # in the test quarter
    return label


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path, Path]:
    """The chip, the run's arguments and the last checkpoint of 60 training steps.

    The chip's S1 is dark (-22 / -28 dB) on water and bright (-6 / -13 dB) elsewhere; its S2
    is noise. Tiles of 16 px upsampled to 32, batches of 2, uniform random modality subsets
    drawn per sample and no spatial mask: in 60 steps of batches of 2 this recipe reliably
    learns that the water is in S1, which is what these tests of the evaluation need.
    """
    tmp_path = tmp_path_factory.mktemp("evaluate")
    root = write_sen1floods11(tmp_path / "chip", size=SIZE)  # S2 noise, label and S1 replaced
    label = water_label()
    water = label == 1
    rng = np.random.default_rng(1)
    s1 = np.where(water, np.array([-22.0, -28.0])[:, None, None], [[[-6.0]], [[-13.0]]])
    s1 = (s1 + rng.normal(0, 0.5, s1.shape)).astype(np.float32)
    write_tif(root / "Spain_1_S1Hand.tif", s1, **CHIP)
    write_tif(root / "Spain_1_LabelHand.tif", label[None], **CHIP)
    args = ["--config", str(REPO / "experiments/segment_sen1floods11.yaml")]
    args += ["--config", str(REPO / "experiments/segment_cpu.yaml")]
    args += ["--data.root", str(root), "--data.init_args.image_size", "32"]
    args += ["--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0"]
    args += ["--data.init_args.tile_size", "16", "--data.init_args.stride", "16"]
    args += model_arguments({**TINY_BACKBONE, **TINY_HEAD})
    args += quiet_run_arguments(tmp_path, "run")
    training = ["--time_budget", "null", "--trainer.max_epochs", "100"]
    training += ["--trainer.max_steps", "60", "--trainer.limit_val_batches", "0"]
    training += ["--model.init_args.lr", "3e-3", "--trainer.gradient_clip_val", "1.0"]
    training += ["--data.init_args.train_modalities_per", "sample"]
    training += ["--model.init_args.patch_dropout", "0.0"]
    torch.manual_seed(0)
    main(["fit", *args, *training])
    checkpoint = tmp_path / "run/version_0/checkpoints/last.ckpt"
    assert checkpoint.is_file()
    return args, checkpoint, tmp_path


def evaluate(trained: tuple[list[str], Path, Path], out: str, *extra: str) -> Path:
    args, checkpoint, tmp_path = trained
    out_dir = tmp_path / out
    main(["evaluate", *args, "--ckpt_path", str(checkpoint), "--out_dir", str(out_dir), *extra])
    return out_dir


def read_scores(out_dir: Path, key: str) -> dict[frozenset[str], float]:
    rows = csv.DictReader((out_dir / "subsets.csv").open())
    return {frozenset(row["modalities"].split("+")): float(row[key]) for row in rows}


def test_contributions_on_the_water_iou_follow_the_subset_table(trained) -> None:
    out_dir = evaluate(trained, "water", "--contribution_metric", "iou_1")
    scores = read_scores(out_dir, "test/iou_1")
    s1, s2, both = frozenset({"s1"}), frozenset({"s2"}), frozenset({"s1", "s2"})
    assert set(scores) == {s1, s2, both}
    # The water is in S1 only: the model finds it with S1 and not from the S2 noise.
    assert min(scores[s1], scores[both]) > scores[s2] + 0.2, scores

    record = json.loads((out_dir / "contributions.json").read_text())
    assert set(record) == JSON_KEYS
    assert record["metric"] == "iou_1" and record["title"] == "IoU class 1"
    assert record["majority_class"] == 0  # the training half is dry; the test quarter is not
    assert record["empty"] == 0.0  # "dry" everywhere finds no water
    players = ["s1", "s2"]
    expected = shapley_values(scores, players, record["empty"])
    assert record["shapley"] == pytest.approx(expected, abs=1e-6)
    assert record["shapley"]["s1"] > record["shapley"]["s2"]
    assert sum(record["shapley"].values()) == pytest.approx(scores[both] - record["empty"])
    pair = interaction_indices(scores, players, record["empty"])[("s1", "s2")]
    assert record["interactions"] == pytest.approx({"s1+s2": pair}, abs=1e-6)
    text = (out_dir / "contributions.md").read_text()
    assert "Shapley values of IoU class 1" in text and "class 0, the training split's" in text


def test_default_metric_scores_the_empty_subset_with_the_training_majority(trained) -> None:
    out_dir = evaluate(trained, "default")
    record = json.loads((out_dir / "contributions.json").read_text())
    assert record["metric"] == "miou" and record["title"] == "mIoU"
    # By hand: "dry" everywhere on the test quarter (rows and columns 32..63) gives IoU 0 for
    # water and, for dry, the dry share of its labelled pixels; mIoU is their mean.
    test_quarter = water_label()[32:, 32:]
    labelled = test_quarter[test_quarter >= 0]
    assert (labelled == 1).mean() > 0.5  # the test split's own majority would be water
    assert record["majority_class"] == 0
    assert record["empty"] == pytest.approx((labelled == 0).mean() / 2, abs=1e-6)
    scores = read_scores(out_dir, "test/miou")
    assert record["shapley"] == pytest.approx(shapley_values(scores, ["s1", "s2"], record["empty"]))
    assert len(set(scores.values())) > 1


def test_unknown_contribution_metric_fails_before_evaluating(trained) -> None:
    with pytest.raises(ValueError, match=r"'water_iou'.*miou, iou_0, iou_1"):
        evaluate(trained, "unknown", "--contribution_metric", "water_iou")
    assert not (trained[2] / "unknown").exists()
