"""``fusion evaluate``: one checkpoint, every modality subset, tables and a chart.

    fusion evaluate --config experiments/segment_quad.yaml --ckpt_path runs/.../last.ckpt \
        [--out_dir DIR] [--stage test|validate] [--contribution_metric NAME] \
        [--coco_results PATH [--coco_modalities a,b]] [--per_chip] [--quicklook CHIP ...] \
        [any option of the config, e.g. --data.root]

The config builds the task, the DataModule and the trainer exactly as ``fusion fit`` does; the
checkpoint's weights are loaded once, and the test (or validation) split is scored on each of
the ``2^M - 1`` modality subsets (`fusion.evaluation.subsets`). Written to ``--out_dir``
(default: ``<checkpoint folder>/../subsets``): ``subsets.csv``, ``subsets.md`` and
``subsets.png``, and the modality contributions of one score (`fusion.evaluation.
contributions`: exact Shapley values and pairwise interactions) as ``contributions.md``,
``contributions.png`` and ``contributions.json``; the tables are printed too.

The contributions are computed on ``--contribution_metric`` (a score the task logs, without the
stage prefix: ``miou``, ``iou_1``, ``ap50``, ...; default the first column of the task's tables,
mIoU or AP@50). The empty subset is scored by the task's trivial predictor: for semantic tasks
the majority class of the training split's labels, predicted everywhere on the evaluated split.
``contributions.json`` holds::

    {"metric": "iou_1", "title": "IoU class 1", "empty": 0.0,
     "shapley": {"s1": 0.61, "s2": 0.12}, "interactions": {"s1+s2": -0.05},
     "majority_class": 0}

(``majority_class`` is null for tasks without one, e.g. instances.)

``--coco_results PATH`` (instance tasks on COCO-annotated data, i.e. DFC2023) also writes the
split's predictions as the contest's results file (`fusion.evaluation.submission`): PATH, or
``PATH/seg_results.json`` when PATH is not a ``.json`` file, with the annotation file's image
and category ids and masks thresholded at the annotation size; the model sees all modalities, or
those of ``--coco_modalities`` (comma-separated). pycocotools' AP@50 on that file is printed
beside the task's own, and both are written to ``<out_dir>/submission.json``::

    fusion evaluate --config experiments/segment_dfc2023_instance.yaml --data.root data/dfc2023 \
        --ckpt_path runs/.../best.ckpt --stage validate --coco_results submission/

For datasets tiled from whole chips (tiles named ``<chip>_r<row>_c<col>``, as Sen1Floods11's),
``--per_chip`` also scores every chip of the split on every subset (`fusion.evaluation.chips`:
one more pass over the split per subset with the model's ``predict_step``) and writes
``per_chip.csv`` and ``per_chip.md``: rows chips, columns subsets, the IoU of class 1 (water)
and the mIoU, ``-`` and the reason where a subset cannot score a chip (e.g. S2 on a chip without
S2). ``--quicklook CHIP`` (repeatable) draws ``quicklook_<CHIP>.png``: the chip stitched from its
tiles (S1 in dB, S2 in true colour where it has S2), its label, and the prediction of each subset
that scores it, titled with the chip's water IoU; without ``--per_chip`` only that chip's tiles
are read again. Both refuse, before the long part, tasks without class maps and tile names
without a chip::

    fusion evaluate --config experiments/threshold_sen1floods11.yaml \
        --data datamodules.Sen1Floods11ChipsDataModule --data.init_args.tile_size 128 \
        --ckpt_path runs/.../last.ckpt --per_chip --quicklook Spain_7370579
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from datamodules.datamodule import SeededDataLoader
from fusion.evaluation.chips import (
    check_chip_setup,
    evaluate_chips,
    evaluation_dataset,
    write_chip_tables,
)
from fusion.evaluation.coco import RESULTS_FILE
from fusion.evaluation.contributions import (
    contributions_text,
    interaction_indices,
    plot_contributions,
    shapley_values,
)
from fusion.evaluation.quicklooks import write_quicklook
from fusion.evaluation.submission import (
    check_submission_setup,
    submission_text,
    write_submission,
    write_submission_record,
)
from fusion.evaluation.subsets import SubsetResult, evaluate_subsets, write_subset_tables
from fusion.run.model_file import add_checkpoint_options, load_checkpoint


def load_weights(model: L.LightningModule, checkpoint: Path, trust: bool = False) -> None:
    """Loads a checkpoint's ``state_dict`` into ``model`` (all keys must match).

    Args:
        model: The model built from the config.
        checkpoint: A Lightning checkpoint, or a model folder of ``fusion export``.
        trust: Load a checkpoint that needs unpickling (`fusion.run.model_file.load_checkpoint`).

    Raises:
        FileNotFoundError: If the checkpoint does not exist.
        fusion.run.model_file.UnsafeCheckpointError: If it needs unpickling and ``trust`` is False.
        ValueError: If its weights do not fit the model built from the config.
    """
    state = load_checkpoint(checkpoint, trust)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not fit the model of the config: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]} (the config must describe the checkpoint's model)"
        )


def contribution_metric(model: L.LightningModule, name: str | None) -> tuple[str, str]:
    """The score the contributions are computed on, and its title.

    Args:
        model: The task; its ``score_names`` (else the scores of ``table_metrics``) are the
            names it logs, its ``table_metrics`` give titles.
        name: A score name without the stage prefix (``miou``, ``iou_1``, ``ap50``); None for
            the first column of the task's tables.

    Returns:
        ``(name, title)``, e.g. ``("iou_1", "IoU class 1")``.

    Raises:
        ValueError: If the task has no trivial predictor (no contributions), or does not log
            ``name``; the message lists the names it logs.
    """
    table = dict(getattr(model, "table_metrics", None) or {})
    scores = {title: metric for title, metric in table.items() if metric != "excluded_tiles"}
    available = list(getattr(model, "score_names", None) or scores.values())
    if not hasattr(model, "trivial_scores") or not available:
        raise ValueError(
            f"{type(model).__name__} has no trivial predictor (trivial_scores) or no scores: "
            "modality contributions cannot be computed for it"
        )
    if name is None:
        name = next(iter(scores.values()), available[0])
    if name not in available:
        raise ValueError(
            f"--contribution_metric {name!r} is not a score the task logs; choose one of "
            f"{', '.join(available)} (without the stage prefix)"
        )
    titles = {metric: title for title, metric in scores.items()}
    if name in titles:
        return name, titles[name]
    match = re.fullmatch(r"iou_(\d+)", name)
    return name, f"IoU class {match.group(1)}" if match else name


def main(argv: list[str]) -> list:
    """Run the command; ``argv`` without the leading ``evaluate``."""
    from fusion.run.lightning import build_cli

    parser = argparse.ArgumentParser(prog="fusion evaluate", description=__doc__.splitlines()[0])
    add_checkpoint_options(parser, "checkpoint to evaluate, or a model folder of `fusion export`")
    parser.add_argument("--out_dir", type=Path, default=None, help="where to write the tables")
    parser.add_argument("--stage", choices=("test", "validate"), default="test")
    parser.add_argument(
        "--contribution_metric",
        default=None,
        metavar="NAME",
        help="score of the modality contributions, without the stage prefix (miou, iou_1, "
        "ap50, ...); default: the first column of the task's tables",
    )
    parser.add_argument(
        "--coco_results",
        type=Path,
        default=None,
        metavar="PATH",
        help="also write the split's instances as a COCO results file (DFC2023 submission): "
        f"PATH, or PATH/{RESULTS_FILE} if PATH is not a .json file",
    )
    parser.add_argument(
        "--coco_modalities",
        default=None,
        metavar="NAMES",
        help="comma-separated modalities shown for --coco_results (default: all)",
    )
    parser.add_argument(
        "--per_chip",
        action="store_true",
        help="also score every chip on every subset: per_chip.csv and per_chip.md (tiles "
        "named <chip>_r<row>_c<col>)",
    )
    parser.add_argument(
        "--quicklook",
        action="append",
        default=[],
        metavar="CHIP",
        help="draw quicklook_<CHIP>.png: the chip's modalities, label and the prediction of "
        "each subset (repeatable)",
    )
    ours, rest = parser.parse_known_args(argv)
    if ours.coco_modalities is not None and ours.coco_results is None:
        parser.error("--coco_modalities needs --coco_results")
    if not any(arg.startswith("--trainer.enable_progress_bar") for arg in rest):
        rest += ["--trainer.enable_progress_bar", "false"]  # one bar over the subsets instead
    cli = build_cli(rest, run=False)
    load_weights(cli.model, ours.ckpt_path, ours.trust_checkpoint)
    chosen = None  # (metric, title) of the contributions, checked before the long part
    tabled = hasattr(cli.model, "trivial_scores") and getattr(cli.model, "table_metrics", None)
    if tabled or ours.contribution_metric is not None:
        chosen = contribution_metric(cli.model, ours.contribution_metric)
    submitted = None  # the modalities of the submission, checked before the long part
    if ours.coco_results is not None:
        submitted = submission_modalities(cli.datamodule.modalities, ours.coco_modalities)
        check_submission_setup(cli.model, cli.datamodule, submitted)
    if ours.per_chip or ours.quicklook:
        check_chip_setup(cli.model, cli.datamodule, ours.stage, ours.quicklook)
    results = evaluate_subsets(cli.trainer, cli.model, cli.datamodule, stage=ours.stage)
    prefix = "test" if ours.stage == "test" else "val"
    table = getattr(cli.model, "table_metrics", None)
    columns = {title: f"{prefix}/{name}" for title, name in table.items()} if table else None
    out_dir = ours.out_dir or ours.ckpt_path.resolve().parent.parent / "subsets"
    paths = write_subset_tables(results, out_dir, columns, title=f"{ours.ckpt_path.name}")
    print(paths["markdown"].read_text())
    if ours.per_chip or ours.quicklook:
        paths |= write_chip_outputs(
            cli.trainer,
            cli.model,
            cli.datamodule,
            ours.stage,
            [result.modalities for result in results],
            out_dir,
            ours.per_chip,
            ours.quicklook,
            title=f"{ours.ckpt_path.name}",
        )
    if chosen is not None:
        metric, title = chosen
        paths |= write_contributions(
            results, cli.model, cli.datamodule, ours.stage, metric, title, out_dir
        )
    if submitted is not None:
        submission = write_submission(
            cli.trainer, cli.model, cli.datamodule, ours.stage, submitted, ours.coco_results
        )
        row = next((r for r in results if set(r.modalities) == set(submitted)), None)
        task_ap50 = row.metrics.get(f"{prefix}/ap50") if row is not None else None
        print(submission_text(submission, task_ap50))
        paths["results"] = submission.results_file
        paths["submission"] = write_submission_record(
            submission, task_ap50, out_dir / "submission.json"
        )
    print("Wrote " + ", ".join(str(path) for path in paths.values()))
    return results


def write_chip_outputs(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str,
    subsets: Sequence[Sequence[str]],
    out_dir: Path,
    per_chip: bool,
    quicklooks: Sequence[str],
    title: str = "",
) -> dict[str, Path]:
    """Per-chip tables (``--per_chip``) and quick-looks (``--quicklook``), printed and written.

    One pass over the split per subset (`fusion.evaluation.chips.evaluate_chips`): every chip
    with ``per_chip``, else only the quick-look chips' tiles.

    Args:
        trainer: The trainer (device and precision).
        model: The task, weights loaded.
        datamodule: Its DataModule.
        stage: ``"test"`` or ``"validate"``.
        subsets: The modality subsets, in table order.
        out_dir: Where to write.
        per_chip: Write ``per_chip.csv`` and ``per_chip.md``.
        quicklooks: Chips to draw as ``quicklook_<chip>.png``.
        title: Heading of the Markdown table.

    Returns:
        Kind -> path written: ``per_chip_csv``, ``per_chip``, ``quicklook_<chip>``.
    """
    evaluation = evaluate_chips(
        trainer,
        model,
        datamodule,
        stage,
        subsets,
        chips=None if per_chip else quicklooks,
        keep=quicklooks,
    )
    paths: dict[str, Path] = {}
    if per_chip:
        paths = write_chip_tables(evaluation, out_dir, title=f"{title}, per chip")
        print(paths["per_chip"].read_text())
    dataset = evaluation_dataset(datamodule, stage)
    channels = getattr(datamodule, "display_channels", None)
    for chip in quicklooks:
        paths[f"quicklook_{chip}"] = write_quicklook(dataset, evaluation, chip, out_dir, channels)
    return paths


def submission_modalities(available: Sequence[str], names: str | None) -> tuple[str, ...]:
    """The modalities of ``--coco_modalities`` (comma-separated), or all when None.

    Raises:
        ValueError: for an empty list or a name the DataModule does not have.
    """
    if names is None:
        return tuple(available)
    chosen = tuple(name.strip() for name in names.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(available))
    if unknown or not chosen:
        raise ValueError(
            f"--coco_modalities {names!r}: choose a non-empty subset of {', '.join(available)}"
        )
    return chosen


def training_majority_class(
    model: L.LightningModule, datamodule: L.LightningDataModule
) -> int | None:
    """The majority class of the training split's labels (``model.majority_class``).

    The DataModule's training split is set up (``setup("fit")``) and read once in order,
    without augmentation (a random crop would change the counts) and showing only its first
    modality (labels do not depend on the modalities shown, and one raster per tile is the
    least to read); both are restored afterwards.

    Args:
        model: The task; tasks without ``majority_class`` or with ``hparams.task ==
            "instance"`` have no majority class.
        datamodule: A `datamodules.MultimodalDataModule`.

    Returns:
        The class id, or None for tasks without one.
    """
    if not hasattr(model, "majority_class") or model.hparams.get("task") == "instance":
        return None
    datamodule.setup("fit")
    dataset = datamodule.train_dataset
    sampling, augmentation = dataset.modality_sampling, dataset.augmentation
    dataset.modality_sampling = [datamodule.modalities[0]]
    dataset.augmentation = None
    try:
        loader = SeededDataLoader(
            dataset,
            batch_size=datamodule.batch_size,
            shuffle=False,
            num_workers=datamodule.num_workers,
            collate_fn=datamodule.collate_fn,
            generator=torch.Generator().manual_seed(0),
        )
        return model.majority_class(loader)
    finally:
        dataset.modality_sampling, dataset.augmentation = sampling, augmentation


def write_contributions(
    results: list[SubsetResult],
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str,
    metric: str,
    title: str,
    out_dir: Path,
) -> dict[str, Path]:
    """Shapley values and pairwise interactions of one metric, printed and written.

    The empty subset scores the task's trivial predictor (``model.trivial_scores``) on the
    evaluated split: for semantic tasks the majority class of the training split
    (`training_majority_class`) predicted everywhere, for instances nothing.

    Args:
        results: The subset scores (`fusion.evaluation.subsets.evaluate_subsets`), the full
            set first.
        model: The task.
        datamodule: Its DataModule.
        stage: ``"test"`` or ``"validate"``: the split the subsets were scored on.
        metric: Score name without the stage prefix, e.g. ``"iou_1"``.
        title: Its title in the text and the chart, e.g. ``"IoU class 1"``.
        out_dir: Where to write.

    Returns:
        ``{"contributions": <markdown>, "contributions_png": <png>, "contributions_json":
        <json>}``; the JSON holds ``metric``, ``title``, ``empty``, ``shapley`` (modality ->
        value), ``interactions`` (``"a+b"`` -> value) and ``majority_class``.

    Raises:
        ValueError: If a subset has no ``metric`` score or the trivial predictor lacks it.
    """
    prefix = "test" if stage == "test" else "val"
    majority = training_majority_class(model, datamodule)
    datamodule.set_eval_modalities(list(datamodule.modalities))
    datamodule.setup(stage)
    loader = datamodule.test_dataloader() if stage == "test" else datamodule.val_dataloader()
    trivial = (
        model.trivial_scores(loader) if majority is None else model.trivial_scores(loader, majority)
    )
    if metric not in trivial:
        raise ValueError(f"the trivial predictor gives no {metric!r} (it gives {list(trivial)})")
    empty = trivial[metric]
    key = f"{prefix}/{metric}"
    scores = {frozenset(r.modalities): r.metrics[key] for r in results if key in r.metrics}
    players = list(results[0].modalities)  # the full set comes first in table order
    values = shapley_values(scores, players, empty)
    interactions = interaction_indices(scores, players, empty)
    predictor = (
        "trivial predictor"
        if majority is None
        else f"trivial predictor: class {majority}, the training split's majority, everywhere"
    )
    text = f"Empty subset ({predictor}): {title} {empty:.3f}\n\n"
    text += contributions_text(values, interactions, title)
    print(text)
    paths = {"contributions": out_dir / "contributions.md"}
    paths["contributions"].write_text(text)
    paths["contributions_png"] = out_dir / "contributions.png"
    plot_contributions(values, interactions, paths["contributions_png"], title)
    record: dict[str, Any] = {
        "metric": metric,
        "title": title,
        "empty": float(empty),
        "shapley": {name: float(value) for name, value in values.items()},
        "interactions": {f"{a}+{b}": float(value) for (a, b), value in interactions.items()},
        "majority_class": majority,
    }
    paths["contributions_json"] = out_dir / "contributions.json"
    paths["contributions_json"].write_text(json.dumps(record, indent=2) + "\n")
    return paths
