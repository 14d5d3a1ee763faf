"""Scores per chip, for datasets tiled from whole chips.

Tiles named ``<chip>_r<row>_c<col>`` (e.g. ``Sri-Lanka_534068_r128_c256``: the tile's top-left
pixel in its chip; Sen1Floods11 names its tiles so) are grouped by chip. For each modality
subset the evaluated split is passed through the model once (its ``predict_step``), and every
chip gets its own confusion counts (a `torchmetrics` ``MulticlassJaccardIndex``, label 255
ignored): the IoU of class 1 (water for Sen1Floods11) and the mIoU, over the chip's tiles that
the subset can be scored on. As in the subset tables, a tile on which the subset holds no data
(``present`` all False) is left out and counted; a chip with no such tile left, or without any
labelled pixel on them, is not scored, and the tables say why. The mIoU is the tasks' macro
mean: classes neither labelled nor predicted on the chip are left out of it.

Tile names of another form (DFC2023, the quadruplets) cannot be grouped into chips: the
functions here refuse them with a `ValueError` that names the first such tile, rather than
guess a grouping.

Quick-looks of one chip, from the predictions kept here, are `fusion.evaluation.quicklooks`.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import move_data_to_device
from torch import Tensor
from torchmetrics.classification import MulticlassJaccardIndex
from tqdm.auto import tqdm

from datamodules.datamodule import SeededDataLoader
from datamodules.landcover import IGNORE_INDEX
from fusion.evaluation.subsets import SubsetResult, subsets_in_table_order
from fusion.tasks.batches import drop_empty_samples

TILE_NAME = re.compile(r"(?P<chip>.+)_r(?P<row>\d+)_c(?P<col>\d+)")
"""``<chip>_r<row>_c<col>``; the chip may hold underscores and dashes (``Sri-Lanka_534068``)."""


def parse_tile_name(name: str) -> tuple[str, int, int]:
    """The chip of a tile and the tile's offset in it.

    Args:
        name: ``<chip>_r<row>_c<col>``, e.g. ``"Sri-Lanka_534068_r128_c0"``.

    Returns:
        ``(chip, row, col)``: the chip name and the tile's top-left pixel in the chip.

    Raises:
        ValueError: If the name does not have that form.
    """
    match = TILE_NAME.fullmatch(name)
    if match is None:
        raise ValueError(
            f"tile {name!r} is not named <chip>_r<row>_c<col>: per-chip scores and quick-looks "
            "need tiles cut from whole chips (e.g. Sen1Floods11ChipsDataModule)"
        )
    return match["chip"], int(match["row"]), int(match["col"])


def chip_tiles(dataset: Any) -> dict[str, list[int]]:
    """The tiles of each chip of a dataset, chips in the order of their first tile.

    Args:
        dataset: A dataset with ``__len__`` and ``tile_name(index)``.

    Returns:
        Chip name -> indices of its tiles in the dataset.

    Raises:
        ValueError: If a tile name is not ``<chip>_r<row>_c<col>``.
    """
    tiles: dict[str, list[int]] = {}
    for index in range(len(dataset)):
        chip, _, _ = parse_tile_name(dataset.tile_name(index))
        tiles.setdefault(chip, []).append(index)
    return tiles


def evaluation_dataset(datamodule: L.LightningDataModule, stage: str) -> Any:
    """The dataset of the evaluated split, set up if need be.

    Args:
        datamodule: A `datamodules.MultimodalDataModule`.
        stage: ``"test"`` or ``"validate"``.

    Returns:
        Its ``test_dataset`` or ``val_dataset``.
    """
    attribute = "test_dataset" if stage == "test" else "val_dataset"
    if getattr(datamodule, attribute, None) is None:
        datamodule.setup(stage)
    return getattr(datamodule, attribute)


def semantic_classes(model: L.LightningModule) -> int:
    """The number of classes of a semantic task.

    Raises:
        ValueError: For a task without ``num_classes`` or one that predicts instances.
    """
    hparams = getattr(model, "hparams", {})
    classes = hparams.get("num_classes")
    if classes is None or hparams.get("task", "semantic") != "semantic":
        raise ValueError(
            f"per-chip scores and quick-looks need a semantic task (class maps from "
            f"predict_step), not {type(model).__name__} with task={hparams.get('task')!r}"
        )
    return int(classes)


def check_chip_setup(
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str,
    quicklooks: Sequence[str] = (),
) -> None:
    """Refuses, before any long pass, what per-chip scores and quick-looks cannot do.

    Args:
        model: The task.
        datamodule: Its DataModule.
        stage: ``"test"`` or ``"validate"``.
        quicklooks: Chips asked for a quick-look.

    Raises:
        ValueError: For a task that is not semantic, tile names that hold no chip, or a
            quick-look chip that is not in the split (the message lists the split's chips and
            those the dataset left out, with the reason).
    """
    semantic_classes(model)
    dataset = evaluation_dataset(datamodule, stage)
    tiles = chip_tiles(dataset)
    left_out: Mapping[str, str] = getattr(dataset, "excluded", {}) or {}
    for chip in quicklooks:
        if chip in tiles:
            continue
        if chip in left_out:
            raise ValueError(f"--quicklook {chip}: the dataset left it out ({left_out[chip]})")
        raise ValueError(
            f"--quicklook {chip}: no such chip in the {stage} split; it has "
            f"{', '.join(tiles) or 'no chip'}"
        )


@dataclass
class ChipScore:
    """The scores of one chip on one modality subset.

    Attributes:
        iou_1: IoU of class 1 (water), None when not scored.
        miou: mIoU over the classes labelled or predicted on the chip, None when not scored.
        tiles: Tiles of the chip scored.
        excluded_tiles: Tiles of the chip the subset holds no data on.
        note: Why ``iou_1`` or ``miou`` is None, else None.
    """

    iou_1: float | None = None
    miou: float | None = None
    tiles: int = 0
    excluded_tiles: int = 0
    note: str | None = None

    @property
    def scored(self) -> bool:
        """Whether the subset scores the chip at all."""
        return self.miou is not None


@dataclass
class ChipEvaluation:
    """Per-chip scores of every modality subset, and the predictions of some chips' tiles.

    Attributes:
        subsets: The modality subsets, in table order.
        chips: The chips scored, in the dataset's order.
        scores: Subset -> chip -> score.
        left_out: Chips the dataset left out of the split -> its reason.
        predictions: Subset -> tile name -> ``int64 [H', W']`` class map (at the DataModule's
            image size) of the tiles of the chips whose predictions were kept.
        class_name: Name of class 1, e.g. ``"water"``.
    """

    subsets: list[tuple[str, ...]]
    chips: list[str]
    scores: dict[tuple[str, ...], dict[str, ChipScore]]
    left_out: dict[str, str] = field(default_factory=dict)
    predictions: dict[tuple[str, ...], dict[str, Tensor]] = field(default_factory=dict)
    class_name: str = "class 1"


def _chip_score(
    metric: MulticlassJaccardIndex,
    tiles: int,
    excluded: int,
    labelled: int,
    subset: Sequence[str],
    name: str,
) -> ChipScore:
    """A `ChipScore` from a chip's metric (per-class IoU, NaN for 0 / 0) and its counts."""
    if not tiles:
        shown = "/".join(SubsetResult(tuple(subset)).label.split(", "))
        return ChipScore(excluded_tiles=excluded, note=f"no {shown} data")
    if not labelled:
        return ChipScore(tiles=tiles, excluded_tiles=excluded, note="no labelled pixel")
    iou = metric.compute()  # [K]
    miou = float(iou.nanmean())
    water = float(iou[1])
    if np.isnan(water):
        return ChipScore(None, miou, tiles, excluded, f"no {name} labelled or predicted")
    return ChipScore(water, miou, tiles, excluded)


