"""Sen1Floods11 hand-labelled chips, tiled, with a spatial split inside each chip.

Sen1Floods11 (Bonafilia et al., CVPR Workshops 2020; CC BY 4.0) ships 512 x 512 chips of
Sentinel-1 (VV, VH dB), Sentinel-2 L1C (13 bands, reflectance x 10000, 0 = no data) and a hand-drawn
water mask (-1 no data, 0 not water, 1 water). This dataset reads every chip under ``root`` (flat,
as in ``../shared/realdata/sen1floods11/``, or in the official ``S1Hand/``, ``S2Hand/``,
``LabelHand/`` folders), cuts it into square tiles and splits space into three disjoint areas
of every chip: the top half trains, the bottom-left quarter validates and the bottom-right
quarter tests. A tile lies wholly inside its area, so no pixel is in two splits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import rasterio
from rasterio.windows import Window

from datamodules.augmentation import JointAugmentation
from datamodules.datamodule import MultimodalDataModule
from datamodules.dataset import MultimodalDataset, Target
from datamodules.landcover import IGNORE_INDEX
from datamodules.modality import Modality
from datamodules.modality_sampling import DrawUnit, ModalitySampling
from datamodules.rasters import RasterGrid, read_raster

SHARED_CHIP_FOLDER = Path(__file__).resolve().parents[2] / "shared/realdata/sen1floods11"
"""Where the repository's sibling ``shared`` folder keeps the real chip used by tests and demos."""

_SUFFIXES = {"s1": "S1Hand", "s2": "S2Hand", "label": "LabelHand"}


