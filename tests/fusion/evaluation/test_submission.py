"""``fusion evaluate --coco_results``: the DFC2023 submission file, on a fixture whose building
category id is 7 and whose image ids start at 40, with the model at 32 x 32 and the annotations
at 64 x 64.

A tiny untrained model checks the file (ids, sizes, pycocotools' ``loadRes``); oracle tasks that
predict the ground truth (perfect, or with misses outranked by false positives) check the
scores: pycocotools' AP@50 is 1.0 on perfect predictions and equals the task's own AP@50.
"""

import csv
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pycocotools.coco import COCO

from datamodules.datamodule import collate_samples
from datamodules.dfc2023 import DFC2023
from fusion.cli import main
from fusion.evaluation.coco import coco_mask_ap
from fusion.evaluation.submission import predict_results
from fusion.heads.mask2former import MaskPredictions
from fusion.run.lightning import build_cli
from fusion.tasks import SegmentationTask
from tests.data.dfc2023.data import write_dfc2023
from tests.tiny_models import TINY_BACKBONE, TINY_HEAD, model_arguments, quiet_run_arguments

REPO = Path(__file__).resolve().parents[3]
CATEGORY, FIRST_ID, TILES = 7, 40, 4  # tile t has t % 4 buildings: 6 in all
ANNOTATION_SIZE, MODEL_SIZE = 64, 32
ALL = ("rgb", "sar", "dsm")


class PerfectOracle(SegmentationTask):
    """Predicts each sample's ground-truth buildings, one query each, at the input size.

    Query ``q`` holds building ``q`` with a building logit of ``4 - q``; its mask logits are
    +10 inside and -10 outside. Unused queries predict no object and an empty mask.
    """

    misses = False

    def encode_batch(self, batch: dict[str, Any], train: bool) -> MaskPredictions:
        device = batch["mask"].device
        size = batch["mask"].shape[-2:]
        queries = self.hparams.num_queries
        class_logits = torch.zeros(len(batch["mask"]), queries, 2, device=device)
        class_logits[..., 0] = -8.0  # no building
        mask_logits = torch.full((len(batch["mask"]), queries, *size), -10.0, device=device)
        for row, masks in enumerate(batch["instance_masks"]):
            for query, mask in enumerate(masks[:queries]):
                class_logits[row, query, 0] = 4.0 - query
                mask_logits[row, query][mask] = 10.0
            if self.misses and len(masks) >= 2:  # the last building missed for a false one
                query = len(masks) - 1
                class_logits[row, query, 0] = 5.0  # above every true building
                mask_logits[row, query] = -10.0
                mask_logits[row, query, -size[0] // 4 :, -size[1] // 4 :] = 10.0
        return MaskPredictions([class_logits], [mask_logits])


class FlawedOracle(PerfectOracle):
    """`PerfectOracle`, but the last building of tiles with two or more is replaced by a false
    one in the empty bottom-right corner, scored above every true building."""

    misses = True


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], Path]:
    """The fixture's root and the tiny instance model's command-line arguments."""
    tmp_path = tmp_path_factory.mktemp("submission")
    root = write_dfc2023(
        tmp_path / "dfc2023",
        size=ANNOTATION_SIZE,
        tiles_per_split=TILES,
        category_id=CATEGORY,
        first_image_id=FIRST_ID,
    )
    args = ["--config", str(REPO / "experiments/segment_dfc2023_instance.yaml")]
    args += ["--config", str(REPO / "experiments/segment_cpu.yaml")]
    args += ["--data.root", str(root), "--data.init_args.image_size", str(MODEL_SIZE)]
    args += ["--data.init_args.batch_size", "3", "--data.init_args.num_workers", "0"]
    args += model_arguments({**TINY_BACKBONE, **TINY_HEAD})
    return args + quiet_run_arguments(tmp_path, "run"), tmp_path


def evaluate(
    setup: tuple[list[str], Path], name: str, task: str | None = None, *extra: str
) -> tuple[Path, dict[str, Any]]:
    """Save the task's initial weights, run ``fusion evaluate --stage validate`` on them with
    ``--coco_results``; returns the results file and ``submission.json``."""
    args, tmp_path = setup
    if task is not None:
        args = [*args, "--model.class_path", f"{__name__}.{task}"]
    checkpoint = tmp_path / f"{name}.ckpt"
    torch.save({"state_dict": build_cli(args, run=False).model.state_dict()}, checkpoint)
    out_dir = tmp_path / name
    command = ["evaluate", *args, "--ckpt_path", str(checkpoint), "--out_dir", str(out_dir)]
    main([*command, "--stage", "validate", "--coco_results", str(out_dir / "submission"), *extra])
    results = out_dir / "submission" / "seg_results.json"
    return results, json.loads((out_dir / "submission.json").read_text())


def annotation_file(setup: tuple[list[str], Path]) -> Path:
    return setup[1] / "dfc2023" / "annotations" / "buildings_only_val.json"


