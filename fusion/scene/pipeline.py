"""A segmentation checkpoint with the data pipeline that trained it, for predicting scenes.

A scene tile must reach the model exactly as training tiles did. What that takes lives in the
training dataset class (`datamodules.dataset.MultimodalDataset` subclasses): which bands of
a file are read and the no-data value of files without a tag (`datamodules.modality.Modality`),
unit conversions (``_preprocess``), the normalization statistics (``default_stats``, or the
DataModule's ``stats`` override), and the resize to ``image_size``. The checkpoint itself
holds only the model's hyper-parameters, so the pipeline is taken from the run's config
(``config.yaml``, which ``fusion fit`` writes beside the ``checkpoints/`` folder, or
``--config``): its ``data`` section builds the DataModule. Without a config, the DataModule
class named in the checkpoint (Lightning stores its state under the class name) is built with
its defaults, which is right only when the run did not change the statistics or the sizes.

The per-tile steps are the training dataset's own methods (``_preprocess``, ``_fill_nodata``,
``_resize``, ``_to_sample``), called on an instance that only the base class has set up (no
files are searched), so normalization and no-data filling cannot drift from training.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor

import datamodules
from datamodules.datamodule import MultimodalDataModule, collate_samples
from datamodules.dataset import MultimodalDataset, Target
from datamodules.modality import Modality
from datamodules.rasters import Raster
from fusion.heads.inference import semantic_scores
from fusion.modality import parse_modalities
from fusion.run.hardware import autocast_context, choose_precision
from fusion.run.model_file import datamodule_from_section, load_checkpoint
from fusion.tasks import SegmentationTask
from fusion.tasks.segmentation import describe_modalities

log = logging.getLogger(__name__)

CPU_BATCH = 8
"""Tiles per forward pass on a CPU."""
MAX_BATCH = 256
"""Most tiles per forward pass on a GPU."""

TileRasters = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Modality name -> ``(data float32 [C, h, w] in the file's units, valid bool [h, w])``."""


@dataclass
class TilePipeline:
    """The training dataset's steps from tile rasters to a sample (no model: workers hold it).

    Attributes:
        dataset: the training dataset class, set up by the base class alone.
        modality_names: the model's modalities, in its order.
    """

    dataset: MultimodalDataset
    modality_names: tuple[str, ...]

    def sample(self, rasters: TileRasters, index: int = 0) -> dict[str, Any] | None:
        """One tile as a training sample (the sample contract of `datamodules.dataset`).

        A modality without any valid pixel in the tile is absent; no-data pixels of the
        others are filled and marked invalid, as in training.

        Args:
            rasters: the tile's modalities read on the reference grid (left out: absent).
            index: tile number, used as its name.

        Returns:
            The sample at the model's tile size, or None when no modality holds data.
        """
        shown = [name for name in self.modality_names if name in rasters and rasters[name][1].any()]
        if not shown:
            return None
        height, width = rasters[shown[0]][1].shape
        target = Target(np.zeros((height, width), dtype=np.uint8))
        arrays = {}
        for name in shown:
            data, valid = rasters[name]
            raster = Raster(
                self.dataset._preprocess(name, data), None if valid.all() else ~valid, None
            )
            arrays[name] = self.dataset._fill_nodata(name, raster, target)
        arrays, target = self.dataset._resize(arrays, target)
        return self.dataset._to_sample(index, arrays, target)


