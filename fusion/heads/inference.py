"""From per-query class and mask logits to semantic maps and instances (as Mask2Former infers).

Semantic: the score of class k at a pixel is ``sum_q p_q(k) * sigmoid(m_q)``, the query class
probabilities (no-object dropped) times the query mask probabilities; the map is its argmax.
Instance: the ``top_k`` best (query, class) pairs by class probability, each mask the query's
``sigmoid(m_q) > 0.5``, scored by the class probability times the mean mask probability inside
the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class InstancePrediction:
    """The instances predicted in one image.

    Attributes:
        masks: ``bool [k, H, W]``.
        labels: ``int64 [k]`` class ids ``0..K-1``.
        scores: ``float32 [k]`` in [0, 1].
    """

    masks: Tensor
    labels: Tensor
    scores: Tensor

    def as_metric_input(self) -> dict[str, Tensor]:
        """The ``{"masks", "labels", "scores"}`` dict of torchmetrics' ``MeanAveragePrecision``."""
        return {"masks": self.masks, "labels": self.labels, "scores": self.scores}


def resize_logits(mask_logits: Tensor, size: tuple[int, int] | None) -> Tensor:
    """Bilinear resize of mask logits ``[B, Q, h, w]`` to ``size`` (None: unchanged)."""
    if size is None or tuple(mask_logits.shape[-2:]) == tuple(size):
        return mask_logits
    return F.interpolate(mask_logits, size=size, mode="bilinear", align_corners=False)


def semantic_scores(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Per-pixel class scores.

    Args:
        class_logits: ``[B, Q, K + 1]``, the last class "no object".
        mask_logits: ``[B, Q, h, w]``.
        size: output ``(H, W)``; None keeps ``(h, w)``.

    Returns:
        ``float32 [B, K, H, W]``: ``sum_q softmax(class)_q[k] * sigmoid(mask_q)``.
    """
    probabilities = class_logits.float().softmax(-1)[..., :-1]  # [B, Q, K]
    masks = resize_logits(mask_logits.float(), size).sigmoid()  # [B, Q, H, W]
    return torch.einsum("bqk,bqhw->bkhw", probabilities, masks)


def semantic_inference(
    class_logits: Tensor, mask_logits: Tensor, size: tuple[int, int] | None = None
) -> Tensor:
    """Semantic map: the best class of `semantic_scores` at each pixel.

    Args:
        class_logits: ``[B, Q, K + 1]``.
        mask_logits: ``[B, Q, h, w]``.
        size: output ``(H, W)``; None keeps ``(h, w)``.

    Returns:
        ``int64 [B, H, W]`` class ids ``0..K-1``.
    """
    return semantic_scores(class_logits, mask_logits, size).argmax(1)


def instance_inference(
    class_logits: Tensor,
    mask_logits: Tensor,
    size: tuple[int, int] | None = None,
    top_k: int = 100,
) -> list[InstancePrediction]:
    """Instances: the ``top_k`` best (query, class) pairs of each image.

    Args:
        class_logits: ``[B, Q, K + 1]``.
        mask_logits: ``[B, Q, h, w]``.
        size: mask size ``(H, W)``; None keeps ``(h, w)``.
        top_k: instances per image (at most ``Q * K``).

    Returns:
        B predictions, each with ``min(top_k, Q * K)`` instances sorted by class probability.
    """
    batch, queries, classes = class_logits.shape
    num_labels = classes - 1
    probabilities = class_logits.float().softmax(-1)[..., :-1].flatten(1)  # [B, Q * K]
    count = min(top_k, queries * num_labels)
    predictions = []
    for image in range(batch):
        class_scores, pairs = probabilities[image].topk(count)
        query = pairs // num_labels
        logits = resize_logits(mask_logits[image, query][None].float(), size)[0]  # [k, H, W]
        mask_probabilities = logits.sigmoid()
        masks = mask_probabilities > 0.5
        mask_scores = (mask_probabilities * masks).flatten(1).sum(1) / (
            masks.flatten(1).sum(1) + 1e-6
        )
        predictions.append(
            InstancePrediction(masks, pairs % num_labels, class_scores * mask_scores)
        )
    return predictions
