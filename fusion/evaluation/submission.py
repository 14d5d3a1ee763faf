"""The DFC2023 Track 2 submission: a split's instances as ``seg_results.json``, scored as such.

The model runs at the DataModule's ``image_size`` (the paper: 256) on one modality subset (all
modalities unless named); the mask logits of each tile are upsampled to the tile's annotation
size (512 x 512 for DFC2023) before thresholding, and the instances are written with the
annotation file's ``image_id`` and ``category_id`` (`fusion.evaluation.coco`). pycocotools'
``COCOeval`` then scores the file against the annotation file, at the annotation size, beside
the AP@50 the task logs (torchmetrics, at the model's size against resized ground truth).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor

from fusion.evaluation.coco import RESULTS_FILE, coco_mask_ap, coco_results, write_coco_results
from fusion.evaluation.subsets import DISPLAY_NAMES
from fusion.heads.inference import instance_inference


@dataclass
class Submission:
    """What `write_submission` wrote and how pycocotools scores it.

    Attributes:
        results_file: the COCO results file.
        annotation_file: the split's COCO annotation file.
        split: ``"test"`` or ``"val"``.
        modalities: the modality subset shown to the model.
        tiles: tiles predicted.
        excluded_tiles: tiles on which the subset holds no data (no instances written).
        instances: result entries written.
        model_size: ``(height, width)`` of the model's input.
        ap50: pycocotools' AP@50 (``COCOeval``, ``segm``) at the annotation size; NaN when
            the annotation file holds no annotation.
        ap: pycocotools' AP@[.50:.95], likewise.
    """

    results_file: Path
    annotation_file: Path
    split: str
    modalities: tuple[str, ...]
    tiles: int
    excluded_tiles: int
    instances: int
    model_size: tuple[int, int]
    ap50: float
    ap: float

    def as_json(self) -> dict[str, Any]:
        """The record as JSON-ready values (paths as strings, NaN as null)."""
        record = asdict(self)
        record["results_file"] = str(self.results_file)
        record["annotation_file"] = str(self.annotation_file)
        for key in ("ap50", "ap"):
            record[key] = None if math.isnan(record[key]) else record[key]
        return record


def results_path(path: str | Path) -> Path:
    """The results file of ``--coco_results``.

    ``path`` itself if it names a ``.json`` file, else ``path / seg_results.json``.
    """
    path = Path(path)
    return path if path.suffix == ".json" else path / RESULTS_FILE


def check_submission_setup(
    model: L.LightningModule, datamodule: L.LightningDataModule, modalities: Sequence[str]
) -> None:
    """Raise before any evaluation if a submission cannot be written.

    Raises:
        ValueError: if the task does not predict instances, the dataset does not know its
            annotation file's ids (``coco_image``, ``category_ids``), or ``modalities`` is
            empty or not a subset of the DataModule's.
    """
    if getattr(model, "hparams", {}).get("task") != "instance":
        raise ValueError("--coco_results needs an instance segmentation task (task: instance)")
    dataset_class = getattr(datamodule, "dataset_class", None)
    if not all(hasattr(dataset_class, name) for name in ("coco_image", "category_ids")):
        raise ValueError(
            f"--coco_results needs a dataset with COCO annotations (e.g. DFC2023), got "
            f"{getattr(dataset_class, '__name__', dataset_class)}"
        )
    known = list(datamodule.modalities)
    if not modalities or not set(modalities) <= set(known):
        raise ValueError(f"--coco_modalities {list(modalities)} is not a subset of {known}")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The batch with its tensors on ``device`` (per-sample lists stay where they are)."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


@torch.inference_mode()
def predict_results(
    model: L.LightningModule,
    loader: Any,
    dataset: Any,
    device: torch.device,
    step_context: Any = None,
) -> tuple[list[dict[str, Any]], int, tuple[int, int]]:
    """COCO result entries of every tile of ``loader``, masks at the annotation size.

    Tile ``i`` of the (unshuffled) loader is tile ``i`` of ``dataset``. The task's
    ``encode_batch`` gives mask logits ``[B, Q, h, w]``; each tile's are upsampled to its
    ``dataset.coco_image(i).size`` and thresholded there (`fusion.heads.instance_inference`,
    ``top_k`` of the task). Tiles without data in the shown subset get no entry.

    Args:
        model: a `fusion.tasks.SegmentationTask` with ``task: instance``, on ``device``.
        loader: batches of ``dataset`` in order.
        dataset: a dataset with ``coco_image`` and ``category_ids`` (`datamodules.DFC2023`).
        device: where the model is.
        step_context: a callable giving the context of each forward pass (the trainer's
            precision, e.g. autocast); None for none.

    Returns:
        The entries, the number of tiles left out, and the model's input size ``(H, W)``.

    Raises:
        ValueError: if the loader's tile names do not follow the dataset's order.
    """
    entries: list[dict[str, Any]] = []
    excluded, offset, model_size = 0, 0, (0, 0)
    category_ids = dataset.category_ids
    for batch in loader:
        indices = range(offset, offset + len(batch["present"]))
        offset += len(indices)
        names = batch.get("name") or [dataset.tile_name(i) for i in indices]
        if list(names) != [dataset.tile_name(i) for i in indices]:
            raise ValueError("the loader does not give the dataset's tiles in order")
        shown = batch["present"].any(dim=1).tolist()  # [B]: False where the subset is empty
        excluded += shown.count(False)
        if not any(shown):
            continue
        kept = [row for row, keep in enumerate(shown) if keep]
        batch = to_device(select_samples(batch, kept), device)
        model_size = tuple(batch["mask"].shape[-2:])
        with step_context() if step_context is not None else contextlib.nullcontext():
            predictions = model.encode_batch(batch, train=False)
        class_logits = predictions.final_class_logits  # [B, Q, K + 1]
        mask_logits = predictions.final_mask_logits  # [B, Q, h, w]
        for row, index in enumerate(indices[i] for i in kept):
            image = dataset.coco_image(index)
            (instances,) = instance_inference(
                class_logits[row : row + 1],
                mask_logits[row : row + 1],
                image.size,
                model.hparams.top_k,
            )  # masks bool [top_k, H_annotation, W_annotation]
            entries += coco_results([instances], [image.id], category_ids, [image.size])
    return entries, excluded, model_size


def select_samples(batch: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    """The batch's samples ``rows``: tensors indexed on their first axis, lists picked."""
    size = len(batch["present"])
    if len(rows) == size:
        return batch
    index = torch.as_tensor(list(rows), dtype=torch.long)
    picked: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.ndim and value.shape[0] == size:
            picked[key] = value[index]
        elif isinstance(value, list) and len(value) == size:
            picked[key] = [value[row] for row in rows]
        else:
            picked[key] = value
    return picked


