import json
import math
from pathlib import Path

import pytest
import torch
from torchmetrics.detection import MeanAveragePrecision

from fusion.evaluation.coco import (
    COCO_RECALL_THRESHOLDS,
    coco_mask_ap,
    coco_results,
    encode_masks,
    write_coco_results,
)
from fusion.heads import InstancePrediction

SIZE = 512  # annotation size
CATEGORY = 7  # the building's category id in the annotation file: not 1


def boxes_mask(boxes: list[tuple[int, int, int, int]], side: int) -> torch.Tensor:
    masks = torch.zeros(len(boxes), side, side, dtype=torch.bool)
    for mask, (y0, x0, y1, x1) in zip(masks, boxes, strict=True):
        mask[y0:y1, x0:x1] = True
    return masks


TRUTH = {  # image id -> buildings at 512 x 512 (top, left, bottom, right)
    17: [(20, 20, 100, 120), (200, 300, 260, 420), (400, 40, 500, 90)],
    9: [(0, 0, 64, 64), (300, 300, 400, 480)],
}
PREDICTED = {  # hits, a poor overlap, a false positive; with scores
    17: ([(20, 20, 100, 120), (200, 300, 260, 420), (400, 40, 440, 90)], [0.9, 0.8, 0.7]),
    9: ([(0, 0, 64, 64), (300, 300, 400, 480), (200, 200, 240, 240)], [0.6, 0.95, 0.85]),
}


def write_annotations(path: Path, with_area: bool = True) -> Path:
    images, annotations = [], []
    for image_id, boxes in TRUTH.items():
        images.append({"id": image_id, "width": SIZE, "height": SIZE, "file_name": f"{image_id}"})
        for rle, (y0, x0, y1, x1) in zip(encode_masks(boxes_mask(boxes, SIZE)), boxes, strict=True):
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": CATEGORY,
                "segmentation": rle,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "iscrowd": 0,
            }
            if with_area:
                annotation["area"] = (x1 - x0) * (y1 - y0)
            annotations.append(annotation)
    categories = [{"id": CATEGORY, "name": "building"}]
    coco = {"images": images, "annotations": annotations, "categories": categories}
    path.write_text(json.dumps(coco))
    return path


def predictions_of(table: dict) -> list[InstancePrediction]:
    return [
        InstancePrediction(
            boxes_mask(boxes, SIZE), torch.zeros(len(boxes), dtype=torch.long), torch.tensor(score)
        )
        for boxes, score in table.values()
    ]


def test_results_file_loads_in_pycocotools_and_scores_as_torchmetrics(tmp_path: Path) -> None:
    predictions = predictions_of(PREDICTED)
    entries = coco_results(predictions, list(PREDICTED), [CATEGORY], [(SIZE, SIZE)] * 2)
    path = write_coco_results(tmp_path / "seg_results.json", entries)
    written = json.loads(path.read_text())
    assert len(written) == 6
    assert set(written[0]) == {"image_id", "category_id", "segmentation", "score"}
    assert written[0]["segmentation"]["size"] == [SIZE, SIZE]
    assert {entry["category_id"] for entry in written} == {CATEGORY}
    assert [entry["image_id"] for entry in written] == [17] * 3 + [9] * 3

    annotations = write_annotations(tmp_path / "truth.json")
    coco = coco_mask_ap(annotations, path)
    # By hand: detections by score are hit, hit, miss, hit, miss (IoU 0.4), hit of 5 buildings,
    # so the interpolated precision is 1 up to recall 0.4, 3/4 up to 0.6, 2/3 up to 0.8.
    assert coco["ap50"] == pytest.approx((41 + 20 * 3 / 4 + 20 * 2 / 3) / 101)

    def torchmetrics_ap50(**options: list[float]) -> float:
        metric = MeanAveragePrecision(iou_type="segm", **options)
        truth = [
            {"masks": boxes_mask(b, SIZE), "labels": torch.zeros(len(b), dtype=torch.long)}
            for b in TRUTH.values()
        ]
        metric.update([p.as_metric_input() for p in predictions], truth)
        return float(metric.compute()["map_50"])

    assert torchmetrics_ap50(rec_thresholds=COCO_RECALL_THRESHOLDS) == pytest.approx(coco["ap50"])
    # torchmetrics' own float32 recall points miss recall 0.6 (3 of 5) at precision 3/4.
    assert torchmetrics_ap50() == pytest.approx(coco["ap50"] - 0.75 / 101, abs=1e-6)
    # The entries in memory score as the file does.
    assert coco_mask_ap(annotations, entries) == coco


def test_ground_truth_as_results_scores_one_even_without_areas(tmp_path: Path) -> None:
    perfect = {key: (boxes, [0.9] * len(boxes)) for key, boxes in TRUTH.items()}
    entries = coco_results(predictions_of(perfect), list(perfect), [CATEGORY])
    annotations = write_annotations(tmp_path / "truth.json", with_area=False)
    assert coco_mask_ap(annotations, entries) == {"ap": 1.0, "ap50": 1.0}
    # Another category id than the annotation file's scores nothing.
    elsewhere = coco_results(predictions_of(perfect), list(perfect), [1])
    assert coco_mask_ap(annotations, elsewhere)["ap50"] == 0.0


def test_category_ids_map_each_label() -> None:
    masks = boxes_mask([(0, 0, 2, 2), (2, 2, 4, 4)], 4)
    prediction = InstancePrediction(masks, torch.tensor([1, 0]), torch.tensor([0.5, 0.4]))
    entries = coco_results([prediction], [3], category_ids=[7, 2])
    assert [entry["category_id"] for entry in entries] == [2, 7]
    with pytest.raises(ValueError, match=r"labels \[0, 1\] but only 1 category ids"):
        coco_results([prediction], [3], category_ids=[7])


def test_masks_off_the_annotation_size_are_refused() -> None:
    prediction = InstancePrediction(
        boxes_mask([(0, 0, 2, 2)], 256), torch.tensor([0]), torch.tensor([0.5])
    )
    with pytest.raises(ValueError, match=r"masks are \(256, 256\) but the annotation"):
        coco_results([prediction], [1], [1], [(SIZE, SIZE)])
    with pytest.raises(ValueError, match="2 image ids"):
        coco_results([prediction], [1, 2], [1])


def test_no_results_and_no_annotations(tmp_path: Path) -> None:
    annotations = write_annotations(tmp_path / "truth.json")
    assert coco_mask_ap(annotations, []) == {"ap": 0.0, "ap50": 0.0}
    empty = json.loads(annotations.read_text()) | {"annotations": []}
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    scores = coco_mask_ap(tmp_path / "empty.json", [])
    assert math.isnan(scores["ap50"]) and math.isnan(scores["ap"])
    assert encode_masks(torch.zeros(0, 4, 4, dtype=torch.bool)) == []