def task_ap50(out_dir: Path, modalities: tuple[str, ...]) -> float:
    rows = csv.DictReader((out_dir / "subsets.csv").open())
    return next(
        float(r["val/ap50"]) for r in rows if set(r["modalities"].split("+")) == set(modalities)
    )


def test_results_file_of_a_tiny_model_has_the_annotation_files_ids(setup, capsys) -> None:
    results, record = evaluate(setup, "tiny")
    entries = json.loads(results.read_text())
    # top_k = queries x classes = 4 instances on each of the 4 validation tiles.
    assert len(entries) == TILES * TINY_HEAD["num_queries"] == record["instances"]
    assert {e["image_id"] for e in entries} == set(range(FIRST_ID, FIRST_ID + TILES))
    assert {e["category_id"] for e in entries} == {CATEGORY}
    assert {tuple(e["segmentation"]["size"]) for e in entries} == {(ANNOTATION_SIZE,) * 2}
    truth = COCO(str(annotation_file(setup)))
    loaded = truth.loadRes(str(results))  # refuses image ids the annotation file lacks
    assert len(loaded.getAnnIds()) == len(entries)
    assert record["split"] == "val" and tuple(record["modalities"]) == ALL
    assert record["tiles"] == TILES and record["excluded_tiles"] == 0
    assert record["model_size"] == [MODEL_SIZE, MODEL_SIZE]
    assert record["ap50"] == pytest.approx(coco_mask_ap(annotation_file(setup), results)["ap50"])
    assert record["task_ap50"] == task_ap50(results.parents[1], ALL)
    printed = capsys.readouterr().out
    assert f"AP@50 ours (task, torchmetrics at {MODEL_SIZE}x{MODEL_SIZE}):" in printed
    assert f"AP@50 pycocotools (COCOeval segm, annotation size): {record['ap50']:.4f}" in printed


def test_perfect_predictions_score_one_in_pycocotools(setup) -> None:
    results, record = evaluate(setup, "perfect", "PerfectOracle", "--coco_modalities", "sar")
    assert tuple(record["modalities"]) == ("sar",)
    assert record["ap50"] == 1.0 and record["task_ap50"] == pytest.approx(1.0)
    assert coco_mask_ap(annotation_file(setup), results)["ap50"] == 1.0
    assert {e["category_id"] for e in json.loads(results.read_text())} == {CATEGORY}


def test_pycocotools_and_the_task_agree_on_flawed_predictions(setup) -> None:
    results, record = evaluate(setup, "flawed", "FlawedOracle")
    # By hand: 2 false buildings rank first, then the 4 found of 6: the interpolated precision
    # is 4/6 up to recall 4/6 (67 of the 101 recall points) and 0 beyond.
    expected = 67 / 101 * 4 / 6
    assert record["ap50"] == pytest.approx(expected, abs=1e-6)
    assert record["task_ap50"] == pytest.approx(expected, abs=1e-6)
    assert coco_mask_ap(annotation_file(setup), results)["ap50"] == pytest.approx(expected)


def test_coco_modalities_must_be_the_models(setup) -> None:
    with pytest.raises(ValueError, match=r"--coco_modalities 'sar,lidar'"):
        evaluate(setup, "unknown", None, "--coco_modalities", "sar,lidar")
    assert not (setup[1] / "unknown" / "subsets.csv").exists()


def test_masks_are_thresholded_on_logits_upsampled_to_the_annotation_size(setup) -> None:
    dataset = DFC2023(annotation_file(setup).parents[1], split="val", image_size=MODEL_SIZE)
    logits = torch.full((1, 1, MODEL_SIZE, MODEL_SIZE), -3.0)
    logits[..., 5:13, 3:20] = 1.0  # asymmetric: the bilinear edge sits inside the block

    def encode_batch(batch: dict[str, Any], train: bool) -> MaskPredictions:
        classes = torch.tensor([[[4.0, 0.0]]]).expand(len(batch["mask"]), -1, -1)
        return MaskPredictions([classes], [logits.expand(len(batch["mask"]), -1, -1, -1)])

    model = SimpleNamespace(hparams=SimpleNamespace(top_k=1), encode_batch=encode_batch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, collate_fn=collate_samples)
    entries, excluded, model_size = predict_results(model, loader, dataset, torch.device("cpu"))
    assert excluded == 0 and model_size == (MODEL_SIZE, MODEL_SIZE)
    assert [e["image_id"] for e in entries] == list(range(FIRST_ID, FIRST_ID + TILES))
    from pycocotools import mask as mask_utils

    rle = entries[0]["segmentation"]
    written = torch.from_numpy(mask_utils.decode({**rle, "counts": rle["counts"].encode()}))
    size = (ANNOTATION_SIZE, ANNOTATION_SIZE)
    upsampled = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[0, 0] > 0
    resized_mask = F.interpolate((logits > 0).float(), size=size, mode="nearest")[0, 0] > 0
    assert torch.equal(written.bool(), upsampled)
    assert written.sum() < resized_mask.sum()  # not the binary mask resized