def evaluate_chips(
    trainer: L.Trainer | None,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str = "test",
    subsets: Sequence[Sequence[str]] | None = None,
    chips: Sequence[str] | None = None,
    keep: Iterable[str] = (),
    progress: Callable[[Any], Any] = tqdm,
) -> ChipEvaluation:
    """Scores every chip of the evaluated split on every modality subset, one pass a subset.

    The split is read once per subset (``datamodule.set_eval_modalities``, then the model's
    ``predict_step`` on each batch, with the trainer's device and precision); tiles that show
    no modality are left out before the model sees them, as in the tasks' test step. The
    evaluation subset of the DataModule is restored afterwards.

    Args:
        trainer: Gives the device (``strategy.root_device``) and the precision context; None
            runs on the model's device in its own precision.
        model: A semantic task whose ``predict_step`` returns ``semantic``, ``int64 [B, H,
            W]`` at the batch's ``mask`` size.
        datamodule: A DataModule with ``set_eval_modalities`` whose tiles are named
            ``<chip>_r<row>_c<col>``.
        stage: ``"test"`` or ``"validate"``.
        subsets: The subsets (default: all, in table order).
        chips: Score only these chips (only their tiles are read); default every chip, and
            the chips the dataset left out are listed too.
        keep: Chips whose tiles' predictions are kept (for quick-looks).
        progress: Wraps the subset loop (a tqdm progress bar by default).

    Returns:
        The scores, and the kept predictions.

    Raises:
        ValueError: For a task that is not semantic, tile names without a chip, or an unknown
            chip in ``chips``.
    """
    num_classes = semantic_classes(model)
    dataset = evaluation_dataset(datamodule, stage)
    tiles = chip_tiles(dataset)
    chosen = list(tiles) if chips is None else list(dict.fromkeys(chips))
    unknown = [chip for chip in chosen if chip not in tiles]
    if unknown:
        raise ValueError(f"chips {unknown} are not in the {stage} split ({', '.join(tiles)})")
    kept = set(keep)
    indices = sorted(index for chip in chosen for index in tiles[chip])
    loader = SeededDataLoader(
        dataset,
        batch_size=datamodule.batch_size,
        sampler=indices,
        num_workers=datamodule.num_workers,
        collate_fn=datamodule.collate_fn,
        generator=torch.Generator().manual_seed(0),
    )
    subsets = [tuple(s) for s in (subsets or subsets_in_table_order(datamodule.modalities))]
    classes = getattr(datamodule, "classes", ())
    evaluation = ChipEvaluation(
        subsets=subsets,
        chips=chosen,
        scores={},
        left_out=dict(getattr(dataset, "excluded", {}) or {}) if chips is None else {},
        class_name=classes[1] if len(classes) > 1 else "class 1",
    )
    device = trainer.strategy.root_device if trainer is not None else model.device
    precision = trainer.precision_plugin if trainer is not None else None
    home, was_training = model.device, model.training
    previous = getattr(datamodule, "eval_modalities", "all")
    model.to(device).eval()
    try:
        bar = progress(subsets, desc="modality subsets, per chip", unit="subset")
        for subset in bar:
            if hasattr(bar, "set_postfix_str"):
                bar.set_postfix_str("+".join(subset))
            datamodule.set_eval_modalities(list(subset))
            metrics = {
                chip: MulticlassJaccardIndex(
                    num_classes, average="none", ignore_index=IGNORE_INDEX, zero_division=np.nan
                )
                for chip in chosen
            }
            counts = {chip: [0, 0, 0] for chip in chosen}  # scored, excluded tiles; labelled
            evaluation.predictions[subset] = {}
            for batch_index, batch in enumerate(loader):
                shown = batch["present"].any(dim=1)  # [B]
                for name, has_data in zip(batch["name"], shown.tolist(), strict=True):
                    counts[parse_tile_name(name)[0]][0 if has_data else 1] += 1
                batch, _ = drop_empty_samples(batch)
                if not len(batch["present"]):
                    continue
                semantic = _predict(model, batch, batch_index, device, precision)  # [B, H, W]
                mask = batch["mask"]  # [B, H, W]
                names = batch["name"]
                by_chip: dict[str, list[int]] = {}
                for row, name in enumerate(names):
                    by_chip.setdefault(parse_tile_name(name)[0], []).append(row)
                for chip, rows in by_chip.items():
                    metrics[chip].update(semantic[rows], mask[rows])
                    counts[chip][2] += int((mask[rows] != IGNORE_INDEX).sum())
                    if chip in kept:
                        for row in rows:
                            evaluation.predictions[subset][names[row]] = semantic[row]
            evaluation.scores[subset] = {
                chip: _chip_score(metrics[chip], *counts[chip], subset, evaluation.class_name)
                for chip in chosen
            }
    finally:
        datamodule.set_eval_modalities(previous)
        model.to(home).train(was_training)
    return evaluation