def write_submission(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str,
    modalities: Sequence[str],
    path: str | Path,
) -> Submission:
    """Predict a split on one modality subset, write its results file and score it.

    Args:
        trainer: its device (``strategy.root_device``) and precision are used.
        model: the instance segmentation task, weights loaded.
        datamodule: a DataModule of a COCO-annotated dataset (`datamodules.DFC2023DataModule`).
        stage: ``"test"`` (the test split) or ``"validate"`` (the validation split).
        modalities: the subset shown to the model.
        path: the results file (a ``.json`` path) or its folder (see `results_path`).

    Returns:
        The `Submission`, with pycocotools' scores.

    Raises:
        ValueError: as `check_submission_setup`.
    """
    check_submission_setup(model, datamodule, modalities)
    datamodule.set_eval_modalities(list(modalities))
    datamodule.setup(stage)
    if stage == "test":
        dataset, loader = datamodule.test_dataset, datamodule.test_dataloader()
    else:
        dataset, loader = datamodule.val_dataset, datamodule.val_dataloader()
    device = trainer.strategy.root_device
    precision = trainer.strategy.precision_plugin
    training = model.training
    model.to(device).eval()
    try:
        entries, excluded, model_size = predict_results(
            model, loader, dataset, device, precision.test_step_context
        )
    finally:
        model.train(training)
    written = write_coco_results(results_path(path), entries)
    scores = coco_mask_ap(dataset.annotation_file, entries)
    return Submission(
        results_file=written,
        annotation_file=Path(dataset.annotation_file),
        split="test" if stage == "test" else "val",
        modalities=tuple(modalities),
        tiles=len(dataset),
        excluded_tiles=excluded,
        instances=len(entries),
        model_size=model_size,
        ap50=scores["ap50"],
        ap=scores["ap"],
    )


def submission_text(submission: Submission, task_ap50: float | None) -> str:
    """The scores beside each other, e.g. for printing.

    Args:
        submission: what `write_submission` gave.
        task_ap50: the AP@50 the task logged on the same split and subset (torchmetrics at
            the model's size against resized ground truth); None if unknown.
    """
    subset = ", ".join(DISPLAY_NAMES.get(name, name) for name in submission.modalities)
    height, width = submission.model_size
    lines = [
        f"COCO results of the {submission.split} split ({subset}): {submission.results_file}, "
        f"{submission.instances} instances on {submission.tiles - submission.excluded_tiles} "
        f"of {submission.tiles} tiles",
    ]
    ours = "-" if task_ap50 is None else f"{task_ap50:.4f}"
    lines.append(f"AP@50 ours (task, torchmetrics at {height}x{width}): {ours}")
    if math.isnan(submission.ap50):
        lines.append(f"AP@50 pycocotools: none, {submission.annotation_file} has no annotation")
        return "\n".join(lines)
    line = f"AP@50 pycocotools (COCOeval segm, annotation size): {submission.ap50:.4f}"
    if task_ap50 is not None:
        line += f" (pycocotools - ours: {submission.ap50 - task_ap50:+.4f})"
    lines.append(line)
    lines.append(f"AP@[.50:.95] pycocotools: {submission.ap:.4f}")
    return "\n".join(lines)


def write_submission_record(submission: Submission, task_ap50: float | None, path: Path) -> Path:
    """``submission.json``: the `Submission` record plus ``task_ap50``."""
    record = submission.as_json() | {"task_ap50": task_ap50}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path