@dataclass
class SceneModel:
    """A segmentation model and the per-tile steps of its training data.

    Attributes:
        task: the model, in evaluation mode on ``device``.
        dataset: the training dataset class, set up by the base class alone; its methods
            turn tile rasters into samples.
        scale: model pixels per reference pixel (``image_size / tile_size`` of the run).
        tile: tile side in model pixels (the model's ``img_size`` unless changed).
        class_names: names of the output classes (``background`` first for instance models).
        device: where the model runs.
        source: where the data pipeline was found, for the log.
        precision: Lightning precision string the forward pass runs in (``"bf16-mixed"``,
            ``"16-mixed"`` or ``"32-true"``: the one training would use on the device).
    """

    task: SegmentationTask
    dataset: MultimodalDataset
    scale: float
    tile: int
    class_names: tuple[str, ...]
    device: torch.device
    source: str
    precision: str = "32-true"

    @property
    def modality_names(self) -> tuple[str, ...]:
        """The model's modalities, in its order (the bits of the modality map)."""
        return self.task.modality_names

    @property
    def modality_info(self) -> dict[str, Modality]:
        """What the training dataset knows of each modality."""
        return self.dataset.modality_info

    @property
    def instance(self) -> bool:
        """Whether the model predicts instances (building polygons) rather than classes."""
        return self.task.hparams.task == "instance"

    @property
    def tile_pixels(self) -> int:
        """Tile side in reference pixels."""
        return round(self.tile / self.scale)

    @property
    def pipeline(self) -> TilePipeline:
        """The per-tile steps without the model (for loader workers)."""
        return TilePipeline(self.dataset, self.modality_names)

    def sample(self, rasters: TileRasters, index: int = 0) -> dict[str, Any] | None:
        """One tile as a training sample: `TilePipeline.sample`."""
        return self.pipeline.sample(rasters, index)

    def default_batch_size(self) -> int:
        """Tiles per forward pass sized to the device.

        CPU: `CPU_BATCH` (larger batches measured no faster per tile). CUDA: as many tiles as
        half the free memory holds, from the peak memory of a probe forward pass of two tiles
        (at most `MAX_BATCH`).
        """
        if self.device.type != "cuda":
            return CPU_BATCH
        probe = 2
        samples = [self.blank_sample(index) for index in range(probe)]
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.predict(samples, self.tile_pixels)
        per_tile = max((torch.cuda.max_memory_allocated(self.device) - before) / probe, 1)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(min(max(free * 0.5 // per_tile, 1), MAX_BATCH))

    def blank_sample(self, index: int = 0) -> dict[str, Any]:
        """A tile where every modality holds data (zeros in the files' units), for probes."""
        side = self.tile_pixels
        rasters = {
            name: (
                np.zeros((self.modality_info[name].bands, side, side), np.float32),
                np.ones((side, side), dtype=bool),
            )
            for name in self.modality_names
        }
        sample = self.sample(rasters, index)
        assert sample is not None
        return sample

    @torch.inference_mode()
    def predict(self, samples: Sequence[dict[str, Any]], size: int) -> Tensor:
        """Per-class probabilities of a batch of tiles at ``size x size`` reference pixels.

        Runs under autocast in ``precision``. Semantic models: Mask2Former's class scores
        (`fusion.heads.inference.semantic_scores`) normalised to sum to 1. Instance models:
        per class, the best score of the predicted instances covering the pixel
        (`SegmentationTask.instance_prediction`), and background ``1 -`` the best of those,
        normalised the same way.

        Returns:
            ``float32 [B, C, size, size]`` on the CPU; C = K (semantic) or K + 1 (instance,
            background first).
        """
        batch = collate_samples(list(samples))
        batch = {
            key: value.to(self.device, non_blocking=True) if isinstance(value, Tensor) else value
            for key, value in batch.items()
        }
        with autocast_context(self.precision, self.device.type):
            predictions = self.task.encode_batch(batch, train=False)
            if self.instance:
                scores = instance_scores(
                    self.task.instance_prediction(predictions, (size, size)),
                    self.task.hparams.num_classes,
                )
            else:
                scores = semantic_scores(
                    predictions.final_class_logits, predictions.final_mask_logits, (size, size)
                )
        scores = scores.float().clamp_min(0)
        return (scores / scores.sum(1, keepdim=True).clamp_min(1e-12)).cpu()


def instance_scores(instances: Sequence[Any], num_classes: int) -> Tensor:
    """Per-pixel class scores of instance predictions: ``[B, K + 1, H, W]``, background first.

    Args:
        instances: one `fusion.heads.InstancePrediction` per image (masks ``[k, H, W]``).
        num_classes: K.
    """
    out = []
    for prediction in instances:
        masks = prediction.masks.float()  # [k, H, W]
        classes = torch.zeros(num_classes, *masks.shape[-2:], device=masks.device)
        weighted = masks * prediction.scores[:, None, None]
        for label in range(num_classes):
            chosen = prediction.labels == label
            if chosen.any():
                classes[label] = weighted[chosen].amax(0)
        background = 1 - classes.amax(0, keepdim=True)
        out.append(torch.cat([background, classes]))
    return torch.stack(out)


def load_scene_model(
    checkpoint_path: str | Path,
    config: str | Path | None = None,
    scale: float | None = None,
    tile: int | None = None,
    device: str = "auto",
    trust: bool = False,
    precision: str = "auto",
) -> SceneModel:
    """Load a `fusion.tasks.SegmentationTask` checkpoint and its training data pipeline.

    Args:
        checkpoint_path: the Lightning checkpoint, or a model folder of ``fusion export``
            (whose card gives the data pipeline).
        config: the run's config (default: ``config.yaml`` two folders up from the
            checkpoint, where ``fusion fit`` writes it, if it exists).
        scale: model pixels per reference pixel (default: the run's ``image_size /
            tile_size`` when its DataModule has a ``tile_size``, else ``image_size`` over the
            dataset's ``native_tile_size``, e.g. 256 / 512 for DFC2023; else 1).
        tile: tile side in model pixels (default: the model's ``img_size``); a multiple of
            the patch size.
        device: ``"cpu"``, ``"cuda"``, ... or ``"auto"`` (CUDA when available).
        trust: load a checkpoint that needs unpickling (see `fusion.run.model_file`).
        precision: ``"auto"`` (what training would use on the device:
            `fusion.run.hardware.choose_precision`), ``"32-true"``, ``"bf16-mixed"`` or
            ``"16-mixed"``.

    Raises:
        FileNotFoundError: if the checkpoint or the config does not exist.
        fusion.run.model_file.UnsafeCheckpointError: if the checkpoint needs unpickling and
            ``trust`` is False.
        ValueError: if the checkpoint is not a segmentation checkpoint, its weights do not fit,
            no data pipeline can be found, the pipeline's modalities differ from the model's,
            or the tile does not map to whole reference pixels.
    """
    if tile is not None and tile <= 0:
        raise ValueError(f"tile size must be positive, got {tile}")
    if scale is not None and not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    checkpoint_path = Path(checkpoint_path)
    checkpoint = load_checkpoint(checkpoint_path, trust)
    task = build_task(checkpoint, checkpoint_path)
    datamodule, source = training_datamodule(checkpoint, checkpoint_path, config)
    settings = datamodule.kwargs
    tile = task.hparams.img_size if tile is None else tile
    if tile % task.hparams.patch_size:
        raise ValueError(
            f"tile {tile} is not a multiple of the patch size {task.hparams.patch_size}"
        )
    if scale is None:
        scale = 1.0
        native = settings.get("tile_size") or datamodule.dataset_class.native_tile_size
        if settings.get("image_size") and native:
            scale = settings["image_size"] / native
        elif settings.get("image_size"):
            log.warning(
                "The run resized its tiles to image_size %s from a size the config does not "
                "give: assuming one model pixel per reference pixel (pass --scale otherwise)",
                settings["image_size"],
            )
    if scale <= 0 or abs(tile / scale - round(tile / scale)) > 1e-6:
        raise ValueError(f"tile {tile} at scale {scale} is not a whole number of pixels")
    dataset = training_dataset(datamodule.dataset_class, task, tile, settings.get("stats"))
    classes = tuple(datamodule.dataset_class.classes)
    outputs = task.hparams.num_classes + (1 if task.hparams.task == "instance" else 0)
    if len(classes) != outputs:
        classes = tuple(f"class_{k}" for k in range(outputs))
    try:
        resolved = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r} (cpu, cuda, cuda:1, ... or auto)") from error
    if precision == "auto":
        precision = "32-true"
        if resolved.type in ("cpu", "cuda"):
            precision = choose_precision(accelerator=resolved.type).precision
    autocast_context(precision, resolved.type)  # refuses an unknown precision here
    task.to(resolved).eval()
    return SceneModel(task, dataset, scale, tile, classes, resolved, source, precision)


def build_task(checkpoint: Mapping[str, Any], path: Path) -> SegmentationTask:
    """The checkpoint's `SegmentationTask` with its weights.

    Raises:
        ValueError: if the checkpoint holds another task or its weights do not fit.
    """
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    class_path = hparams.get("_class_path", "fusion.tasks.SegmentationTask")
    if not class_path.endswith("SegmentationTask") or "num_classes" not in hparams:
        raise ValueError(f"{path} is not a SegmentationTask checkpoint ({class_path})")
    accepted = inspect.signature(SegmentationTask).parameters
    task = SegmentationTask(**{k: v for k, v in hparams.items() if k in accepted})
    try:
        task.load_state_dict(checkpoint["state_dict"], strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit its own hyper-parameters: {error}") from error
    return task


def training_datamodule(
    checkpoint: Mapping[str, Any], checkpoint_path: Path, config: str | Path | None
) -> tuple[MultimodalDataModule, str]:
    """The DataModule that trained the checkpoint, built from the run's config if there is one.

    Returns:
        The DataModule (no data is read) and a description of where it came from.

    Raises:
        FileNotFoundError: if ``config`` is given and does not exist.
        ValueError: if the config has no usable ``data`` section, or there is no config and
            the checkpoint names no known DataModule.
    """
    if config is None:
        beside = checkpoint_path.resolve().parent.parent / "config.yaml"
        config = beside if beside.is_file() else None
    if config is not None:
        config = Path(config)
        if not config.is_file():
            raise FileNotFoundError(f"run config not found: {config}")
        data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
        if "class_path" not in data:
            raise ValueError(f"{config} has no data.class_path: not a run config")
        class_name = data["class_path"].rpartition(".")[2]
        return datamodule_from_section(data), f"{config} ({class_name})"
    card_data = checkpoint.get("data")
    if card_data:  # an exported model: its card holds the pipeline and its statistics
        section = {
            "class_path": card_data["class_path"],
            "init_args": {**card_data.get("init_args", {}), "stats": card_data["normalization"]},
        }
        class_name = card_data["class_path"].rpartition(".")[2]
        return datamodule_from_section(section), f"{checkpoint_path} card ({class_name})"
    for name in datamodules.__all__:
        candidate = getattr(datamodules, name)
        if (
            isinstance(candidate, type)
            and issubclass(candidate, MultimodalDataModule)
            and candidate is not MultimodalDataModule
            and candidate.__qualname__ in checkpoint
        ):
            log.warning(
                "No run config beside %s: using %s with its default statistics and sizes "
                "(pass --config to use the run's)",
                checkpoint_path,
                name,
            )
            return candidate(root="."), f"{name} defaults (no run config)"
    raise ValueError(
        f"cannot tell which data pipeline trained {checkpoint_path}: pass --config with the "
        f"run's config.yaml"
    )


def training_dataset(
    dataset_class: type[MultimodalDataset],
    task: SegmentationTask,
    image_size: int,
    stats: str | Path | Mapping[str, Any] | None,
) -> MultimodalDataset:
    """The training dataset class, set up by the base class alone, for the model's modalities.

    Raises:
        ValueError: if the dataset does not know a modality of the model, or knows it with
            other channels.
    """
    names = list(task.modality_names)
    unknown = [name for name in names if name not in dataset_class.all_modalities]
    if unknown:
        raise ValueError(
            f"the model's modalities {unknown} are not modalities of {dataset_class.__name__} "
            f"({', '.join(dataset_class.all_modalities)}): the config is not this run's"
        )
    theirs = parse_modalities({n: dataset_class.all_modalities[n].spec for n in names})
    if theirs != task.specs:
        raise ValueError(
            f"the model has the modalities [{describe_modalities(task.specs)}] but "
            f"{dataset_class.__name__} gives [{describe_modalities(theirs)}]"
        )
    dataset = dataset_class.__new__(dataset_class)
    MultimodalDataset.__init__(
        dataset,
        root=".",
        split=dataset_class.splits[-1],
        modalities=names,
        image_size=image_size,
        stats=stats,
    )
    dataset.tile_name = lambda index: f"tile_{index}"  # the sample's name
    return dataset
