"""A scene's modality rasters, read through TorchGeo onto one reference pixel grid.

Each modality is a `ModalityRaster`: a TorchGeo ``RasterDataset`` over one file, with the
reference raster's CRS and resolution. A file on the reference grid (same CRS and pixel size,
shifted by whole pixels or not at all) is read as it is; any other is warped by GDAL straight
onto the reference grid in one step (bilinear for continuous modalities, nearest for class
maps; the file's no-data pixels are left out of the interpolation). Pixels outside a file's
footprint are no data, so a modality may cover only part of the scene.

A query (TorchGeo's ``[xmin:xmax, ymin:ymax]`` slices, on reference pixel edges) returns the
modality's bands and, as one more band, which pixels hold data: True where no band is NaN,
infinite, masked, or equal to the file's no-data value (the modality's default when the file
has no tag), as :func:`datamodules.rasters.read_raster` decides for training tiles. A query that
misses the file's footprint raises ``IndexError`` (TorchGeo's convention): the modality is
absent there.

Tiles come from TorchGeo's ``GridGeoSampler`` over the reference raster, shifted back inside
the scene where the sampler's last row or column would hang over its edge.
"""

from __future__ import annotations

import glob
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
import torch
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from torch import Tensor
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.utils import GeoSlice
from torchgeo.samplers import GridGeoSampler

from datamodules.dataset import Modality
from datamodules.rasters import RasterGrid, _nodata_mask
from fusion.scene.blend import clip_window

PIXEL_TOLERANCE = 1e-6
"""Offsets and pixel sizes closer than this share of a pixel count as equal."""


def reference_grid(path: str | Path) -> RasterGrid:
    """The pixel grid of the reference raster.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if it has no CRS or a rotated (not north-up) transform.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"reference raster not found: {path}")
    with rasterio.open(path) as src:
        grid = RasterGrid(src.width, src.height, src.crs, src.transform)
    if grid.crs is None:
        raise ValueError(f"{path} has no CRS: a scene raster must be georeferenced")
    if grid.transform.b or grid.transform.d or grid.transform.a <= 0 or grid.transform.e >= 0:
        raise ValueError(f"{path}: only north-up grids are supported, got {grid.transform}")
    return grid


def grid_bounds(grid: RasterGrid) -> tuple[float, float, float, float]:
    """``(left, bottom, right, top)`` of a north-up grid."""
    left, top = grid.transform.c, grid.transform.f
    return (
        left,
        top + grid.height * grid.transform.e,
        left + grid.width * grid.transform.a,
        top,
    )


def query_window(query: GeoSlice, grid: RasterGrid) -> Window:
    """The reference-pixel window of a TorchGeo query on the grid's pixel edges."""
    x, y = query[0], query[1]
    xres, yres = grid.transform.a, -grid.transform.e
    col = round((x.start - grid.transform.c) / xres)
    row = round((grid.transform.f - y.stop) / yres)
    width = round((x.stop - x.start) / xres)
    height = round((y.stop - y.start) / yres)
    return Window(col, row, width, height)


def window_query(window: Window, grid: RasterGrid) -> GeoSlice:
    """The TorchGeo query ``(x slice, y slice)`` of a reference-pixel window."""
    left, top = grid.transform * (window.col_off, window.row_off)
    right, bottom = grid.transform * (window.col_off + window.width, window.row_off + window.height)
    xres, yres = grid.transform.a, -grid.transform.e
    return slice(left, right, xres), slice(bottom, top, yres)


