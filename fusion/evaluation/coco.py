"""Instance predictions as an MS COCO results file (the DFC2023 Track 2 submission format).

Each predicted instance becomes ``{"image_id", "category_id", "segmentation", "score"}`` with the
mask run-length encoded (pycocotools' RLE, ``counts`` as a string), so pycocotools'
``COCO.loadRes`` and ``COCOeval`` (or any COCO evaluator) score it. The ids are the annotation
file's: ``image_id`` of each image and ``category_id`` of each class id, as the dataset maps them
(`datamodules.dfc2023.DFC2023.coco_image` and ``category_ids``). Masks must already be at the
annotation's image size: predict them there (`fusion.heads.instance_inference` with ``size``
upsamples the mask logits before thresholding) rather than resizing binary masks.
`coco_mask_ap` scores a results file against its annotation file with pycocotools.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from fusion.heads.inference import InstancePrediction

RESULTS_FILE = "seg_results.json"
"""Name of the results file in the DFC2023 submission."""

COCO_RECALL_THRESHOLDS: list[float] = np.linspace(0.0, 1.0, 101).tolist()
"""The 101 recall points of pycocotools' ``COCOeval``, in double precision.

torchmetrics' ``MeanAveragePrecision`` defaults to the same points rounded to float32, so a
recall of exactly ``j / 100`` (e.g. 3 of 5 buildings) reaches one point fewer there than in
pycocotools; ``MeanAveragePrecision(rec_thresholds=COCO_RECALL_THRESHOLDS)`` scores as
pycocotools does.
"""


def encode_masks(masks: Tensor) -> list[dict[str, Any]]:
    """Run-length encode binary masks the COCO way.

    Args:
        masks: ``bool [N, H, W]``.

    Returns:
        N RLE dicts ``{"size": [H, W], "counts": str}``, ready for JSON.
    """
    if len(masks) == 0:
        return []
    array = np.asfortranarray(masks.detach().cpu().numpy().astype(np.uint8).transpose(1, 2, 0))
    encoded = mask_utils.encode(array)  # one dict per mask, counts as bytes
    return [{"size": rle["size"], "counts": rle["counts"].decode("ascii")} for rle in encoded]


def coco_results(
    predictions: Sequence[InstancePrediction],
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[dict[str, Any]]:
    """COCO result entries of a list of images' instances.

    Args:
        predictions: per image, its instances (masks ``bool [k, H, W]``, labels ``0..K-1``).
        image_ids: the COCO ``image_id`` of each image.
        category_ids: the COCO ``category_id`` of each class id ``0..K-1``.
        image_sizes: ``(height, width)`` of each annotated image, checked against the masks;
            None skips the check.

    Returns:
        One dict per instance: ``image_id``, ``category_id``, ``segmentation`` (RLE), ``score``.

    Raises:
        ValueError: if predictions, image ids and sizes differ in number, a mask is not at its
            image's size, or a label has no category id.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    if image_sizes is not None and len(image_sizes) != len(image_ids):
        raise ValueError(f"{len(image_sizes)} image sizes but {len(image_ids)} image ids")
    results = []
    for index, (prediction, image_id) in enumerate(zip(predictions, image_ids, strict=True)):
        mask_size = tuple(prediction.masks.shape[-2:])
        if image_sizes is not None and mask_size != tuple(image_sizes[index]):
            raise ValueError(
                f"image {image_id}: masks are {mask_size} but the annotation is "
                f"{tuple(image_sizes[index])}; predict at the annotation size"
            )
        labels = prediction.labels.tolist()
        if labels and not 0 <= min(labels) <= max(labels) < len(category_ids):
            raise ValueError(
                f"image {image_id}: labels {sorted(set(labels))} but only {len(category_ids)} "
                "category ids"
            )
        scores = prediction.scores.tolist()
        for rle, label, score in zip(encode_masks(prediction.masks), labels, scores, strict=True):
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[label]),
                    "segmentation": rle,
                    "score": float(score),
                }
            )
    return results


def write_coco_results(path: str | Path, results: Sequence[dict[str, Any]]) -> Path:
    """Write result entries (`coco_results`) as JSON, e.g. ``seg_results.json``.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(results)))
    return path


def load_ground_truth(annotation_file: str | Path) -> COCO:
    """An annotation file as pycocotools' ``COCO``, quietly.

    Annotations without ``iscrowd`` count as single objects and those without ``area`` get
    their mask's area (``COCOeval`` needs both).
    """
    dataset = json.loads(Path(annotation_file).read_text())
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    for annotation in dataset.get("annotations", []):
        annotation.setdefault("iscrowd", 0)
        if "area" not in annotation:
            annotation["area"] = float(mask_utils.area(coco.annToRLE(annotation)))
    return coco


def coco_mask_ap(
    annotation_file: str | Path, results: str | Path | Sequence[dict[str, Any]]
) -> dict[str, float]:
    """Mask AP of results against an annotation file, by pycocotools' ``COCOeval`` (``segm``).

    Args:
        annotation_file: the COCO annotation file (e.g. ``buildings_only_val.json``).
        results: a results file or its entries (`coco_results`); their ids must be the
            annotation file's (``loadRes`` checks the image ids).

    Returns:
        ``{"ap": AP@[.50:.95], "ap50": AP@50}`` over all areas, 100 detections per image; 0.0
        without any result, NaN when the file holds no annotation.
    """
    truth = load_ground_truth(annotation_file)
    if not truth.dataset.get("annotations"):
        return {"ap": math.nan, "ap50": math.nan}
    entries = json.loads(Path(results).read_text()) if isinstance(results, str | Path) else results
    if not entries:
        return {"ap": 0.0, "ap50": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        predicted = truth.loadRes([dict(entry) for entry in entries])  # loadRes adds keys
        evaluation = COCOeval(truth, predicted, iouType="segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"ap": float(evaluation.stats[0]), "ap50": float(evaluation.stats[1])}
