"""Reading co-registered GeoTIFF tiles: band counts, shared grids and no-data pixels.

Every dataset of this package stores one file per modality and tile. The modalities of one tile
must share a pixel grid (size, CRS and affine transform); `read_raster` checks that and
returns the pixels that are no data, so that callers can fill them and keep them out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window


class RasterError(ValueError):
    """A raster file does not match what its dataset expects."""


@dataclass(frozen=True)
class RasterGrid:
    """The pixel grid of a raster: size, coordinate reference system and geotransform.

    Attributes:
        width: number of columns.
        height: number of rows.
        crs: coordinate reference system, or None for files without georeferencing.
        transform: affine pixel-to-map transform.
    """

    width: int
    height: int
    crs: CRS | None
    transform: Affine

    def mismatch(self, other: RasterGrid) -> str | None:
        """Describe how ``other`` differs from this grid.

        Args:
            other: the grid to compare with.

        Returns:
            A short description of the first difference found, or None when the grids agree
            (transforms are compared to 1e-9 of a pixel).
        """
        if (self.width, self.height) != (other.width, other.height):
            return f"size {other.width}x{other.height} != {self.width}x{self.height}"
        if self.crs != other.crs:
            return f"CRS {other.crs} != {self.crs}"
        if not self.transform.almost_equals(other.transform, precision=1e-9):
            return f"transform {tuple(other.transform)[:6]} != {tuple(self.transform)[:6]}"
        return None


@dataclass(frozen=True)
class Raster:
    """Pixels of one raster file with its grid and no-data pixels.

    Attributes:
        data: pixel values ``[C, H, W]`` in the file's dtype.
        nodata: boolean ``[H, W]``, True where any band is NaN, infinite or equals the file's
            no-data value; None when the tile has no such pixel.
        grid: the raster's pixel grid.
    """

    data: np.ndarray
    nodata: np.ndarray | None
    grid: RasterGrid


def read_raster(
    path: str | Path,
    bands: int | None = None,
    grid: RasterGrid | None = None,
    reference: str | Path | None = None,
    indexes: tuple[int, ...] | None = None,
    window: Window | None = None,
    default_nodata: float | None = None,
) -> Raster:
    """Read a GeoTIFF (or a window of it) and check it against what the dataset expects.

    Args:
        path: file to read.
        bands: expected number of bands in the file, or None to accept any.
        grid: grid the pixels read must lie on (size, CRS, transform), typically that of
            another modality of the same tile; None to skip the check.
        reference: file ``grid`` was read from, named in the error message.
        indexes: 1-based bands to read (default: all).
        window: part of the file to read (default: all of it).
        default_nodata: no-data value to use when the file has no no-data tag.

    Returns:
        The raster's pixels, no-data mask and grid.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        RasterError: if the band count or the grid differs from what was expected, or the file
            cannot be read as a raster.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Missing raster file: {path}")
    try:
        with rasterio.open(path) as src:
            if bands is not None and src.count != bands:
                raise RasterError(f"{path}: expected {bands} band(s), found {src.count}")
            if window is None:
                file_grid = RasterGrid(src.width, src.height, src.crs, src.transform)
            else:
                transform = rasterio.windows.transform(window, src.transform)
                file_grid = RasterGrid(int(window.width), int(window.height), src.crs, transform)
            if grid is not None and (problem := grid.mismatch(file_grid)) is not None:
                other = f" of {reference}" if reference is not None else ""
                raise RasterError(f"{path}: grid differs from the grid{other}: {problem}")
            data = src.read(indexes=list(indexes) if indexes else None, window=window)
            nodata_value = src.nodata if src.nodata is not None else default_nodata
    except rasterio.errors.RasterioIOError as error:
        raise RasterError(f"{path}: cannot be read as a raster ({error})") from error
    return Raster(data, _nodata_mask(data, nodata_value), file_grid)


def _nodata_mask(data: np.ndarray, nodata_value: float | None) -> np.ndarray | None:
    """Pixels ``[H, W]`` where any band is NaN, infinite or equal to ``nodata_value``."""
    invalid = None
    if np.issubdtype(data.dtype, np.floating):
        finite = np.isfinite(data)
        if not finite.all():
            invalid = ~finite.all(axis=0)
    if nodata_value is not None and not np.isnan(nodata_value):
        hits = (data == nodata_value).any(axis=0)
        if hits.any():
            invalid = hits if invalid is None else invalid | hits
    return invalid
