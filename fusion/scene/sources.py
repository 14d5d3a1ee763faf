"""A scene's modality rasters, read through TorchGeo onto one reference pixel grid.

Each modality is a `ModalityRaster`: a TorchGeo ``RasterDataset`` over one or more files (two
Sentinel-2 tiles, two UTM zones: mosaicked, the first file given wins where they overlap) with
the reference raster's CRS and resolution. Paths may be local files or anything GDAL opens
(``/vsimem/``, ``/vsicurl/https://...``, ``/vsis3/...``, ``https://...``).

A file on the reference grid (same CRS and pixel size, shifted by whole pixels or not at all)
is read as it is; any other is warped by GDAL onto the tile's window of the reference grid
(bilinear for continuous modalities, nearest for class maps; the file's no-data pixels are left
out of the interpolation). Either way only the bands the model uses are read (4 of Sentinel-2's
13), and only the part of the file under the tile plus a margin for the interpolation kernel.
Pixels outside a file's footprint are no data, so a modality may cover only part of the scene.

A query (TorchGeo's ``[xmin:xmax, ymin:ymax]`` slices, on reference pixel edges) returns the
modality's bands and, as one more band, which pixels hold data: True where no band is NaN,
infinite, masked, or equal to the file's no-data value (the modality's default when the file
has no tag), as `datamodules.rasters.read_raster` decides for training tiles. A query that
misses every file's footprint raises ``IndexError`` (TorchGeo's convention): the modality is
absent there. File handles are opened on first use in each process, so that loader workers
each read through their own.

Tiles come from TorchGeo's ``GridGeoSampler`` over the reference raster, shifted back inside
the scene where the sampler's last row or column would hang over its edge.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import shapely
import torch
from affine import Affine
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window, from_bounds
from torch import Tensor
from torchgeo.datasets import RasterDataset
from torchgeo.datasets.utils import GeoSlice, path_is_vsi
from torchgeo.samplers import GridGeoSampler

from datamodules.modality import Modality
from datamodules.rasters import RasterGrid, _nodata_mask
from fusion.scene.blend import clip_window

PIXEL_TOLERANCE = 1e-6
"""Offsets and pixel sizes closer than this share of a pixel count as equal."""


RasterPath = str | Path
"""A raster file: a local path, or a GDAL path such as ``/vsimem/a.tif`` or ``/vsicurl/https://...``."""


def is_gdal_path(path: RasterPath) -> bool:
    """Whether ``path`` is for GDAL to resolve (``/vsi...`` or a URL) rather than a local file."""
    return path_is_vsi(str(path))


@contextmanager
def open_raster(name: str, path: RasterPath) -> Iterator[DatasetReader]:
    """Open a modality's raster, with errors that name the modality and the path.

    Raises:
        FileNotFoundError: for a missing local file or a GDAL path GDAL cannot open.
        ValueError: for a local file that is not a raster GDAL reads.
    """
    gdal_path = is_gdal_path(path)
    if not gdal_path and not Path(path).is_file():
        raise FileNotFoundError(f"{name} raster not found: {path}")
    try:
        src = rasterio.open(str(path))
    except rasterio.errors.RasterioIOError as error:
        if gdal_path:
            raise FileNotFoundError(f"{name} raster cannot be opened: {path} ({error})") from None
        raise ValueError(f"{name} raster {path} is not a raster GDAL can read ({error})") from None
    with src:
        yield src


def reference_grid(path: RasterPath, name: str = "reference") -> RasterGrid:
    """The pixel grid of the reference raster (of modality ``name``, for messages).

    Raises:
        FileNotFoundError: if the file does not exist (or GDAL cannot open a GDAL path).
        ValueError: if it has no CRS or a rotated (not north-up) transform.
    """
    with open_raster(name, path) as src:
        grid = RasterGrid(src.width, src.height, src.crs, src.transform)
    if grid.crs is None:
        raise ValueError(f"{path} has no CRS: a scene raster must be georeferenced")
    if grid.transform.b or grid.transform.d or grid.transform.a <= 0 or grid.transform.e >= 0:
        raise ValueError(f"{path}: only north-up grids are supported, got {grid.transform}")
    return grid


