"""The sample pipeline shared by every multimodal dataset of this package.

A dataset subclass says where its tiles are (`MultimodalDataset._tile_paths`) and how its
targets are read (`MultimodalDataset._read_target`); this class does the rest, in order:

1. draw the sample's modality subset (`datamodules.modality_sampling`) and read only its
   modalities, checking band counts and that all share one grid. A modality that is no data
   over the whole tile is absent for that sample. A random rule whose draw has no data left is
   redrawn (uniform stays uniform over the subsets the tile has); a fixed subset (evaluation)
   is never swapped for other modalities: if it has no data on the tile, the sample has no
   modality at all (``present`` all False) and must be left out of that subset's score;
2. fill no-data pixels (NaN, infinite, or the file's or the modality's no-data value) with the
   modality mean, or the no-data id `Modality.nodata_id` for class maps, and mark them
   invalid in ``valid``; the semantic mask is not touched (its ignore comes from the label's own
   no data only, so every modality subset is scored on the same pixels);
3. resize to ``image_size`` (area/bilinear for images, nearest for class maps and masks);
4. augment (`datamodules.augmentation.JointAugmentation`), training only;
5. normalize continuous modalities with the dataset's statistics;
6. return tensors, with placeholders for absent modalities (see the sample contract below).

Sample contract (a ``dict``):

- ``<modality>``: ``float32 [C, H, W]`` for continuous modalities (normalized), ``int64 [1, H,
  W]`` class ids for categorical ones (``0..classes-1``, and ``classes`` where there is no
  data). Every modality of the dataset has a key; an absent one holds zeros (the no-data id
  for class maps) and must be ignored through ``present``.
- ``present``: ``bool [M]``, one flag per modality in ``dataset.modalities`` order; all False
  when a fixed subset has no data on the tile.
- ``valid``: ``bool [M, H, W]``, True where the modality is present and its pixel holds data
  (reconstruction losses skip the rest; a patch without any valid pixel is hidden from the
  model, see ``fusion.tasks.batches.token_availability``).
- ``mask``: ``int64 [H, W]`` semantic labels, `datamodules.landcover.IGNORE_INDEX`
  (255) where the label is unknown or has no data.
- ``name``: tile name.
- instance datasets add ``instance_masks`` (``bool [N, H, W]``), ``boxes`` (``float32 [N, 4]``,
  ``x1, y1, x2, y2`` in pixel edges: ``x1, y1`` the first covered column and row, ``x2, y2``
  one past the last, so ``x2 > x1`` and ``y2 > y1``) and ``labels`` (``int64 [N]``, classes
  ``0..K-1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from matplotlib.figure import Figure
from rasterio.windows import Window
from torch import Tensor
from torchgeo.datasets import NonGeoDataset
from torchvision.ops import masks_to_boxes

from datamodules.augmentation import JointAugmentation
from datamodules.modality import Modality
from datamodules.modality_sampling import (
    ModalitySampler,
    ModalitySampling,
    check_modalities,
    make_modality_sampler,
)
from datamodules.plotting import plot_sample
from datamodules.rasters import Raster, RasterGrid, read_raster
from datamodules.stats import Stats, load_stats


@dataclass
class Target:
    """Labels of one tile, as read from disk (before resizing and augmentation).

    Attributes:
        mask: semantic labels ``[H, W]`` (uint8), 255
            (`datamodules.landcover.IGNORE_INDEX`) where unknown.
        instance_masks: per-instance binary masks, each ``[H, W]`` uint8 (instance datasets).
        instance_labels: class id ``0..K-1`` of each instance.
        invalid: ``[H, W]`` bits, bit m set where modality m (dataset order) is no data; set by
            the pipeline, None when every pixel holds data.
    """

    mask: np.ndarray
    instance_masks: list[np.ndarray] | None = None
    instance_labels: list[int] | None = None
    invalid: np.ndarray | None = None


class MultimodalDataset(NonGeoDataset):
    """Base class: co-registered modality rasters per tile, with random modality subsets.

    Args:
        root: dataset folder.
        split: ``"train"``, ``"val"`` or ``"test"``.
        modalities: modalities to use, in order (default: all of the dataset's).
        modality_sampling: which modalities each sample shows (see
            `datamodules.modality_sampling`); default every one.
        image_size: resize tiles to ``image_size x image_size`` (None: native size).
        augmentation: geometric augmentation applied to every sample, or None.
        stats: normalization statistics (mapping or JSON path); None for ``default_stats``.
        normalize: apply the statistics (False returns values in physical units).

    Attributes:
        generator: torch generator of the modality draws and the augmentation (None: torch's
            global one). The DataModule seeds one from its own generator for every pass over
            the data (per worker with worker processes).

    Raises:
        ValueError: for an unknown split or modality name, or an empty modality set.
    """

    all_modalities: ClassVar[dict[str, Modality]] = {}
    default_stats: ClassVar[Stats] = {}
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    classes: ClassVar[tuple[str, ...]] = ()
    native_tile_size: ClassVar[int | None] = None
    """Side of the dataset's tiles as shipped, pixels, when it is fixed (DFC2023: 512); a run
    that resized them to ``image_size`` ran its model at ``image_size / native_tile_size``
    model pixels per data pixel, which ``fusion predict-scene`` reuses."""

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
    ) -> None:
        if split not in self.splits:
            raise ValueError(f"Unknown split {split!r}; {type(self).__name__} has {self.splits}")
        self.root = Path(root)
        self.split = split
        self.modalities = check_modalities(modalities, tuple(self.all_modalities))
        if len(self.modalities) > 16:
            raise ValueError(f"At most 16 modalities are supported, got {len(self.modalities)}")
        self.modality_info = {m: self.all_modalities[m] for m in self.modalities}
        self.modality_sampling = modality_sampling
        self.image_size = image_size
        self.augmentation = augmentation
        self.normalize = normalize
        self.generator: torch.Generator | None = None
        self.categorical = tuple(m for m in self.modalities if self.modality_info[m].categorical)
        self.stats = load_stats(self.default_stats if stats is None else stats)
        missing = [
            m
            for m in self.modalities
            if not self.modality_info[m].categorical and m not in self.stats
        ]
        if missing:
            raise ValueError(f"Normalization statistics lack modalities {missing}")

    # -- what subclasses provide -------------------------------------------------------------
    def _tile_paths(self, index: int) -> dict[str, Path]:
        """Path of each modality's file of tile ``index``.

        A modality left out has no file for that tile (e.g. no Sentinel-2 acquisition): it is
        absent from the tile, as a modality with no data over the whole tile is.
        """
        raise NotImplementedError

    def _tile_window(self, index: int) -> Window | None:
        """Part of the files that tile ``index`` covers (default: the whole file)."""
        return None

    def _read_target(self, index: int, grid: RasterGrid, reference: Path) -> Target:
        """Read the labels of tile ``index``, which must lie on ``grid`` (from ``reference``)."""
        raise NotImplementedError

    def tile_name(self, index: int) -> str:
        """Name of tile ``index``."""
        raise NotImplementedError

    def _preprocess(self, name: str, data: np.ndarray) -> np.ndarray:
        """Turn a modality's file values into the loader's units (default: float32 as read)."""
        return data if self.modality_info[name].categorical else data.astype(np.float32)

    # -- modality subsets --------------------------------------------------------------------
    @property
    def modality_sampling(self) -> ModalitySampler:
        """The rule drawing each sample's modalities; assign a new rule to change it."""
        return self._sampler

    @modality_sampling.setter
    def modality_sampling(self, spec: ModalitySampling) -> None:
        self._sampler = make_modality_sampler(spec, self.modalities)

    @property
    def modality_specs(self) -> dict[str, int | tuple[str, int]]:
        """Modality name -> channels or ("categorical", n): the backbone's ``modalities``."""
        return {m: self.modality_info[m].spec for m in self.modalities}

    # -- reading -----------------------------------------------------------------------------
    def read_modalities(
        self, index: int, names: Sequence[str], rasters: dict[str, Raster] | None = None
    ) -> dict[str, Raster]:
        """Read some modalities of one tile, in the loader's units, checking their grids.

        Args:
            index: tile index.
            names: modalities to read.
            rasters: modalities of the tile read before; they are kept, not read again, and
                the new ones must share their grid.

        Returns:
            name -> raster (``data`` ``[C, H, W]``, no-data mask, grid), ``rasters`` included;
            modalities without a file for the tile (see `_tile_paths`) are left out.

        Raises:
            FileNotFoundError: if a file is missing.
            datamodules.rasters.RasterError: on a wrong band count or a grid that differs
                between the tile's files.
        """
        paths = self._tile_paths(index)
        rasters = dict(rasters or {})
        grid, reference = None, None
        if rasters:
            first = next(iter(rasters))
            grid, reference = rasters[first].grid, paths[first]
        window = self._tile_window(index)
        for name in names:
            if name in rasters or name not in paths:
                continue
            info = self.modality_info[name]
            raster = read_raster(
                paths[name],
                info.file_bands or info.bands,
                grid,
                reference,
                indexes=info.read_bands,
                window=window,
                default_nodata=info.nodata,
            )
            if grid is None:
                grid, reference = raster.grid, paths[name]
            data = self._preprocess(name, raster.data)
            rasters[name] = Raster(data, raster.nodata, raster.grid)
        return rasters

    def __len__(self) -> int:
        """Number of tiles in the split."""
        raise NotImplementedError

    def tile_footprint(self, index: int) -> tuple[tuple[Path, ...], Window | None]:
        """What tile ``index`` covers: its files (resolved) and the window read from them.

        Two tiles overlap when they share a file and their windows intersect (None is the whole
        file); the DataModule refuses splits that overlap.
        """
        paths = tuple(path.resolve() for path in self._tile_paths(index).values())
        return paths, self._tile_window(index)

    def draw_modalities(self, index: int) -> tuple[dict[str, Raster], list[str]]:
        """Draw the modality subset of one sample and read it.

        A random rule is redrawn until its draw keeps a modality with data on the tile; the
        modalities without data are left out. A fixed subset is kept as it is, even when none
        of its modalities has data (then nothing is shown).

        Args:
            index: tile index.

        Returns:
            Every raster read (at least one, whose grid the labels are read on), and the names
            of the modalities shown, in dataset order (empty when a fixed subset has no data).

        Raises:
            ValueError: if a random rule is used on a tile where every modality is no data.
        """
        rasters: dict[str, Raster] = {}
        while True:
            flags = self._sampler.sample(self.generator)
            drawn = [m for m, keep in zip(self.modalities, flags, strict=True) if keep]
            rasters = self.read_modalities(index, drawn, rasters)
            shown = [m for m in drawn if m in rasters and _has_data(rasters[m])]
            if not rasters:  # no file of the drawn modalities: read the others for a grid
                rasters = self.read_modalities(index, self.modalities)
                if not rasters:
                    raise ValueError(f"Tile {self.tile_name(index)!r} has no modality file")
            if shown or not self._sampler.random:
                return rasters, shown
            # Read the rest once, to know whether a redraw can succeed.
            rasters = self.read_modalities(index, self.modalities, rasters)
            if not any(_has_data(raster) for raster in rasters.values()):
                raise ValueError(f"Tile {self.tile_name(index)!r}: every modality is no data")

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Load one sample (see the module docstring for its keys)."""
        rasters, shown = self.draw_modalities(index)
        reference = shown[0] if shown else next(iter(rasters))
        target = self._read_target(
            index, rasters[reference].grid, self._tile_paths(index)[reference]
        )
        arrays = {name: self._fill_nodata(name, rasters[name], target) for name in shown}

        arrays, target = self._resize(arrays, target)
        if self.augmentation is not None:
            # The no-data bits travel as one more mask (nearest neighbour, same transform).
            layers = list(target.instance_masks or [])
            if target.invalid is not None:
                layers.append(target.invalid)
            arrays, mask, layers = self.augmentation(
                arrays, target.mask, layers, self.categorical, self.generator
            )
            invalid = layers.pop() if target.invalid is not None else None
            instances = layers if target.instance_masks is not None else None
            target = Target(mask, instances, target.instance_labels, invalid)
        return self._to_sample(index, arrays, target)

    def _fill_nodata(self, name: str, raster: Raster, target: Target) -> np.ndarray:
        """Fill no-data pixels; ``[H, W, C]`` (class ids ``[H, W]``), flagged in ``target``.

        Filled with the modality mean (0 after normalization; the no-data id for class maps) and
        flagged in ``target.invalid``; the semantic mask is left alone.
        """
        data = raster.data
        info = self.modality_info[name]
        if raster.nodata is not None:
            if target.invalid is None:
                target.invalid = np.zeros(target.mask.shape, dtype=np.uint16)
            target.invalid[raster.nodata] |= 1 << self.modalities.index(name)
            data = data.copy()
            if info.categorical:
                data[:, raster.nodata] = info.nodata_id
            else:
                fill = np.asarray(self.stats[name]["mean"], dtype=data.dtype)
                data[:, raster.nodata] = fill[:, None]
        if info.categorical:
            return data[0]
        return np.ascontiguousarray(data.transpose(1, 2, 0))

    def _resize(self, arrays: dict[str, np.ndarray], target: Target) -> tuple[dict, Target]:
        """Resize images (area when shrinking, else bilinear) and labels (nearest)."""
        size = self.image_size
        height, width = target.mask.shape
        if size is None or (height, width) == (size, size):
            return arrays, target
        smooth = cv2.INTER_AREA if size < min(height, width) else cv2.INTER_LINEAR
        # Nearest neighbour as one pixel-centre sampling shared by every label layer, so that
        # instance masks, their union and the semantic mask stay exactly consistent; a strided
        # view when the sizes divide (512 -> 256), a gather otherwise.
        if height % size == 0 and width % size == 0:
            step_y, step_x = height // size, width // size
            picked = (slice(step_y // 2, None, step_y), slice(step_x // 2, None, step_x))
        else:
            rows = ((np.arange(size) + 0.5) * height / size).astype(np.intp)
            cols = ((np.arange(size) + 0.5) * width / size).astype(np.intp)
            picked = (rows[:, None], cols)

        def nearest(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a[picked])

        resized = {}
        for name, data in arrays.items():
            if self.modality_info[name].categorical:
                resized[name] = nearest(data)
            else:
                out = cv2.resize(data, (size, size), interpolation=smooth)
                resized[name] = out.reshape(size, size, data.shape[2])
        instances = target.instance_masks
        return resized, Target(
            nearest(target.mask),
            None if instances is None else [nearest(m) for m in instances],
            target.instance_labels,
            None if target.invalid is None else nearest(target.invalid),
        )

    def _to_sample(
        self, index: int, arrays: dict[str, np.ndarray], target: Target
    ) -> dict[str, Any]:
        """Normalize, convert to tensors and add zeros for absent modalities."""
        mask = target.mask
        height, width = mask.shape
        sample: dict[str, Any] = {}
        for name in self.modalities:
            info = self.modality_info[name]
            if name not in arrays:
                if info.categorical:
                    sample[name] = torch.full((1, height, width), info.nodata_id)
                else:
                    sample[name] = torch.zeros(info.bands, height, width)
            elif info.categorical:
                sample[name] = torch.from_numpy(arrays[name].astype(np.int64))[None]
            else:
                data = arrays[name]
                if self.normalize:
                    mean = np.asarray(self.stats[name]["mean"], dtype=np.float32)
                    std = np.asarray(self.stats[name]["std"], dtype=np.float32)
                    data = (data - mean) / std
                sample[name] = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 0, 1)))
        present = torch.tensor([m in arrays for m in self.modalities])
        sample["present"] = present
        valid = present[:, None, None].expand(-1, height, width).clone()
        if target.invalid is not None and target.invalid.any():
            bits = torch.from_numpy(target.invalid.astype(np.int32))
            valid &= (bits[None] >> torch.arange(len(self.modalities))[:, None, None]) & 1 == 0
        sample["valid"] = valid
        sample["mask"] = torch.from_numpy(mask.astype(np.int64))
        sample["name"] = self.tile_name(index)
        if target.instance_labels is not None:
            sample.update(
                _instances_to_tensors(
                    target.instance_masks or [], target.instance_labels, height, width
                )
            )
        return sample

    def plot(
        self,
        sample: Mapping[str, Any],
        show_titles: bool = True,
        suptitle: str | None = None,
    ) -> Figure:
        """Plot every modality of a sample, its mask and, if present, ``prediction``.

        Args:
            sample: a sample as returned by ``__getitem__`` (optionally with ``prediction``).
            show_titles: write the panel titles.
            suptitle: figure title.

        Returns:
            The matplotlib figure.
        """
        return plot_sample(
            self.modality_info, self.classes, sample, show_titles=show_titles, suptitle=suptitle
        )


def _has_data(raster: Raster) -> bool:
    """Whether a raster holds data somewhere (one that is no data everywhere is absent)."""
    return raster.nodata is None or not raster.nodata.all()


def _instances_to_tensors(
    masks: list[np.ndarray], labels: list[int], height: int, width: int
) -> dict[str, Tensor]:
    """Stack instance masks, drop instances that vanished, and derive their boxes.

    Boxes are ``x1, y1, x2, y2`` in pixel edges: the first covered column and row, and one past
    the last, so a one-pixel instance has a box of width and height 1.
    """
    kept = [(m.astype(bool), label) for m, label in zip(masks, labels, strict=True) if m.any()]
    if not kept:
        return {
            "instance_masks": torch.zeros(0, height, width, dtype=torch.bool),
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
        }
    stacked = torch.from_numpy(np.stack([m for m, _ in kept]))
    return {
        "instance_masks": stacked,
        "boxes": masks_to_boxes(stacked) + torch.tensor([0.0, 0.0, 1.0, 1.0]),
        "labels": torch.tensor([label for _, label in kept], dtype=torch.int64),
    }