class Sen1Floods11Chip(MultimodalDataset):
    """Surface-water segmentation from Sentinel-1 and Sentinel-2 tiles of Sen1Floods11 chips.

    Modalities: ``s1`` (VV, VH in dB) and ``s2`` (B2, B3, B4, B8 reflectance x 10000, read
    from the 13-band L1C file). Target: ``mask`` with 0 not water, 1 water and
    `datamodules.landcover.IGNORE_INDEX` for the label's -1 and for no-data pixels.

    Args:
        root: folder holding the chips (default: ``../shared/realdata/sen1floods11``).
        split: ``"train"`` (top half of each chip), ``"val"`` (bottom-left quarter) or
            ``"test"`` (bottom-right quarter).
        modalities: modalities to use (default both).
        modality_sampling: modality subset rule (see `datamodules.modality_sampling`).
        image_size: resize tiles to this size (None: ``tile_size``).
        augmentation: geometric augmentation, or None.
        stats: normalization statistics, None for `default_stats`.
        normalize: apply the statistics.
        tile_size: side of the square tiles, pixels.
        stride: step between training tiles (default ``tile_size``: no overlap); validation and
            test tiles never overlap.

    Raises:
        FileNotFoundError: if ``root`` holds no chip, or a chip lacks its S2 or label file.
        ValueError: if ``tile_size`` does not fit in a quarter of a chip.
    """

    all_modalities: ClassVar[dict[str, Modality]] = {
        "s1": Modality(2, "Sentinel-1 VV, VH backscatter, dB", rgb=(0, 1, 0)),
        "s2": Modality(
            4,
            "Sentinel-2 L1C B2, B3, B4, B8 reflectance x 10000",
            rgb=(2, 1, 0),
            file_bands=13,
            read_bands=(2, 3, 4, 8),
            nodata=0,
        ),
    }
    classes: ClassVar[tuple[str, ...]] = ("not_water", "water")
    # `python -m datamodules.normalization sen1floods11 --root ../shared/realdata/sen1floods11`
    default_stats: ClassVar[dict[str, dict[str, list[float]]]] = {
        "s1": {"mean": [-12.445357, -20.512368], "std": [6.289607, 6.38478]},
        "s2": {
            "mean": [1206.411934, 1174.721291, 1147.925659, 1620.154266],
            "std": [269.933572, 359.567795, 496.411939, 888.481166],
        },
    }

    def __init__(
        self,
        root: str | Path = SHARED_CHIP_FOLDER,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        modality_sampling: ModalitySampling = "all",
        image_size: int | None = None,
        augmentation: JointAugmentation | None = None,
        stats: str | Path | Mapping[str, Any] | None = None,
        normalize: bool = True,
        tile_size: int = 64,
        stride: int | None = None,
    ) -> None:
        super().__init__(
            root, split, modalities, modality_sampling, image_size, augmentation, stats, normalize
        )
        self.tile_size = tile_size
        self.stride = (stride or tile_size) if split == "train" else tile_size
        self.chips = self._find_chips()
        self.tiles = [
            (chip, window) for chip in self.chips for window in self._windows(self.chips[chip])
        ]

    def _find_chips(self) -> dict[str, dict[str, Path]]:
        """Chip id -> paths of its S1, S2 and label files."""
        chips = {}
        for s1 in sorted(self.root.rglob(f"*_{_SUFFIXES['s1']}.tif")):
            chip = s1.name.removesuffix(f"_{_SUFFIXES['s1']}.tif")
            paths = {"s1": s1}
            for key in ("s2", "label"):
                name = f"{chip}_{_SUFFIXES[key]}.tif"
                candidates = [s1.parent / name, s1.parent.parent / _SUFFIXES[key] / name]
                found = next((p for p in candidates if p.is_file()), None)
                if found is None:
                    raise FileNotFoundError(f"Chip {chip}: missing {candidates[0]}")
                paths[key] = found
            chips[chip] = paths
        if not chips:
            raise FileNotFoundError(f"No Sen1Floods11 chip (*_S1Hand.tif) under {self.root}")
        return chips

    def _windows(self, paths: dict[str, Path]) -> list[Window]:
        """Tile windows of one chip that lie wholly in this split's area."""
        with rasterio.open(paths["label"]) as src:
            height, width = src.height, src.width
        middle_row, middle_col = height // 2, width // 2
        if self.tile_size > min(middle_row, middle_col):
            raise ValueError(
                f"tile_size {self.tile_size} does not fit in a quarter of {paths['label']}"
            )
        # (top, bottom, left, right) of the split's area: rows and columns it spans.
        top, bottom, left, right = {
            "train": (0, middle_row, 0, width),
            "val": (middle_row, height, 0, middle_col),
            "test": (middle_row, height, middle_col, width),
        }[self.split]
        return [
            Window(col, row, self.tile_size, self.tile_size)
            for row in range(top, bottom - self.tile_size + 1, self.stride)
            for col in range(left, right - self.tile_size + 1, self.stride)
        ]

    def __len__(self) -> int:
        """Number of tiles in this split."""
        return len(self.tiles)

    def tile_name(self, index: int) -> str:
        """``<chip>_r<row>_c<col>`` of tile ``index`` (pixel offsets in the chip)."""
        chip, window = self.tiles[index]
        return f"{chip}_r{int(window.row_off)}_c{int(window.col_off)}"

    def _tile_paths(self, index: int) -> dict[str, Path]:
        return self.chips[self.tiles[index][0]]

    def _tile_window(self, index: int) -> Window:
        return self.tiles[index][1]

    def _read_target(self, index: int, grid: RasterGrid, reference: Path) -> Target:
        chip, window = self.tiles[index]
        label = read_raster(self.chips[chip]["label"], 1, grid, reference, window=window)
        values = label.data[0]
        mask = np.where((values == 0) | (values == 1), values, IGNORE_INDEX).astype(np.uint8)
        return Target(mask)


class Sen1Floods11DataModule(MultimodalDataModule):
    """DataModule of tiled Sen1Floods11 chips (see `Sen1Floods11Chip`).

    Args:
        root: folder holding the chips (default: ``../shared/realdata/sen1floods11``).
        modalities: modalities to use (default both: ``s1``, ``s2``).
        batch_size: samples per batch.
        num_workers: DataLoader worker processes.
        image_size: resize tiles to this size (None: ``tile_size``).
        train_modalities: modality sampling of the training split (default uniform subsets).
        eval_modalities: modality subset of validation and test (default all).
        augment: flips, rotations and random resized crops on the training split.
        crop_size: output size of the training crop (None: no crop, only flips/rotations).
        crop_scale: area range of the random resized crop.
        stats: normalization statistics (mapping or JSON path), None for the defaults.
        tile_size: side of the square tiles, pixels.
        stride: step between training tiles (default ``tile_size``).
        train_modalities_per: ``"batch"`` (one subset per training batch, the paper's
            IV-B-5) or ``"sample"``.
    """

    def __init__(
        self,
        root: str | None = str(SHARED_CHIP_FOLDER),
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
        tile_size: int = 64,
        stride: int | None = None,
        train_modalities_per: DrawUnit = "batch",
    ) -> None:
        super().__init__(
            Sen1Floods11Chip,
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
            tile_size=tile_size,
            stride=stride,
            train_modalities_per=train_modalities_per,
        )
