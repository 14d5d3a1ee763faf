"""Earth-Engine quadruplets: Sentinel-1, Sentinel-2, DEM and Dynamic World, with UrbanAtlas labels.

The paper's own dataset (not public). This package defines its on-disk layout, split by region
(the paper trains on 10 cities and validates on 2)::

    <root>/splits.json                       {"train": [regions], "val": [...], "test": [...]}
    <root>/<region>/s1/<name>.tif            2 bands float32: VV, VH backscatter in dB
    <root>/<region>/s2/<name>.tif            4 bands: B2, B3, B4, B8 reflectance x 10000
                                             (0: no data)
    <root>/<region>/dem/<name>.tif           1 band float32: elevation in metres
    <root>/<region>/dnw/<name>.tif           1 band uint8: Dynamic World label 0..8 (255: no data,
                                             loaded as id 9)
    <root>/<region>/label/<name>.tif         1 band: UrbanAtlas 2018 code (e.g. 11100)

The five files of a tile share one grid (10 m, 256 x 256 pixels in the paper). Files without a
no-data tag follow the layout's values (Sentinel-2 0, Dynamic World 255); a tag overrides them.
Without
``splits.json`` a folder ``<root>/<split>/`` is read as the single region of that split; a region
listed in two splits is refused. Labels
are merged into seven classes by `datamodules.landcover.urban_atlas_to_classes`; unmapped
codes are ignored. docs/earth_engine_export.md describes how to export such tiles from Earth Engine.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from datamodules.augmentation import JointAugmentation
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import MultimodalDataset, Target
from datamodules.landcover import (
    DYNAMIC_WORLD_CLASSES,
    IGNORE_INDEX,
    LANDCOVER_CLASSES,
    urban_atlas_to_classes,
)
from datamodules.modality import Modality
from datamodules.modality_sampling import DrawUnit, ModalitySampling
from datamodules.rasters import RasterGrid, read_raster

LABEL_FOLDER = "label"
NODATA_CLASS = 255
"""Value of a Dynamic World pixel without data (class ids are 0..8), unless the file says else."""


class Quadruplets(MultimodalDataset):
    """Land-cover mapping from Sentinel-1, Sentinel-2, a DEM and Dynamic World.

    Modalities: ``s1`` (VV, VH dB), ``s2`` (B2, B3, B4, B8 reflectance x 10000), ``dem``
    (metres) and ``dnw`` (Dynamic World classes, categorical with 9 classes). Target: ``mask``
    with the seven merged UrbanAtlas classes of `datamodules.landcover.LANDCOVER_CLASSES`.

    Args:
        root: dataset folder (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        modalities: modalities to use (default all four).
        modality_sampling: modality subset rule (see `datamodules.modality_sampling`).
        image_size: resize tiles to this size (None: native).
        augmentation: geometric augmentation, or None.
        stats: normalization statistics, None for `default_stats`.
        normalize: apply the statistics.
        regions: regions of this split, overriding ``splits.json``.

    Raises:
        FileNotFoundError: if a region folder, a modality folder or a tile file is missing.
        ValueError: if ``splits.json`` lacks the split or lists a region in two splits, or a
            split has no tiles.
    """

    native_tile_size: ClassVar[int | None] = 256
    all_modalities: ClassVar[dict[str, Modality]] = {
        "s1": Modality(2, "Sentinel-1 VV, VH backscatter, dB", rgb=(0, 1, 0)),
        "s2": Modality(4, "Sentinel-2 B2, B3, B4, B8 reflectance x 10000", rgb=(2, 1, 0), nodata=0),
        "dem": Modality(1, "elevation, metres"),
        "dnw": Modality(
            1, "Dynamic World label", classes=len(DYNAMIC_WORLD_CLASSES), nodata=NODATA_CLASS
        ),
    }
    classes: ClassVar[tuple[str, ...]] = LANDCOVER_CLASSES
    # Recomputed with `python -m datamodules.normalization quadruplets --root data/quadruplets`
    # on the embedded default; recompute them on the real training split.
    default_stats: ClassVar[dict[str, dict[str, list[float]]]] = {
        "s1": {"mean": [-10.219648, -17.371054], "std": [4.306386, 4.549916]},
        "s2": {
            "mean": [652.065245, 856.232091, 832.856934, 2578.519851],
            "std": [270.041948, 297.951756, 411.441426, 907.247457],
        },
        "dem": {"mean": [192.918598], "std": [242.125621]},
    }

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        modality_sampling: ModalitySampling = "all",
        image_size: int | None = None,
        augmentation: JointAugmentation | None = None,
        stats: str | Path | Mapping[str, Any] | None = None,
        normalize: bool = True,
        regions: Sequence[str] | None = None,
    ) -> None:
        super().__init__(
            root, split, modalities, modality_sampling, image_size, augmentation, stats, normalize
        )
        self.regions = tuple(regions) if regions is not None else self._split_regions()
        self.tiles = self._find_tiles()

    def _split_regions(self) -> tuple[str, ...]:
        """Regions of this split from ``splits.json``, or ``<root>/<split>`` without one."""
        splits_file = self.root / "splits.json"
        if splits_file.is_file():
            splits = json.loads(splits_file.read_text())
            if self.split not in splits or not splits[self.split]:
                raise ValueError(f"{splits_file} lists no regions for split {self.split!r}")
            _check_disjoint_regions(splits, splits_file)
            return tuple(splits[self.split])
        if (self.root / self.split).is_dir():
            return (self.split,)
        raise FileNotFoundError(
            f"Neither {splits_file} nor a folder {self.root / self.split} exists: cannot tell "
            f"which regions form the {self.split!r} split"
        )

    def _find_tiles(self) -> list[tuple[str, str]]:
        """(region, name) of every labelled tile; raise if a used modality lacks a file."""
        tiles, missing = [], []
        for region in self.regions:
            label_dir = self.root / region / LABEL_FOLDER
            if not label_dir.is_dir():
                raise FileNotFoundError(f"Missing label folder of region {region!r}: {label_dir}")
            for label in sorted(label_dir.glob("*.tif")):
                tiles.append((region, label.stem))
                for name in self.modalities:
                    path = self.root / region / name / label.name
                    if not path.is_file():
                        missing.append(str(path))
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise FileNotFoundError(f"{len(missing)} modality file(s) missing: {shown}")
        if not tiles:
            raise ValueError(f"No tiles in regions {list(self.regions)} under {self.root}")
        return tiles

    def __len__(self) -> int:
        """Number of tiles in the split's regions."""
        return len(self.tiles)

    def tile_name(self, index: int) -> str:
        """``<region>/<name>`` of tile ``index``."""
        region, name = self.tiles[index]
        return f"{region}/{name}"

    def _tile_paths(self, index: int) -> dict[str, Path]:
        region, name = self.tiles[index]
        return {m: self.root / region / m / f"{name}.tif" for m in self.modalities}

    def _read_target(self, index: int, grid: RasterGrid, reference: Path) -> Target:
        region, name = self.tiles[index]
        path = self.root / region / LABEL_FOLDER / f"{name}.tif"
        label = read_raster(path, 1, grid, reference)
        mask = urban_atlas_to_classes(label.data[0])
        if label.nodata is not None:
            mask[label.nodata] = IGNORE_INDEX
        return Target(mask)


def _check_disjoint_regions(splits: Mapping[str, Sequence[str]], source: Path) -> None:
    """Raise if a region is listed in two splits of ``splits.json``."""
    owner: dict[str, str] = {}
    for split, regions in splits.items():
        for region in regions:
            if owner.setdefault(region, split) != split:
                raise ValueError(
                    f"{source}: region {region!r} is in both split {owner[region]!r} and split "
                    f"{split!r}; a region must belong to one split only"
                )


class QuadrupletsDataModule(MultimodalDataModule):
    """DataModule of the Earth-Engine quadruplets (see `Quadruplets`).

    Args:
        root: dataset folder; None reads ``FUSION_DATA_ROOT``.
        modalities: modalities to use (default all: ``s1``, ``s2``, ``dem``, ``dnw``).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: resize tiles to this size (None: native, 256 in the paper).
        train_modalities: modality sampling of the training split (default uniform subsets).
        eval_modalities: modality subset of validation and test (default all).
        augment: flips, rotations and random resized crops on the training split.
        crop_size: output size of the training crop (None: no crop, only flips/rotations).
        crop_scale: area range of the random resized crop.
        stats: normalization statistics (mapping or JSON path), None for the defaults.
        train_modalities_per: ``"batch"`` (one subset per training batch, the paper's
            IV-B-5) or ``"sample"``.
    """

    def __init__(
        self,
        root: str | None = None,
        modalities: list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        image_size: int | None = None,
        train_modalities: ModalitySampling = "uniform",
        eval_modalities: ModalitySampling = "all",
        augment: bool = True,
        crop_size: int | None = None,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        stats: str | dict[str, Any] | None = None,
        train_modalities_per: DrawUnit = "batch",
    ) -> None:
        super().__init__(
            Quadruplets,
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
            train_modalities_per=train_modalities_per,
        )
