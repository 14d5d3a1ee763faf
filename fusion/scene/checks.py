"""Warnings for scene inputs whose values lie far from what the model was trained on.

A model given linear backscatter where it learned decibels, or Sentinel-2 L2A values with the
+1000 offset of processing baseline 04.00 where it learned offset-free reflectance, still
predicts, but from inputs it has never seen. Before predicting, each continuous modality is
read decimated over the area predicted (at most ``side`` pixels a side per file, from
overviews where the file has them), turned into the loader's units by the training dataset's
own ``_preprocess``, and compared band by band with the training normalization statistics. A
band is reported when

- its mean lies more than ``z_limit`` (3) training standard deviations from the training mean;
- or its spread is more than ``spread_ratio`` (5) times the training spread;
- or its spread is more than ``spread_ratio`` times smaller *and* its mean lies more than
  ``z_small`` (1.5) training standard deviations away: a small spread alone is no sign of a
  wrong unit (a DEM of a plain, a calm lake), but with a shifted mean it is the signature of
  linear backscatter given for dB.

Linear backscatter (about 0.01 to 0.5) against dB statistics (mean -10 to -20, std 4 to 6)
has a spread 10 to 100 times too small and a mean 2 to 4 standard deviations off; the L2A
offset moves the visible bands' means by 1000, about 3.7 training standard deviations for the
Sen1Floods11 and quadruplet statistics. A scene that truly differs from the training data
(snow, a desert) can also be reported: the warning asks the user to check, it never stops the
prediction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import rasterio
import rasterio.errors
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds

from datamodules.dataset import MultimodalDataset
from datamodules.rasters import RasterGrid, _nodata_mask
from fusion.scene.sources import ModalityRaster, grid_bounds

Z_LIMIT = 3.0
"""Training standard deviations between the input's and the training mean that are reported."""
SPREAD_RATIO = 5.0
"""Ratio of the input's to the training spread (either way) that is reported."""
Z_SMALL = 1.5
"""Mean distance, in training standard deviations, above which a small spread is reported."""


@dataclass(frozen=True)
class BandValues:
    """Mean and standard deviation of one band of an input and of the training data."""

    band: int
    mean: float
    std: float
    train_mean: float
    train_std: float

    @property
    def shift(self) -> float:
        """Distance of the means in training standard deviations."""
        return abs(self.mean - self.train_mean) / max(self.train_std, 1e-12)

    @property
    def spread(self) -> float:
        """Ratio of the input's spread to the training spread."""
        return max(self.std, 1e-12) / max(self.train_std, 1e-12)

    def far(self, z_limit: float, spread_ratio: float, z_small: float) -> bool:
        """Whether the band lies far from the training data (the module's rule)."""
        wide = self.spread > spread_ratio
        narrow_and_shifted = self.spread < 1 / spread_ratio and self.shift > z_small
        return self.shift > z_limit or wide or narrow_and_shifted


def sample_values(source: ModalityRaster, side: int = 256) -> np.ndarray:
    """Valid pixels of a modality's files under the predicted area, read decimated.

    Returns:
        ``float32 [C, N]`` in the files' units.
    """
    chunks = []
    for raster in source.rasters:
        with rasterio.open(raster.path) as src:
            window = area_window(src, source.grid)
            if window is None:
                continue
            factor = max(1, int(np.ceil(max(window.width, window.height) / side)))
            shape = (
                len(source.indexes),
                max(1, int(window.height) // factor),
                max(1, int(window.width) // factor),
            )
            read = src.read(
                source.indexes,
                window=window,
                out_shape=shape,
                masked=True,
                resampling=Resampling.nearest,
            )
        values = np.asarray(read.data, dtype=np.float32)
        invalid = np.ma.getmaskarray(read).any(axis=0) | ~np.isfinite(values).all(axis=0)
        nodata = _nodata_mask(np.asarray(read.data), raster.nodata)
        if nodata is not None:
            invalid |= nodata
        chunks.append(values[:, ~invalid])
    return np.concatenate(chunks, axis=1) if chunks else np.zeros((len(source.indexes), 0))


def area_window(src: DatasetReader, grid: RasterGrid) -> Window | None:
    """The window of an open file under the grid's area (None if they do not meet)."""
    try:
        bounds = transform_bounds(grid.crs, src.crs, *grid_bounds(grid), densify_pts=21)
    except rasterio.errors.RasterioError:
        return None
    window = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
    try:
        return window.intersection(Window(0, 0, src.width, src.height))
    except rasterio.errors.WindowError:
        return None


def band_values(
    source: ModalityRaster, dataset: MultimodalDataset, side: int = 256
) -> list[BandValues]:
    """Per band, the input's mean and spread in the loader's units beside the training ones.

    Returns:
        One entry per band; empty for class maps, modalities without statistics, or files
        without a valid pixel.
    """
    name = source.name
    if dataset.modality_info[name].categorical or name not in dataset.stats:
        return []
    raw = sample_values(source, side)
    values = dataset._preprocess(name, raw[:, None, :])[:, 0, :]
    stats = dataset.stats[name]
    out = []
    for band, (row, mean, std) in enumerate(zip(values, stats["mean"], stats["std"], strict=True)):
        finite = row[np.isfinite(row)]
        if finite.size:
            out.append(BandValues(band + 1, float(finite.mean()), float(finite.std()), mean, std))
    return out


def value_range_warnings(
    sources: Mapping[str, ModalityRaster],
    dataset: MultimodalDataset,
    side: int = 256,
    z_limit: float = Z_LIMIT,
    spread_ratio: float = SPREAD_RATIO,
    z_small: float = Z_SMALL,
) -> list[str]:
    """One warning per modality whose values lie far from the training statistics.

    Args:
        sources: the scene's modalities.
        dataset: the training dataset (its ``_preprocess`` and ``stats``).
        side: longest side of the decimated read of each file, pixels.
        z_limit: mean distance reported, in training standard deviations.
        spread_ratio: spread ratio reported (larger; smaller together with ``z_small``).
        z_small: mean distance above which a spread ``spread_ratio`` times smaller is reported.

    Returns:
        The warnings, each naming the modality, its files, the band and both value ranges.
    """
    warnings = []
    for name, source in sources.items():
        far = [
            b for b in band_values(source, dataset, side) if b.far(z_limit, spread_ratio, z_small)
        ]
        if not far:
            continue
        worst = max(far, key=lambda b: b.shift)
        files = ", ".join(raster.path for raster in source.rasters)
        warnings.append(
            f"{name} ({files}): band {worst.band} averages {worst.mean:.4g} ± {worst.std:.3g} "
            f"where the model was trained on {worst.train_mean:.4g} ± {worst.train_std:.3g} "
            f"({len(far)} of {len(source.indexes)} bands far off). Check the units: the model "
            f"expects {dataset.modality_info[name].description or name} (e.g. dB rather than "
            f"linear backscatter, reflectance without the L2A +1000 offset)"
        )
    return warnings
