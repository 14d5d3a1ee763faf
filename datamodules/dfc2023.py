"""IEEE GRSS Data Fusion Contest 2023, Track 2: RGB, SAR and nDSM triplets with building polygons.

Layout, as the contest distributes it::

    <root>/annotations/buildings_only_{train,val,test}.json   MS COCO, polygons, category building
    <root>/{train,val,test}/rgb/<name>.tif                    3 bands, uint8
    <root>/{train,val,test}/sar/<name>.tif                    1 band, SAR amplitude
    <root>/{train,val,test}/height/<name>.tif                 1 band, nDSM in metres

COCO ``file_name`` links an annotation's image to the three tiles of the same name. The paper
uses the nDSM as an input modality (``dsm``) and turns the height-estimation task into building
instance and semantic segmentation; tiles (512 x 512) are resized to 256 x 256.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pycocotools import mask as coco_mask

from datamodules.augmentation import JointAugmentation
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import MultimodalDataset, Target
from datamodules.modality import Modality
from datamodules.modality_sampling import DrawUnit, ModalitySampling
from datamodules.rasters import RasterError, RasterGrid

SAR_DB_RANGE = (-25.0, 0.0)
"""SAR amplitude is converted to ``10 * log10`` and clipped to this range (dB), as the paper's
loader does."""


class CocoError(ValueError):
    """A COCO annotation file is empty, malformed or points at missing tiles."""


@dataclass(frozen=True)
class CocoImage:
    """One image of a COCO annotation file.

    Attributes:
        id: its ``image_id``.
        height: rows of the annotated image (pixels).
        width: columns of the annotated image (pixels).
    """

    id: int
    height: int
    width: int

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.height, self.width


class DFC2023(MultimodalDataset):
    """DFC2023 Track 2 as a building instance and semantic segmentation dataset.

    Modalities: ``rgb`` (3 bands, 0..255), ``sar`` (1 band, dB clipped to [-25, 0]) and ``dsm``
    (1 band, nDSM metres, read from ``height/``). Targets: ``mask`` (0 background, 1 building),
    and the building instances (``instance_masks``, ``boxes``, ``labels`` with class ids
    remapped to ``0..K-1``).

    Args:
        root: dataset folder (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        modalities: modalities to use (default: ``rgb``, ``sar``, ``dsm``).
        modality_sampling: modality subset rule (see `datamodules.modality_sampling`).
        image_size: resize tiles to this size (the paper: 256); None keeps 512.
        augmentation: geometric augmentation, or None.
        stats: normalization statistics, None for `default_stats`.
        normalize: apply the statistics.
        instances: return the building instances (False saves their decoding when only the
            semantic mask or no label is needed, as in pretraining).

    Raises:
        FileNotFoundError: if the annotation file or a tile referenced by it is missing.
        CocoError: if the annotation file is empty or malformed.
    """

    native_tile_size: ClassVar[int | None] = 512
    all_modalities: ClassVar[dict[str, Modality]] = {
        "rgb": Modality(3, "red, green, blue, 0..255", rgb=(0, 1, 2)),
        "sar": Modality(1, "SAR amplitude as 10*log10, clipped to [-25, 0] dB"),
        "dsm": Modality(1, "normalized DSM (height above ground), metres"),
    }
    folders: ClassVar[dict[str, str]] = {"rgb": "rgb", "sar": "sar", "dsm": "height"}
    classes: ClassVar[tuple[str, ...]] = ("background", "building")
    # Recomputed with `python -m datamodules.normalization dfc2023 --root data/dfc2023` on the
    # embedded default; recompute them on the real training split.
    default_stats: ClassVar[dict[str, dict[str, list[float]]]] = {
        "rgb": {
            "mean": [126.696064, 126.480172, 109.187254],
            "std": [40.570972, 37.236116, 39.492566],
        },
        "sar": {"mean": [-14.419037], "std": [6.632501]},
        "dsm": {"mean": [2.069398], "std": [5.711329]},
    }

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        modality_sampling: ModalitySampling = "all",
        image_size: int | None = 256,
        augmentation: JointAugmentation | None = None,
        stats: str | Path | Mapping[str, Any] | None = None,
        normalize: bool = True,
        instances: bool = True,
    ) -> None:
        super().__init__(
            root, split, modalities, modality_sampling, image_size, augmentation, stats, normalize
        )
        self.instances = instances
        self.annotation_file = self.root / "annotations" / f"buildings_only_{split}.json"
        self.images, self.annotations, categories = _load_coco(self.annotation_file)
        self.category_index = {cat["id"]: i for i, cat in enumerate(categories)}
        self.classes = ("background", *(cat["name"] for cat in categories))  # type: ignore[misc]
        self._check_tiles()

    def _check_tiles(self) -> None:
        """Raise if any tile named in the annotation file lacks a file of a used modality."""
        missing = []
        for image in self.images:
            for path in self._tile_paths_of(image["file_name"]).values():
                if not path.is_file():
                    missing.append(str(path))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(
                f"{self.annotation_file} references {len(missing)} missing tile file(s): {shown}"
            )

    def _tile_paths_of(self, file_name: str) -> dict[str, Path]:
        split_dir = self.root / self.split
        return {m: split_dir / self.folders[m] / file_name for m in self.modalities}

    def __len__(self) -> int:
        """Number of tiles in the annotation file."""
        return len(self.images)

    def tile_name(self, index: int) -> str:
        """File name of tile ``index`` without extension."""
        return Path(self.images[index]["file_name"]).stem

    def coco_image(self, index: int) -> CocoImage:
        """The annotation file's record of tile ``index``: COCO image id and native size.

        The native size is the one the annotations (and the contest's scoring) use, e.g.
        512 x 512, whatever ``image_size`` the samples are resized to.
        """
        image = self.images[index]
        return CocoImage(int(image["id"]), int(image["height"]), int(image["width"]))

    @property
    def category_ids(self) -> tuple[int, ...]:
        """COCO ``category_id`` of each class id ``0..K-1`` (the inverse of the remapping)."""
        by_label = {label: category for category, label in self.category_index.items()}
        return tuple(by_label[label] for label in range(len(by_label)))

    def _tile_paths(self, index: int) -> dict[str, Path]:
        return self._tile_paths_of(self.images[index]["file_name"])

    def _preprocess(self, name: str, data: np.ndarray) -> np.ndarray:
        data = data.astype(np.float32)
        if name == "sar":
            with np.errstate(divide="ignore", invalid="ignore"):
                decibels = 10.0 * np.log10(np.maximum(data, 0.0))
            # Zero amplitude gives -inf dB, which the clip maps to the lower end; NaN stays NaN
            # and is handled as no data.
            return np.clip(decibels, *SAR_DB_RANGE, out=decibels, where=~np.isnan(decibels))
        return data

    def _read_target(self, index: int, grid: RasterGrid, reference: Path) -> Target:
        image = self.images[index]
        if (image["height"], image["width"]) != (grid.height, grid.width):
            raise RasterError(
                f"{reference}: tile is {grid.width}x{grid.height} but {self.annotation_file} says "
                f"{image['width']}x{image['height']} for {image['file_name']!r}"
            )
        annotations = self.annotations[image["id"]]
        rles = [_segmentation_rle(a["segmentation"], grid.height, grid.width) for a in annotations]
        labels = [self.category_index[a["category_id"]] for a in annotations]
        semantic = np.zeros((grid.height, grid.width), dtype=np.uint8)
        for label in sorted(set(labels)):  # one decode of the union per class
            union = coco_mask.merge([r for r, k in zip(rles, labels, strict=True) if k == label])
            semantic[coco_mask.decode(union).astype(bool)] = label + 1
        if not self.instances:
            return Target(semantic)
        return Target(semantic, [coco_mask.decode(rle) for rle in rles], labels)


def _load_coco(path: Path) -> tuple[list[dict], dict[int, list[dict]], list[dict]]:
    """Read and check a COCO file: images, annotations grouped by image id, and categories."""
    if not path.is_file():
        raise FileNotFoundError(f"Missing COCO annotation file: {path}")
    try:
        coco = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CocoError(f"{path}: not valid JSON ({error})") from error
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            raise CocoError(f"{path}: missing or invalid list {key!r}")
    if not coco["images"]:
        raise CocoError(f"{path}: 'images' is empty")
    if not coco["categories"]:
        raise CocoError(f"{path}: 'categories' is empty")
    for image in coco["images"]:
        lacking = {"id", "file_name", "width", "height"} - set(image)
        if lacking:
            raise CocoError(f"{path}: image {image.get('id', image)} lacks {sorted(lacking)}")
    image_ids = {image["id"] for image in coco["images"]}
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    category_ids = {c["id"] for c in categories}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for annotation in coco["annotations"]:
        where = f"{path}: annotation {annotation.get('id')}"
        if annotation.get("image_id") not in image_ids:
            raise CocoError(f"{where} refers to unknown image_id {annotation.get('image_id')}")
        if annotation.get("category_id") not in category_ids:
            raise CocoError(f"{where} has unknown category_id {annotation.get('category_id')}")
        _check_segmentation(annotation.get("segmentation"), where)
        by_image[annotation["image_id"]].append(annotation)
    return coco["images"], by_image, categories


def _check_segmentation(segmentation: Any, where: str) -> None:
    """Raise `CocoError` unless ``segmentation`` is usable polygons or an RLE."""
    if isinstance(segmentation, dict):
        if not {"counts", "size"} <= set(segmentation):
            raise CocoError(f"{where}: RLE segmentation needs 'counts' and 'size'")
        return
    if not isinstance(segmentation, list) or not segmentation:
        raise CocoError(f"{where}: segmentation is empty or not a list of polygons")
    for polygon in segmentation:
        if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
            raise CocoError(
                f"{where}: malformed polygon (need an even number >= 6 of coordinates): "
                f"{str(polygon)[:80]}"
            )
        values = np.asarray(polygon, dtype=float) if _numeric(polygon) else None
        if values is None or not np.isfinite(values).all():
            raise CocoError(f"{where}: polygon has non-numeric or non-finite coordinates")


def _numeric(values: list) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _segmentation_rle(segmentation: list | dict, height: int, width: int) -> dict:
    """One annotation's polygons (or RLE) as a single COCO run-length encoding."""
    if isinstance(segmentation, list):
        return coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):  # uncompressed RLE
        return coco_mask.frPyObjects(segmentation, height, width)
    return segmentation


class DFC2023DataModule(MultimodalDataModule):
    """DataModule of DFC2023 Track 2 (see `DFC2023`).

    Args:
        root: dataset folder; None reads ``FUSION_DATA_ROOT``.
        modalities: modalities to use (default all: ``rgb``, ``sar``, ``dsm``).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: resize tiles to this size (the paper: 256).
        train_modalities: modality sampling of the training split (default uniform subsets).
        eval_modalities: modality subset of validation and test (default all).
        augment: flips, rotations and random resized crops on the training split.
        crop_size: output size of the training crop (None: no crop, only flips/rotations).
        crop_scale: area range of the random resized crop.
        stats: normalization statistics (mapping or JSON path), None for the defaults.
        instances: return building instances (False for pretraining, which needs none).
        train_modalities_per: ``"batch"`` (one subset per training batch, the paper's
            IV-B-5) or ``"sample"``.
    """

    def __init__(
        self,
        root: str | None = None,
        modalities: list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        image_size: int | None = 256,
        train_modalities: ModalitySampling = "uniform",
        eval_modalities: ModalitySampling = "all",
        augment: bool = True,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        stats: str | dict[str, Any] | None = None,
        instances: bool = True,
        train_modalities_per: DrawUnit = "batch",
    ) -> None:
        super().__init__(
            DFC2023,
            root,
            modalities,
            batch_size,
            num_workers,
            image_size,
            train_modalities,
            eval_modalities,
            augment,
            crop_size,
            crop_scale,
            stats,
            instances=instances,
            train_modalities_per=train_modalities_per,
        )