def _predict(
    model: L.LightningModule,
    batch: dict[str, Any],
    batch_index: int,
    device: torch.device,
    precision: Any,
) -> Tensor:
    """``int64 [B, H, W]`` class map of a batch by ``predict_step``, on the CPU."""
    batch = move_data_to_device(batch, device)
    context = precision.predict_step_context() if precision is not None else None
    with torch.inference_mode(), context or contextlib.nullcontext():
        output = model.predict_step(batch, batch_index)
    if not isinstance(output, Mapping) or "semantic" not in output:
        raise ValueError(f"{type(model).__name__}.predict_step gives no 'semantic' class map")
    return output["semantic"].long().cpu()


# -- tables -----------------------------------------------------------------------------------
def _cell(score: ChipScore, key: str) -> str:
    """One Markdown cell: the score, ``-`` with the reason, and partial coverage."""
    value = getattr(score, key)
    if value is None:
        return f"- ({score.note})"
    text = f"{value:.3f}"
    if score.excluded_tiles:
        text += f" ({score.tiles}/{score.tiles + score.excluded_tiles} tiles)"
    return text


def write_chip_tables(
    evaluation: ChipEvaluation, out_dir: str | Path, title: str = ""
) -> dict[str, Path]:
    """Writes the per-chip scores as ``per_chip.csv`` and ``per_chip.md``.

    Rows are chips, columns modality subsets; a chip a subset does not score holds ``-`` and
    the reason. The CSV has, per subset ``<s>`` (e.g. ``s1+s2``), the columns ``<s>/iou_1``,
    ``<s>/miou``, ``<s>/tiles``, ``<s>/excluded_tiles`` and ``<s>/note``; the Markdown file
    one table of the IoU of class 1 and one of the mIoU. Chips the dataset left out of the
    split close both, ``-`` everywhere with its reason.

    Args:
        evaluation: Output of `evaluate_chips`.
        out_dir: Where to write.
        title: Heading of the Markdown file.

    Returns:
        ``{"per_chip_csv": <csv>, "per_chip": <markdown>}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"per_chip_csv": out / "per_chip.csv", "per_chip": out / "per_chip.md"}
    keys = ("iou_1", "miou", "tiles", "excluded_tiles", "note")
    with paths["per_chip_csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["chip", *(f"{'+'.join(s)}/{key}" for s in evaluation.subsets for key in keys)]
        )
        for chip in evaluation.chips:
            row: list[Any] = [chip]
            for subset in evaluation.subsets:
                score = evaluation.scores[subset][chip]
                row += ["-" if score.iou_1 is None else score.iou_1]
                row += ["-" if score.miou is None else score.miou]
                row += [score.tiles, score.excluded_tiles, score.note or ""]
            writer.writerow(row)
        for chip, reason in evaluation.left_out.items():
            note = f"left out of the split: {reason}"
            writer.writerow([chip, *(["-", "-", 0, 0, note] * len(evaluation.subsets))])

    labels = [SubsetResult(subset).label for subset in evaluation.subsets]
    lines = [f"### {title}", ""] if title else []
    for key, name in (("iou_1", f"IoU {evaluation.class_name}"), ("miou", "mIoU")):
        lines += [f"{name} per chip and modality subset (- : not scored, and why)", ""]
        lines.append("| Chip | " + " | ".join(labels) + " |")
        lines.append("|---|" + "---|" * len(labels))
        for chip in evaluation.chips:
            cells = [_cell(evaluation.scores[subset][chip], key) for subset in evaluation.subsets]
            lines.append(f"| {chip} | " + " | ".join(cells) + " |")
        for chip in evaluation.left_out:
            lines.append(f"| {chip} | " + " | ".join(["-"] * len(labels)) + " |")
        lines.append("")
    if evaluation.left_out:
        lines.append("Left out of the split by the dataset (scored by no subset):")
        lines += [f"- {chip}: {reason}" for chip, reason in evaluation.left_out.items()]
        lines.append("")
    paths["per_chip"].write_text("\n".join(lines))
    return paths