class ModalityRaster(RasterDataset):
    """One modality's raster of a scene, as a TorchGeo dataset on the reference grid.

    Args:
        name: the modality's name (as in the checkpoint).
        path: the raster file.
        modality: what the training dataset knows of the modality: bands in the file, bands
            read, default no-data value, class map or not.
        grid: the reference grid.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if its band count differs from the modality's, it has no CRS, or it does
            not overlap the reference grid.
    """

    is_image = True
    separate_files = False

    def __init__(self, name: str, path: str | Path, modality: Modality, grid: RasterGrid) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{name} raster not found: {path}")
        with rasterio.open(path) as src:
            expected = modality.file_bands or modality.bands
            if src.count != expected:
                raise ValueError(
                    f"{path}: the {name} modality has {expected} band(s) in its files, "
                    f"this raster has {src.count}"
                )
            if src.crs is None:
                raise ValueError(f"{path} has no CRS: a scene raster must be georeferenced")
            self.file_grid = RasterGrid(src.width, src.height, src.crs, src.transform)
            self.file_dtype = np.dtype(src.dtypes[0])
            file_nodata = src.nodata
        self.name = name
        self.path = path
        self.modality = modality
        self.grid = grid
        self.nodata = file_nodata if file_nodata is not None else modality.nodata
        self.indexes = list(modality.read_bands or range(1, expected + 1))
        self.offset = _pixel_offset(self.file_grid, grid)
        self.filename_glob = glob.escape(path.name)
        resolution = (grid.transform.a, -grid.transform.e)
        super().__init__(paths=[path], crs=grid.crs, res=resolution, cache=False)
        self.band_indexes = self.indexes
        footprint = self.index.geometry.iloc[0]
        if footprint.intersection(shapely.box(*grid_bounds(grid))).area <= 0:
            raise ValueError(f"{path} ({name}) does not overlap the reference raster's area")
        self._reader: DatasetReader | WarpedVRT | None = None

    @property
    def resampling(self) -> Resampling:
        """Nearest neighbour for class maps, bilinear otherwise (as the training resize)."""
        return Resampling.nearest if self.modality.categorical else Resampling.bilinear

    @property
    def warped(self) -> bool:
        """Whether the file is warped onto the reference grid (False: read as it is)."""
        return self.offset is None

    def _load_warp_file(self, filepath: Path) -> DatasetReader | WarpedVRT:
        """The file, or a GDAL warped view of it exactly on the reference grid."""
        src = rasterio.open(filepath)
        if not self.warped:
            return src
        options = {}
        if self.nodata is not None:
            options = {"src_nodata": self.nodata, "nodata": self.nodata}
        elif np.issubdtype(self.file_dtype, np.floating):
            options = {"src_nodata": np.nan, "nodata": np.nan}
        else:
            options = {"add_alpha": True}  # no no-data value: the alpha band marks the footprint
        return WarpedVRT(
            src,
            crs=self.grid.crs,
            transform=self.grid.transform,
            width=self.grid.width,
            height=self.grid.height,
            resampling=self.resampling,
            **options,
        )

    def _merge_files(
        self,
        filepaths: Sequence[str],
        query: GeoSlice,
        band_indexes: Sequence[int] | None = None,
    ) -> Tensor:
        """Read one query window: ``float32 [C + 1, h, w]``, the bands then the validity."""
        if self._reader is None:
            self._reader = self._load_warp_file(self.path)
        window = query_window(query, self.grid)
        data = np.zeros((len(self.indexes), int(window.height), int(window.width)), np.float32)
        valid = np.zeros(data.shape[1:], dtype=bool)
        # The window in the pixels read: the warped view's (the grid's) or the file's.
        col_shift, row_shift = self.offset or (0, 0)
        shifted = Window(
            window.col_off - col_shift, window.row_off - row_shift, window.width, window.height
        )
        clipped = clip_window(shifted, self.grid if self.warped else self.file_grid)
        if clipped is not None:
            inside, (rows, cols) = clipped
            read = self._reader.read(self.indexes, window=inside, masked=True)
            raw = np.asarray(read.data)
            invalid = np.ma.getmaskarray(read).any(axis=0)
            nodata = _nodata_mask(raw, self.nodata)
            if nodata is not None:
                invalid |= nodata
            data[:, rows, cols] = raw
            valid[rows, cols] = ~invalid
        return torch.from_numpy(np.concatenate([data, valid[None].astype(np.float32)]))

    def read_window(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """One reference-pixel window of the modality, in the file's units.

        Returns:
            ``data`` ``float32 [C, h, w]`` (the bands the training loader reads) and ``valid``
            ``bool [h, w]``; None when the window misses the file's footprint.
        """
        try:
            image = self[window_query(window, self.grid)]["image"].numpy()
        except IndexError:
            return None
        return image[:-1], image[-1] > 0.5

    def close(self) -> None:
        """Close the file."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _pixel_offset(file_grid: RasterGrid, grid: RasterGrid) -> tuple[int, int] | None:
    """Whole-pixel ``(col, row)`` of the file's first pixel on the grid; None if off-grid."""
    if file_grid.crs != grid.crs:
        return None
    own, ref = file_grid.transform, grid.transform
    if own.b or own.d:
        return None
    if abs(own.a - ref.a) > PIXEL_TOLERANCE * abs(ref.a) / max(file_grid.width, 1):
        return None
    if abs(own.e - ref.e) > PIXEL_TOLERANCE * abs(ref.e) / max(file_grid.height, 1):
        return None
    col, row = ~ref * (own.c, own.f)
    if abs(col - round(col)) > PIXEL_TOLERANCE or abs(row - round(row)) > PIXEL_TOLERANCE:
        return None
    return round(col), round(row)


@dataclass(frozen=True)
class TileGrid:
    """Overlapping ``tile x tile`` windows covering the reference grid, yielded row by row.

    Only the row and column offsets are kept, so the grid takes memory in proportion to the
    scene's side, not its area.

    Attributes:
        rows: row offsets of the tiles, top first.
        cols: column offsets of the tiles, left first.
        tile: tile side, reference pixels.
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    tile: int

    def __len__(self) -> int:
        """Number of tiles."""
        return len(self.rows) * len(self.cols)

    def __iter__(self) -> Iterator[Window]:
        """The windows, top row first, each row left to right."""
        for row in self.rows:
            for col in self.cols:
                yield Window(col, row, self.tile, self.tile)


def tile_windows(reference: ModalityRaster, tile: int, stride: int) -> TileGrid:
    """The tiles of a scene, from TorchGeo's ``GridGeoSampler`` over the reference raster.

    The sampler lays its grid from the scene's lower-left corner; a last row or column that
    would hang over the scene's upper or right edge is shifted back inside it. A scene smaller
    than a tile in one direction gets one tile that way, hanging over the edge (those pixels
    are no data); the sampler skips such scenes, so its rule is applied by hand then, and also
    wherever the sampler's tiles leave part of the scene uncovered (it compares float extents:
    a scene exactly one tile across can get no tile at all).

    Args:
        reference: the reference modality's dataset.
        tile: tile side in reference pixels.
        stride: step between tiles in reference pixels (``tile`` or less).

    Returns:
        The tile grid.
    """
    grid = reference.grid
    count = max(math.ceil((grid.height - tile) / stride), 0) + 1
    rule_rows = {grid.height - tile - i * stride for i in range(count)}
    count = max(math.ceil((grid.width - tile) / stride), 0) + 1
    rule_cols = {j * stride for j in range(count)}
    rows, cols = rule_rows, rule_cols
    if grid.width >= tile and grid.height >= tile:
        sampler = GridGeoSampler(
            reference, size=tile, stride=stride, roi=shapely.box(*grid_bounds(grid))
        )
        rows, cols = set(), set()
        for query in sampler:
            window = query_window(query, grid)
            rows.add(int(window.row_off))
            cols.add(int(window.col_off))

    def inside(offsets: set[int], length: int) -> tuple[int, ...]:
        if length < tile:
            return tuple(sorted(offsets))
        return tuple(sorted({min(max(offset, 0), length - tile) for offset in offsets}))

    def covering(offsets: set[int], rule: set[int], length: int) -> tuple[int, ...]:
        # The sampler's offsets, or the rule's where they leave part of the scene uncovered
        # (torchgeo 0.8's sampler compares float extents and can skip a scene exactly one tile
        # across: no tile at all, and an all no-data map).
        placed = inside(offsets, length)
        covered = np.zeros(max(length, 1), dtype=bool)
        for offset in placed:
            covered[max(offset, 0) : offset + tile] = True
        return placed if placed and covered[:length].all() else inside(rule, length)

    return TileGrid(
        covering(rows, rule_rows, grid.height), covering(cols, rule_cols, grid.width), tile
    )
