"""Sen1Floods11 chips in the dataset's official layout, split by whole chips, modalities missing.

The official layout keeps one file per chip and source: ``S1Hand/<chip>_S1Hand.tif``,
``S2Hand/<chip>_S2Hand.tif`` and ``LabelHand/<chip>_LabelHand.tif``. Real collections lack
files: a chip without an S2 file (clouds, no acquisition) simply has no Sentinel-2, and a file
without any valid pixel is no better. Here both make the modality absent for that chip, as a
modality with no data over a tile already is (``datamodules.dataset``); training draws its
random subsets among the modalities each tile has, and evaluating a fixed subset scores only
the tiles that have it (the others are counted as ``excluded_tiles``).

A chip on which no modality has data, or whose label has no labelled pixel, can teach and score
nothing: it is left out of its split with one warning naming it, and counted in the split's
summary (`Sen1Floods11Chips.summary`, logged when the DataModule sets up).

Splits are whole chips, so that a model is scored on places it never saw. They come from a
``splits.json`` (``{"train": [chip, ...], "val": [...], "test": [...]}``), from a folder with the
dataset's own ``flood_train_data.csv``, ``flood_valid_data.csv`` and ``flood_test_data.csv``
(lines ``<chip>_S1Hand.tif,<chip>_LabelHand.tif``), from a mapping, or by default from
`DEFAULT_SPLITS`, a split of the eleven chips of ``../shared/realdata/sen1floods11_chips``.
"""

from __future__ import annotations

import csv
import json
import logging
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from datamodules.augmentation import JointAugmentation
from datamodules.datamodule import MultimodalDataModule
from datamodules.modality_sampling import DrawUnit, ModalitySampling
from datamodules.rasters import read_raster
from datamodules.sen1floods11 import Sen1Floods11Chip

log = logging.getLogger(__name__)

SHARED_CHIPS_FOLDER = Path(__file__).resolve().parents[2] / "shared/realdata/sen1floods11_chips"
"""The repository's sibling ``shared`` folder of real chips in the official layout."""

DEFAULT_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "India_900498",
        "Sri-Lanka_534068",
        "Ghana_53713",
        "Ghana_97059",
        "Spain_6860600",
        "Somalia_699062",
        "Ghana_83483",
        "Paraguay_34417",
    ),
    "val": ("Mekong_333434",),
    "test": ("Spain_7370579", "USA_905409"),
}
"""The default split of the shipped chips. Only India_900498 and Spain_7370579 have Sentinel-2:
one trains (so that S2 is ever seen), the other tests (so that S2 and S1 + S2 can be scored).
The test chips hold a quarter (Spain) and a sixth (USA) water; the validation chip little
(1.3 %), as the remaining chips are nearly all dry or all water. The two broken chips
(Ghana_83483: label no data everywhere; Paraguay_34417: S1 without any valid pixel and no S2)
sit in training, where they are left out with a warning."""

OFFICIAL_SPLIT_FILES = {
    "train": "flood_train_data.csv",
    "val": "flood_valid_data.csv",
    "test": "flood_test_data.csv",
}
"""The dataset's own split files, by our split names."""

_FOLDERS = {"s1": "S1Hand", "s2": "S2Hand", "label": "LabelHand"}

SplitSpec = str | Path | Mapping[str, Sequence[str]] | None
"""What ``splits`` accepts: a ``.json`` file, a folder of the official CSV files, a mapping, or
None for `DEFAULT_SPLITS`."""


def read_splits(splits: SplitSpec) -> dict[str, tuple[str, ...]]:
    """Chip names of each split.

    Args:
        splits: see `SplitSpec`.

    Returns:
        ``{"train": (...), "val": (...), "test": (...)}`` (missing splits empty).

    Raises:
        FileNotFoundError: if the file or folder (or one of its CSV files) does not exist.
        ValueError: for a malformed file, an unknown split name, or a chip in two splits.
    """
    if splits is None:
        chosen: Mapping[str, Sequence[str]] = DEFAULT_SPLITS
    elif isinstance(splits, Mapping):
        chosen = splits
    else:
        path = Path(splits)
        if path.is_dir():
            chosen = {
                split: _official_csv(path / name) for split, name in OFFICIAL_SPLIT_FILES.items()
            }
        elif path.is_file():
            try:
                chosen = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise ValueError(f"Split file {path} is not valid JSON: {error}") from error
            if not isinstance(chosen, dict):
                raise ValueError(f"Split file {path} must hold an object of split -> chip names")
        else:
            raise FileNotFoundError(f"Split file or folder not found: {path}")
    unknown = sorted(set(chosen) - set(OFFICIAL_SPLIT_FILES))
    if unknown:
        raise ValueError(f"Unknown split name(s) {unknown} in {splits!r}; use train, val, test")
    result = {
        split: tuple(str(chip) for chip in chosen.get(split, ())) for split in OFFICIAL_SPLIT_FILES
    }
    seen: dict[str, str] = {}
    for split, chips in result.items():
        for chip in chips:
            if chip in seen:
                raise ValueError(
                    f"Chip {chip!r} is in both the {seen[chip]!r} and {split!r} splits"
                )
            seen[chip] = split
    return result


