"""Instance predictions as an MS COCO results file (the DFC2023 Track 2 submission format).

Each predicted instance becomes ``{"image_id", "category_id", "segmentation", "score"}`` with the
mask run-length encoded (pycocotools' RLE, ``counts`` as a string) at the annotation's image
size, so pycocotools' ``COCO.loadRes`` and ``COCOeval`` (or any COCO evaluator) score it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor

from fusion.heads.inference import InstancePrediction

RESULTS_FILE = "seg_results.json"
"""Name of the results file in the DFC2023 submission."""


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


def resize_masks(masks: Tensor, size: tuple[int, int]) -> Tensor:
    """Nearest-neighbour resize of ``bool [N, h, w]`` masks to ``size`` (exact for 2x, 4x...)."""
    if tuple(masks.shape[-2:]) == tuple(size):
        return masks
    return F.interpolate(masks[None].float(), size=size, mode="nearest")[0] > 0.5


def coco_results(
    predictions: Sequence[InstancePrediction],
    image_ids: Sequence[int],
    image_size: tuple[int, int] | None = None,
    category_ids: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """COCO result entries of a list of images' instances.

    For the sharpest masks at another size, predict at that size
    (`fusion.heads.instance_inference` with ``size``); otherwise the masks are resized here by
    nearest neighbour.

    Args:
        predictions: per image, its instances.
        image_ids: the COCO ``image_id`` of each image.
        image_size: ``(height, width)`` of the annotation images; None keeps the masks' size.
        category_ids: COCO ``category_id`` of each class id ``0..K-1``; None: ``k + 1``.

    Returns:
        One dict per instance: ``image_id``, ``category_id``, ``segmentation`` (RLE), ``score``.

    Raises:
        ValueError: if predictions and image ids differ in number.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"{len(predictions)} predictions but {len(image_ids)} image ids")
    results = []
    for prediction, image_id in zip(predictions, image_ids, strict=True):
        masks = (
            prediction.masks if image_size is None else resize_masks(prediction.masks, image_size)
        )
        labels = prediction.labels.tolist()
        scores = prediction.scores.tolist()
        for rle, label, score in zip(encode_masks(masks), labels, scores, strict=True):
            category = category_ids[label] if category_ids is not None else label + 1
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category),
                    "segmentation": rle,
                    "score": float(score),
                }
            )
    return results


def write_coco_results(
    path: str | Path,
    predictions: Sequence[InstancePrediction],
    image_ids: Sequence[int],
    image_size: tuple[int, int] | None = None,
    category_ids: Sequence[int] | None = None,
) -> Path:
    """Write `coco_results` as JSON (e.g. ``seg_results.json``); arguments as there.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco_results(predictions, image_ids, image_size, category_ids)))
    return path
