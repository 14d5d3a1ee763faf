import contextlib
import io
import json

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchmetrics.detection import MeanAveragePrecision

from fusion.coco import encode_masks, resize_masks, write_coco_results
from fusion.heads import InstancePrediction

SIZE = 512  # annotation size; the model runs at 256


def boxes_mask(boxes: list[tuple[int, int, int, int]], side: int) -> torch.Tensor:
    masks = torch.zeros(len(boxes), side, side, dtype=torch.bool)
    for mask, (y0, x0, y1, x1) in zip(masks, boxes, strict=True):
        mask[y0:y1, x0:x1] = True
    return masks


TRUTH = {  # image id -> buildings at 512 x 512 (top, left, bottom, right)
    7: [(20, 20, 100, 120), (200, 300, 260, 420), (400, 40, 500, 90)],
    9: [(0, 0, 64, 64), (300, 300, 400, 480)],
}
PREDICTED = {  # at 256 x 256: hits, a poor overlap, a false positive; with scores
    7: ([(10, 10, 50, 60), (100, 150, 130, 210), (200, 20, 225, 45)], [0.9, 0.8, 0.7]),
    9: ([(0, 0, 32, 32), (150, 150, 200, 240), (100, 100, 120, 120)], [0.6, 0.95, 0.85]),
}


def ground_truth() -> COCO:
    images, annotations = [], []
    for image_id, boxes in TRUTH.items():
        images.append(
            {"id": image_id, "width": SIZE, "height": SIZE, "file_name": f"{image_id}.tif"}
        )
        for mask, rle in zip(
            boxes_mask(boxes, SIZE), encode_masks(boxes_mask(boxes, SIZE)), strict=True
        ):
            ys, xs = mask.nonzero(as_tuple=True)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask.sum()),
                    "bbox": [
                        int(xs.min()),
                        int(ys.min()),
                        int(xs.max() - xs.min() + 1),
                        int(ys.max() - ys.min() + 1),
                    ],
                    "iscrowd": 0,
                }
            )
    coco = COCO()
    coco.dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "building"}],
    }
    coco.createIndex()
    return coco


def test_results_file_loads_in_pycocotools_and_scores_as_torchmetrics(tmp_path) -> None:
    predictions = [
        InstancePrediction(
            boxes_mask(boxes, 256), torch.zeros(len(boxes), dtype=torch.long), torch.tensor(scores)
        )
        for boxes, scores in PREDICTED.values()
    ]
    path = write_coco_results(
        tmp_path / "seg_results.json", predictions, list(PREDICTED), (SIZE, SIZE), category_ids=[1]
    )
    entries = json.loads(path.read_text())
    assert len(entries) == 6
    assert set(entries[0]) == {"image_id", "category_id", "segmentation", "score"}
    assert entries[0]["segmentation"]["size"] == [SIZE, SIZE] and entries[0]["category_id"] == 1

    truth = ground_truth()
    with contextlib.redirect_stdout(io.StringIO()):
        results = truth.loadRes(str(path))
        evaluation = COCOeval(truth, results, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    coco_ap50 = evaluation.stats[1]

    metric = MeanAveragePrecision(iou_type="segm")
    metric.update(
        [
            {"masks": resize_masks(p.masks, (SIZE, SIZE)), "labels": p.labels, "scores": p.scores}
            for p in predictions
        ],
        [
            {"masks": boxes_mask(b, SIZE), "labels": torch.zeros(len(b), dtype=torch.long)}
            for b in TRUTH.values()
        ],
    )
    ap50 = float(metric.compute()["map_50"])
    assert 0.2 < coco_ap50 < 0.99  # neither trivial nor perfect
    assert abs(ap50 - coco_ap50) < 1e-6


def test_masks_are_resized_to_the_annotation_size_by_nearest_neighbour() -> None:
    masks = boxes_mask([(1, 2, 3, 5)], 8)
    large = resize_masks(masks, (16, 16))
    assert large.shape == (1, 16, 16) and large.sum() == 4 * masks.sum()
    assert torch.equal(large[:, ::2, ::2], masks)
    assert encode_masks(torch.zeros(0, 4, 4, dtype=torch.bool)) == []