def _official_csv(path: Path) -> tuple[str, ...]:
    """Chip names of one official split file (``<chip>_S1Hand.tif,<chip>_LabelHand.tif``)."""
    if not path.is_file():
        raise FileNotFoundError(f"Official split file not found: {path}")
    chips = []
    with path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or not row[0].strip():
                continue
            first = Path(row[0].strip()).name
            if not first.endswith("_S1Hand.tif"):
                raise ValueError(
                    f"{path}, line {number}: expected '<chip>_S1Hand.tif,<chip>_LabelHand.tif', "
                    f"got {','.join(row)!r}"
                )
            chips.append(first.removesuffix("_S1Hand.tif"))
    return tuple(chips)


class Sen1Floods11Chips(Sen1Floods11Chip):
    """Tiles of whole Sen1Floods11 chips, one split per chip, in the official folder layout.

    Modalities, classes and labels are those of `datamodules.sen1floods11.Sen1Floods11Chip`;
    a chip's S1 or S2 file may be missing or hold no valid pixel (the modality is then absent
    for it). Tiles cover each chip on a grid of ``tile_size`` with step ``stride`` (evaluation
    tiles never overlap).

    Args:
        root: folder with ``S1Hand/``, ``S2Hand/`` and ``LabelHand/`` (default: the shared
            chips).
        split: ``"train"``, ``"val"`` or ``"test"``.
        modalities: modalities to use (default both).
        modality_sampling: modality subset rule (see `datamodules.modality_sampling`).
        image_size: resize tiles to this size (None: ``tile_size``).
        augmentation: geometric augmentation, or None.
        stats: normalization statistics, None for `default_stats`.
        normalize: apply the statistics.
        tile_size: side of the square tiles, pixels.
        stride: step between training tiles (default ``tile_size``).
        splits: which chips form each split (see `SplitSpec`).

    Attributes:
        excluded: chips of this split left out, chip -> reason.
        chip_modalities: chips kept -> the modalities with data on them.

    Raises:
        FileNotFoundError: if a chip of the split has no label file, or the split names a chip
            with no file at all under ``root``.
        ValueError: for a malformed split, or a split left without any chip.
    """

    # The training chips of DEFAULT_SPLITS (S2: India_900498 alone), computed with
    # `python -m datamodules.normalization sen1floods11_chips --root <the chips>`.
    default_stats = {
        "s1": {"mean": [-10.659296, -18.744755], "std": [3.662096, 5.70003]},
        "s2": {
            "mean": [1286.90694, 1264.285282, 1204.147636, 1243.814045],
            "std": [166.706857, 187.111246, 267.579638, 411.084774],
        },
    }

    def __init__(
        self,
        root: str | Path = SHARED_CHIPS_FOLDER,
        split: str = "train",
        modalities: Sequence[str] | None = None,
        modality_sampling: ModalitySampling = "all",
        image_size: int | None = None,
        augmentation: JointAugmentation | None = None,
        stats: str | Path | Mapping[str, Any] | None = None,
        normalize: bool = True,
        tile_size: int = 128,
        stride: int | None = None,
        splits: SplitSpec = None,
    ) -> None:
        self.split_chips = read_splits(splits)
        self.excluded: dict[str, str] = {}
        self.chip_modalities: dict[str, tuple[str, ...]] = {}
        super().__init__(
            root,
            split,
            modalities,
            modality_sampling,
            image_size,
            augmentation,
            stats,
            normalize,
            tile_size,
            stride,
        )
        if not self.tiles:
            raise ValueError(f"The {split!r} split of {self.root} holds no usable chip")

    def _find_chips(self) -> dict[str, dict[str, Path]]:
        """Chips of this split -> paths of their existing modality files and label."""
        chips = {}
        for chip in self.split_chips[self.split]:
            files = {
                key: self.root / folder / f"{chip}_{folder}.tif" for key, folder in _FOLDERS.items()
            }
            if not any(path.is_file() for path in files.values()):
                raise FileNotFoundError(
                    f"Chip {chip!r} of the {self.split!r} split has no file under {self.root} "
                    f"(looked for {files['s1']})"
                )
            if not files["label"].is_file():
                raise FileNotFoundError(f"Chip {chip!r}: missing label {files['label']}")
            paths = {"label": files["label"]}
            paths.update({m: files[m] for m in self.modalities if files[m].is_file()})
            with_data = tuple(
                m for m in self.modalities if m in paths and _holds_data(self, m, paths[m])
            )
            reason = None
            if not with_data:
                reason = (
                    "no modality has data ("
                    + ", ".join(
                        f"{m}: {'no valid pixel' if m in paths else 'no file'}"
                        for m in self.modalities
                    )
                    + ")"
                )
            elif not _labelled(paths["label"]):
                reason = f"its label {paths['label'].name} has no labelled pixel"
            if reason is not None:
                self.excluded[chip] = reason
                warnings.warn(
                    f"Sen1Floods11 chip {chip!r} left out of the {self.split!r} split: {reason}",
                    stacklevel=2,
                )
                continue
            for m in self.modalities:  # a file without data is no better than none
                if m in paths and m not in with_data:
                    del paths[m]
            self.chip_modalities[chip] = with_data
            chips[chip] = paths
        return chips

    def _windows(self, paths: dict[str, Path]) -> list[Window]:
        """Tile windows over the whole chip."""
        with rasterio.open(paths["label"]) as src:
            height, width = src.height, src.width
        if self.tile_size > min(height, width):
            raise ValueError(f"tile_size {self.tile_size} exceeds the chip {paths['label']}")
        return [
            Window(col, row, self.tile_size, self.tile_size)
            for row in range(0, height - self.tile_size + 1, self.stride)
            for col in range(0, width - self.tile_size + 1, self.stride)
        ]

    def _tile_paths(self, index: int) -> dict[str, Path]:
        """The tile's modality files (missing or empty ones left out) and its label."""
        return self.chips[self.tiles[index][0]]

    def tile_modalities(self, index: int) -> tuple[str, ...]:
        """The modalities with data somewhere on tile ``index``, in dataset order."""
        rasters = self.read_modalities(index, self.modalities)
        return tuple(
            m
            for m in self.modalities
            if m in rasters and (rasters[m].nodata is None or not rasters[m].nodata.all())
        )

    def summary(self) -> str:
        """Chips and tiles of this split per modality subset, and the chips left out."""
        chips = Counter("+".join(subset) for subset in self.chip_modalities.values())
        tiles = Counter("+".join(self.tile_modalities(i)) or "none" for i in range(len(self)))
        lines = [
            f"Sen1Floods11 chips, {self.split} split: {len(self.chips)} chips, {len(self)} tiles"
        ]
        for subset in sorted(set(chips) | set(tiles)):
            lines.append(f"  {subset}: {chips.get(subset, 0)} chips, {tiles.get(subset, 0)} tiles")
        for chip, reason in self.excluded.items():
            lines.append(f"  left out: {chip} ({reason})")
        return "\n".join(lines)