def crop_grid(grid: RasterGrid, bounds: Sequence[float]) -> RasterGrid:
    """The grid's pixels covering ``(left, bottom, right, top)`` (in its CRS), snapped outward.

    The box may reach beyond the grid (pixels there are no data unless another modality
    covers them); the pixels keep the grid's size and alignment.

    Raises:
        ValueError: if the box is empty or not four numbers.
    """
    if len(bounds) != 4:
        raise ValueError(f"bounds must be left bottom right top, got {list(bounds)}")
    left, bottom, right, top = (float(b) for b in bounds)
    if not (left < right and bottom < top):
        raise ValueError(f"bounds {list(bounds)} are empty: give left bottom right top")
    t = grid.transform
    col0 = math.floor((left - t.c) / t.a + PIXEL_TOLERANCE)
    col1 = math.ceil((right - t.c) / t.a - PIXEL_TOLERANCE)
    row0 = math.floor((t.f - top) / -t.e + PIXEL_TOLERANCE)
    row1 = math.ceil((t.f - bottom) / -t.e - PIXEL_TOLERANCE)
    return RasterGrid(
        max(col1 - col0, 1), max(row1 - row0, 1), grid.crs, t * Affine.translation(col0, row0)
    )


def resample_grid(grid: RasterGrid, resolution: float) -> RasterGrid:
    """A grid over the same area with square ``resolution`` pixels (CRS units), same corner.

    Raises:
        ValueError: if the resolution is not positive.
    """
    if not resolution > 0:
        raise ValueError(f"resolution must be positive, got {resolution}")
    left, bottom, right, top = grid_bounds(grid)
    width = max(math.ceil((right - left) / resolution - PIXEL_TOLERANCE), 1)
    height = max(math.ceil((top - bottom) / resolution - PIXEL_TOLERANCE), 1)
    return RasterGrid(width, height, grid.crs, Affine(resolution, 0, left, 0, -resolution, top))


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


class NoOverlapError(ValueError):
    """A modality's files do not reach the grid's area."""


@dataclass(frozen=True)
class RasterFile:
    """One file of a modality.

    Attributes:
        path: the path as GDAL opens it.
        grid: the file's own pixel grid.
        nodata: its no-data value (the modality's default when the file has no tag).
        offset: whole-pixel ``(col, row)`` of its first pixel on the reference grid; None when
            it is warped.
    """

    path: str
    grid: RasterGrid
    nodata: float | None
    offset: tuple[int, int] | None


