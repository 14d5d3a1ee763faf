"""Validation and test of the segmentation tasks, in the form ``fusion evaluate`` reads.

`fusion.tasks.SegmentationTask` and the water baseline `fusion.tasks.ThresholdTask` are scored
alike, so that their scores sit in the same tables: tiles on which the evaluated modality subset
holds no data are left out of the score and counted (``<stage>/excluded_tiles``); semantic tasks
log ``miou`` and ``iou_<k>`` per stage; and the empty modality subset is scored by a predictor
that sees no input, one class everywhere (`EvaluationHooks.trivial_scores`). A task mixes in
`EvaluationHooks` and says how it predicts and scores one batch (`EvaluationHooks.score_batch`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn
from torchmetrics.classification import MulticlassJaccardIndex

from fusion.heads.targets import IGNORE_INDEX
from fusion.tasks.batches import drop_empty_samples


def iou_metrics(num_classes: int) -> nn.ModuleDict:
    """The metrics of a stage: mIoU (``miou``, macro) and per-class IoU (``iou``), 255 ignored."""
    jaccard = partial(MulticlassJaccardIndex, num_classes, ignore_index=IGNORE_INDEX)
    return nn.ModuleDict({"miou": jaccard(average="macro"), "iou": jaccard(average="none")})


def iou_scores(metrics: nn.ModuleDict) -> dict[str, Tensor]:
    """``miou`` and ``iou_<k>`` of `iou_metrics`, computed (not reset)."""
    scores = {"miou": metrics["miou"].compute()}
    return scores | {f"iou_{k}": value for k, value in enumerate(metrics["iou"].compute())}


class EvaluationHooks(L.LightningModule):
    """Lightning's validation and test hooks of a task that labels pixels with K classes.

    The task's hyper-parameters hold ``num_classes`` (K); its ``metrics`` hold one
    `make_metrics` per stage (``"val"``, ``"test"``); it implements `score_batch`. What is
    written here is the semantic case; a task that predicts otherwise (instances) overrides
    the metrics, their logging and the trivial scores.
    """

    @property
    def table_metrics(self) -> dict[str, str]:
        """Columns of the subset tables (``fusion evaluate``): title -> metric name, no stage.

        mIoU, and for binary tasks the IoU of class 1 (e.g. water or building).
        """
        binary = {"IoU class 1": "iou_1"} if self.hparams.num_classes == 2 else {}
        return {"mIoU": "miou", **binary, "excluded tiles": "excluded_tiles"}

    @property
    def score_names(self) -> tuple[str, ...]:
        """Names of the scores logged per stage (no stage prefix), losses left out.

        ``miou`` and ``iou_0`` .. ``iou_<K-1>``: the metrics `trivial_scores` gives and
        ``fusion evaluate`` can split into modality contributions.
        """
        return ("miou", *(f"iou_{k}" for k in range(self.hparams.num_classes)))

    def make_metrics(self) -> nn.ModuleDict:
        """The metrics of one stage: mIoU and per-class IoU."""
        return iou_metrics(self.hparams.num_classes)

    def majority_class(self, batches: Iterable[Mapping[str, Any]]) -> int:
        """The most frequent class of the batches' labels, ignored pixels left out.

        Ties go to the smallest class id. Only ``mask`` is read, so batches whose modalities
        were drawn at random (the training split) count the same as complete ones.

        Args:
            batches: Batches of the sample contract; ``mask`` is ``int64 [B, H, W]`` with
                ``0..K-1`` or 255 (ignored).

        Returns:
            The class id, in ``0..K-1``.

        Raises:
            ValueError: If no pixel is labelled, or a label lies outside ``0..K-1`` and 255.
        """
        num_classes = self.hparams.num_classes
        counts = torch.zeros(num_classes, dtype=torch.int64)
        for batch in batches:
            labels = batch["mask"]
            labels = labels[labels != IGNORE_INDEX].flatten().cpu()
            if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
                raise ValueError(
                    f"labels hold class ids outside 0..{num_classes - 1} (and {IGNORE_INDEX})"
                )
            counts += torch.bincount(labels, minlength=num_classes)
        if not counts.any():
            raise ValueError("no labelled pixel: the majority class is undefined")
        return int(counts.argmax())

    def trivial_scores(
        self, batches: Iterable[Mapping[str, Any]], majority: int | None = None
    ) -> dict[str, float]:
        """Scores of a predictor that sees no input: the empty modality subset.

        One class predicted at every pixel, scored on the batches' labels with the task's own
        metrics (``miou``, ``iou_<k>``; pixels labelled 255 are left out). That class should be
        the majority class of the training split (`majority_class` over the training labels,
        as ``fusion evaluate`` does), so that the evaluated labels do not leak into the empty
        subset's score; without ``majority`` it is the majority of ``batches`` themselves. The
        modality contributions (`fusion.evaluation`) use it as the score of the empty subset.

        Args:
            batches: Batches of the evaluated split (only ``mask``, ``int64 [B, H, W]``, is
                read).
            majority: The class predicted everywhere, in ``0..K-1``; None takes the majority
                class of ``batches``.

        Returns:
            Metric name (no stage prefix, as in `score_names`) -> score.

        Raises:
            ValueError: If ``majority`` is not a class id of the task, or (without it) no
                pixel of ``batches`` is labelled.
        """
        masks = [batch["mask"].cpu() for batch in batches]
        if majority is None:
            majority = self.majority_class({"mask": mask} for mask in masks)
        if not 0 <= majority < self.hparams.num_classes:
            raise ValueError(
                f"majority class {majority} is not a class id 0..{self.hparams.num_classes - 1}"
            )
        metrics = iou_metrics(self.hparams.num_classes)
        for mask in masks:
            constant = torch.full_like(mask, majority)
            for metric in metrics.values():
                metric.update(constant, mask)
        return {name: float(value) for name, value in iou_scores(metrics).items()}

    def score_batch(self, batch: dict[str, Any], stage: str) -> None:
        """Predict a validation or test batch and add it to the stage's metrics.

        Args:
            batch: A batch of the sample contract in which every tile shows some modality.
            stage: ``"val"`` or ``"test"``.
        """
        raise NotImplementedError

    def evaluation_step(self, batch: dict[str, Any], stage: str) -> None:
        """Score a validation or test batch (`score_batch`).

        Tiles on which the evaluated modality subset holds no data (``present`` all False)
        are left out of the score and counted in ``<stage>/excluded_tiles``.
        """
        batch, excluded = drop_empty_samples(batch)
        excluded_name = f"{stage}/excluded_tiles"  # summed over the processes too (DDP)
        self.log(excluded_name, float(excluded), reduce_fx="sum", batch_size=1, sync_dist=True)
        if not len(batch["present"]):
            return
        self.score_batch(batch, stage)

    def log_metrics(self, stage: str) -> None:
        """Log and reset the stage's ``miou`` and ``iou_<k>``."""
        metrics = self.metrics[stage]
        for name, value in iou_scores(metrics).items():
            self.log(f"{stage}/{name}", value, prog_bar=name == "miou")
        for metric in metrics.values():
            metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Validation scores."""
        self.evaluation_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Test scores."""
        self.evaluation_step(batch, "test")

    def on_validation_epoch_end(self) -> None:
        """Log the validation metrics."""
        self.log_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self.log_metrics("test")