def _holds_data(dataset: Sen1Floods11Chips, name: str, path: Path) -> bool:
    """Whether a modality file has at least one valid pixel (the bands the loader reads)."""
    info = dataset.modality_info[name]
    raster = read_raster(
        path, info.file_bands or info.bands, indexes=info.read_bands, default_nodata=info.nodata
    )
    return raster.nodata is None or not bool(raster.nodata.all())


def _labelled(path: Path) -> bool:
    """Whether a label file has a pixel labelled 0 or 1."""
    with rasterio.open(path) as src:
        values = src.read(1)
    return bool(np.isin(values, (0, 1)).any())


class Sen1Floods11ChipsDataModule(MultimodalDataModule):
    """DataModule of whole-chip Sen1Floods11 splits (see `Sen1Floods11Chips`).

    Args:
        root: folder with ``S1Hand/``, ``S2Hand/`` and ``LabelHand/`` (default: the shared
            chips).
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
        splits: which chips form each split (see `SplitSpec`).
        train_modalities_per: ``"batch"`` (one subset per training batch, the paper's
            IV-B-5) or ``"sample"``.
    """

    def __init__(
        self,
        root: str | None = str(SHARED_CHIPS_FOLDER),
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
        tile_size: int = 128,
        stride: int | None = None,
        splits: str | dict[str, list[str]] | None = None,
        train_modalities_per: DrawUnit = "batch",
    ) -> None:
        super().__init__(
            Sen1Floods11Chips,
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
            splits=splits,
            train_modalities_per=train_modalities_per,
        )

    def setup(self, stage: str) -> None:
        """Create the stage's datasets and log each new split's summary."""
        before = {
            split: getattr(self, f"{split}_dataset", None) for split in ("train", "val", "test")
        }
        super().setup(stage)
        for split, old in before.items():
            dataset = getattr(self, f"{split}_dataset", None)
            if dataset is not None and dataset is not old:
                log.info("%s", dataset.summary())