class ModalityRaster(RasterDataset):
    """One modality's rasters of a scene, as a TorchGeo dataset on the reference grid.

    Args:
        name: the modality's name (as in the checkpoint).
        paths: the raster file, or several (mosaicked; the first holding data wins).
        modality: what the training dataset knows of the modality: bands in the file, bands
            read, default no-data value, class map or not.
        grid: the reference grid.

    Raises:
        FileNotFoundError: if a file does not exist or GDAL cannot open it.
        ValueError: if a file's band count differs from the modality's, it has no CRS, it is
            given twice, or no file overlaps the reference grid.
    """

    is_image = True
    separate_files = False
    filename_glob = "*"

    def __init__(
        self,
        name: str,
        paths: RasterPath | Sequence[RasterPath],
        modality: Modality,
        grid: RasterGrid,
    ) -> None:
        given = [paths] if isinstance(paths, str | Path) else list(paths)
        if not given:
            raise ValueError(f"no raster given for the {name} modality")
        checked = [str(path) for path in given]
        repeated = sorted({path for path in checked if checked.count(path) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]} is given twice for the {name} modality")
        expected = modality.file_bands or modality.bands
        self.rasters = [self._describe(name, path, modality, expected, grid) for path in checked]
        self.name = name
        self.modality = modality
        self.grid = grid
        self.indexes = list(modality.read_bands or range(1, expected + 1))
        resolution = (grid.transform.a, -grid.transform.e)
        super().__init__(paths=checked, crs=grid.crs, res=resolution, cache=False)
        self.band_indexes = self.indexes
        scene = shapely.box(*grid_bounds(grid))
        if not any(shape.intersection(scene).area > 0 for shape in self.index.geometry):
            where = checked[0] if len(checked) == 1 else ", ".join(checked)
            raise NoOverlapError(f"{where} ({name}) does not overlap the area predicted")
        self._handles: dict[str, DatasetReader] = {}
        self._pid = os.getpid()

    @staticmethod
    def _describe(
        name: str, path: str, modality: Modality, expected: int, grid: RasterGrid
    ) -> RasterFile:
        """Check one file and note its grid and no-data value."""
        with open_raster(name, path) as src:
            if src.count != expected:
                raise ValueError(
                    f"{path}: the {name} modality has {expected} band(s) in its files, "
                    f"this raster has {src.count}"
                )
            if src.crs is None:
                raise ValueError(f"{path} has no CRS: a scene raster must be georeferenced")
            own = RasterGrid(src.width, src.height, src.crs, src.transform)
            nodata = src.nodata if src.nodata is not None else modality.nodata
        return RasterFile(path, own, nodata, _pixel_offset(own, grid))

    @property
    def path(self) -> str:
        """The first file."""
        return self.rasters[0].path

    @property
    def nodata(self) -> float | None:
        """The first file's no-data value."""
        return self.rasters[0].nodata

    @property
    def offset(self) -> tuple[int, int] | None:
        """The first file's whole-pixel offset on the reference grid (None: warped)."""
        return self.rasters[0].offset

    @property
    def resampling(self) -> Resampling:
        """Nearest neighbour for class maps, bilinear otherwise (as the training resize)."""
        return Resampling.nearest if self.modality.categorical else Resampling.bilinear

    @property
    def warped(self) -> bool:
        """Whether any file is warped onto the reference grid (False: all read as they are)."""
        return any(f.offset is None for f in self.rasters)

    def _handle(self, path: str) -> DatasetReader:
        """This process's open handle of a file (a loader worker opens its own)."""
        if os.getpid() != self._pid:  # forked: the parent's handles are not ours to use
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = rasterio.open(path)
        return self._handles[path]

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without open files (a spawned worker opens its own)."""
        state = self.__dict__.copy()
        state["_handles"] = {}
        return state

    def _merge_files(
        self,
        filepaths: Sequence[str],
        query: GeoSlice,
        band_indexes: Sequence[int] | None = None,
    ) -> Tensor:
        """Read one query window: ``float32 [C + 1, h, w]``, the bands then the validity."""
        window = query_window(query, self.grid)
        data = np.zeros((len(self.indexes), int(window.height), int(window.width)), np.float32)
        valid = np.zeros(data.shape[1:], dtype=bool)
        overlapping = set(filepaths)
        for raster in self.rasters:
            if raster.path not in overlapping:
                continue
            read = self._read(raster, window)
            if read is None:
                continue
            values, holds = read
            fill = holds & ~valid
            data[:, fill] = values[:, fill]
            valid |= holds
            if valid.all():
                break
        return torch.from_numpy(np.concatenate([data, valid[None].astype(np.float32)]))

    def _read(self, raster: RasterFile, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """One file's bands on a reference window, and where they hold data."""
        if raster.offset is None:
            return self._warp(raster, window)
        col_shift, row_shift = raster.offset
        shifted = Window(
            window.col_off - col_shift, window.row_off - row_shift, window.width, window.height
        )
        clipped = clip_window(shifted, raster.grid)
        if clipped is None:
            return None
        inside, (rows, cols) = clipped
        data = np.zeros((len(self.indexes), int(window.height), int(window.width)), np.float32)
        valid = np.zeros(data.shape[1:], dtype=bool)
        values, holds = self._read_bands(raster, inside)
        data[:, rows, cols] = values
        valid[rows, cols] = holds
        return data, valid

    def _read_bands(self, raster: RasterFile, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """The used bands of a window inside the file: ``float32 [C, h, w]`` and validity.

        Raises:
            ValueError: naming the modality and the file when GDAL cannot read it (a damaged or
                truncated file).
        """
        try:
            read = self._handle(raster.path).read(self.indexes, window=window, masked=True)
        except rasterio.errors.RasterioError as error:
            raise ValueError(f"{self.name}: reading {raster.path} failed ({error})") from error
        values = np.asarray(read.data, dtype=np.float32)
        invalid = np.ma.getmaskarray(read).any(axis=0) | ~np.isfinite(values).all(axis=0)
        nodata = _nodata_mask(np.asarray(read.data), raster.nodata)
        if nodata is not None:
            invalid |= nodata
        return values, ~invalid

    def _warp(self, raster: RasterFile, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """Warp the used bands of the part of a file under a reference window onto it."""
        target = self.grid.transform * Affine.translation(window.col_off, window.row_off)
        width, height = int(window.width), int(window.height)
        left, top = target * (0, 0)
        right, bottom = target * (width, height)
        try:
            bounds = transform_bounds(
                self.grid.crs, raster.grid.crs, left, bottom, right, top, densify_pts=21
            )
        except rasterio.errors.CRSError:
            return None
        if not all(math.isfinite(b) for b in bounds):
            return None
        spot = from_bounds(*bounds, transform=raster.grid.transform)
        # Margin for the interpolation kernel, wider where the file is finer than the grid.
        shrink = max(float(spot.width) / max(width, 1), float(spot.height) / max(height, 1), 1.0)
        margin = 2 + math.ceil(2 * shrink)
        col0 = math.floor(spot.col_off) - margin
        row0 = math.floor(spot.row_off) - margin
        col1 = math.ceil(spot.col_off + spot.width) + margin
        row1 = math.ceil(spot.row_off + spot.height) + margin
        # The window is read whole, NaN beyond the file: GDAL sizes its kernel from the source
        # window, so a window cut at the file's edge would smooth that tile differently.
        clipped = clip_window(Window(col0, row0, col1 - col0, row1 - row0), raster.grid)
        if clipped is None:
            return None
        inside, (rows, cols) = clipped
        read, holds_inside = self._read_bands(raster, inside)
        if not holds_inside.any():
            return None
        values = np.full((len(self.indexes), row1 - row0, col1 - col0), np.nan, np.float32)
        read[:, ~holds_inside] = np.nan
        values[:, rows, cols] = read
        out = np.full((len(self.indexes), height, width), np.nan, dtype=np.float32)
        reproject(
            values,
            out,
            src_transform=raster.grid.transform * Affine.translation(col0, row0),
            src_crs=raster.grid.crs,
            src_nodata=np.nan,
            dst_transform=target,
            dst_crs=self.grid.crs,
            dst_nodata=np.nan,
            resampling=self.resampling,
            num_threads=1,
        )
        valid = np.isfinite(out).all(axis=0)
        return np.nan_to_num(out, nan=0.0), valid

    def read_window(self, window: Window) -> tuple[np.ndarray, np.ndarray] | None:
        """One reference-pixel window of the modality, in the file's units.

        Reads what ``self[query]`` (TorchGeo's ``__getitem__``) reads, but finds the files under
        the window from their bounding boxes directly: TorchGeo's GeoDataFrame query costs
        about 2 ms a call, which in a loader worker is CPU taken from the model.

        Returns:
            ``data`` ``float32 [C, h, w]`` (the bands the training loader reads) and ``valid``
            ``bool [h, w]``; None when the window misses every file's footprint.
        """
        x, y = window_query(window, self.grid)
        overlapping = [
            path
            for path, (left, bottom, right, top) in self.footprints
            if left <= x.stop and right >= x.start and bottom <= y.stop and top >= y.start
        ]
        if not overlapping:
            return None
        image = self._merge_files(overlapping, (x, y)).numpy()
        return image[:-1], image[-1] > 0.5

    @property
    def footprints(self) -> list[tuple[str, tuple[float, float, float, float]]]:
        """Each file and its footprint's bounds in the grid's CRS, from TorchGeo's index."""
        if "_footprints" not in self.__dict__:
            self._footprints = [
                (str(path), tuple(geometry.bounds))
                for path, geometry in zip(self.index.filepath, self.index.geometry, strict=True)
            ]
        return self._footprints

    def close(self) -> None:
        """Close this process's open files."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}


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

    def __getitem__(self, index: int) -> Window:
        """The ``index``-th window (row by row)."""
        if not 0 <= index < len(self):
            raise IndexError(f"tile {index} of {len(self)}")
        row, col = divmod(index, len(self.cols))
        return Window(self.cols[col], self.rows[row], self.tile, self.tile)

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
