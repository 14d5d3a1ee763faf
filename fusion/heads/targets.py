"""Mask-classification targets: one binary mask and one class id per segment.

Mask2Former learns sets of (mask, class) pairs. A semantic map becomes one mask per class
present in it; building instances are already such pairs. Pixels labelled ``ignore_index`` in
the semantic map are marked in `MaskTargets.valid`, which the mask losses honour
(`fusion.heads.Mask2FormerHead.loss`); they belong to no target mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

IGNORE_INDEX = 255
"""Label of pixels without a known class (the sample contract's ``datamodules.IGNORE_INDEX``)."""


@dataclass
class MaskTargets:
    """The segments of one image.

    Attributes:
        masks: ``float32 [N, H, W]``, 1 inside each segment (float: the library's point sampling
            needs it).
        labels: ``int64 [N]`` class ids in ``0..K-1``.
        valid: ``bool [H, W]``, False on ignored pixels, which no loss term sees.
    """

    masks: Tensor
    labels: Tensor
    valid: Tensor


def check_class_ids(mask: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
    """Raise if a label map holds ids outside ``0..num_classes-1`` other than ``ignore_index``.

    Args:
        mask: ``int64 [...]`` class ids.
        num_classes: K.
        ignore_index: the label of ignored pixels.

    Raises:
        ValueError: naming the offending ids.
    """
    ids = mask.unique()
    bad = ids[((ids < 0) | (ids >= num_classes)) & (ids != ignore_index)]
    if bad.numel():
        raise ValueError(
            f"class ids {bad.tolist()} are outside 0..{num_classes - 1} "
            f"(and not the ignore index {ignore_index})"
        )


def semantic_targets(
    mask: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> list[MaskTargets]:
    """One binary mask per class present in each label map.

    Args:
        mask: ``int64 [B, H, W]`` class ids, ``ignore_index`` where unknown.
        num_classes: K; ids must lie in ``0..K-1``.
        ignore_index: the label of ignored pixels.

    Returns:
        B targets; an image whose pixels are all ignored has none (N = 0).

    Raises:
        ValueError: for class ids out of range.
    """
    check_class_ids(mask, num_classes, ignore_index)
    targets = []
    for labels_map in mask:
        valid = labels_map != ignore_index
        labels = labels_map[valid].unique()  # sorted class ids present
        masks = (labels_map[None] == labels[:, None, None]).float()  # [N, H, W]
        targets.append(MaskTargets(masks, labels.long(), valid))
    return targets


def instance_targets(
    instance_masks: Sequence[Tensor],
    labels: Sequence[Tensor],
    num_classes: int,
    mask: Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> list[MaskTargets]:
    """Instance targets of a batch; pixels ignored in the semantic map are ignored here too.

    Args:
        instance_masks: per image ``bool [N, H, W]``.
        labels: per image ``int64 [N]`` class ids in ``0..K-1``.
        num_classes: K.
        mask: optional ``int64 [B, H, W]`` semantic map; where it is ``ignore_index`` (no data)
            no loss term looks. None: every pixel counts.
        ignore_index: the label of ignored pixels.

    Returns:
        B targets.

    Raises:
        ValueError: for class ids out of range or mismatched counts.
    """
    if len(instance_masks) != len(labels):
        raise ValueError(f"{len(instance_masks)} instance mask sets but {len(labels)} label sets")
    targets = []
    for index, (masks, classes) in enumerate(zip(instance_masks, labels, strict=True)):
        if len(masks) != len(classes):
            raise ValueError(
                f"image {index}: {len(masks)} instance masks but {len(classes)} labels"
            )
        if classes.numel() and (classes.min() < 0 or classes.max() >= num_classes):
            raise ValueError(
                f"image {index}: instance labels {classes.tolist()} outside 0..{num_classes - 1}"
            )
        if mask is None:
            valid = torch.ones(masks.shape[-2:], dtype=torch.bool, device=masks.device)
        else:
            valid = mask[index] != ignore_index
        targets.append(MaskTargets(masks.float(), classes.long(), valid))
    return targets
