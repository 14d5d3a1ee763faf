"""Cutting a region canvas into georeferenced tiles and writing the five rasters of each tile.

Tiles of a region sit side by side on one grid, row-major from the north-west corner; tile
``<region>_r<row>_c<col>`` covers pixels ``[row * size, (row + 1) * size)`` of the canvas. A few
tiles of every region get the gaps real data has: a strip without UrbanAtlas coverage (code 0)
along one edge (at least one tile per region), or a corner outside the Sentinel-2 swath (all bands
0, the no-data value; about one tile in 25).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from datamodules.synthetic.geotiff import round_to_step, write_geotiff
from datamodules.synthetic.quadruplets import sentinel1, sentinel2
from datamodules.synthetic.quadruplets.regions import RegionStyle
from datamodules.synthetic.quadruplets.terrain import PIXEL_SIZE_M

NO_DATA_CODE = 0
"""Label value of pixels without UrbanAtlas coverage (also the label file's no-data tag)."""

_LABEL_GAP_SHARE = 0.12
_SWATH_GAP_SHARE = 0.04


@dataclass(frozen=True)
class RegionRasters:
    """The rendered canvas of one region, all on one grid.

    Attributes:
        sentinel1: ``float32 [2, H, W]`` VV, VH in dB.
        sentinel2: ``uint16 [4, H, W]`` B2, B3, B4, B8 reflectance x 10000.
        elevation_m: ``float32 [H, W]``.
        dynamic_world: ``uint8 [H, W]`` classes 0..8.
        codes: ``uint16 [H, W]`` UrbanAtlas codes.
    """

    sentinel1: np.ndarray
    sentinel2: np.ndarray
    elevation_m: np.ndarray
    dynamic_world: np.ndarray
    codes: np.ndarray


def tile_grid(tiles: int) -> tuple[int, int]:
    """Rows and columns of the tile grid of a region: as square as possible, wider than tall.

    Args:
        tiles: number of tiles of the region.

    Returns:
        ``(rows, columns)`` with ``rows * columns >= tiles``.
    """
    rows = max(int(np.sqrt(tiles / 1.5)), 1)
    return rows, -(-tiles // rows)


def region_origin(style: RegionStyle, shape: tuple[int, int]) -> tuple[float, float]:
    """Easting and northing of the north-west corner of a region canvas centred on the region."""
    easting = style.centre_en[0] - shape[1] * PIXEL_SIZE_M / 2
    northing = style.centre_en[1] + shape[0] * PIXEL_SIZE_M / 2
    return easting, northing


def write_region_tiles(
    rng: np.random.Generator,
    region_dir: Path,
    style: RegionStyle,
    rasters: RegionRasters,
    tiles: int,
    size: int,
) -> list[str]:
    """Cut the canvas into tiles and write ``s1/``, ``s2/``, ``dem/``, ``dnw/``, ``label/``.

    Args:
        rng: random source of the tile gaps.
        region_dir: the region's folder.
        style: the region (CRS and position).
        rasters: the rendered canvas, at least ``tile_grid(tiles)`` tiles large.
        tiles: number of tiles to write (the first ones in row-major order).
        size: tile side in pixels.

    Returns:
        The tile names, in the order written.
    """
    crs = CRS.from_epsg(style.epsg)
    west, north = region_origin(style, rasters.codes.shape)
    _, columns = tile_grid(tiles)
    label_gaps = set(rng.choice(tiles, max(1, round(_LABEL_GAP_SHARE * tiles)), replace=False))
    swath_gaps = set(rng.choice(tiles, round(_SWATH_GAP_SHARE * tiles), replace=False))
    names = []
    for index in range(tiles):
        row, column = divmod(index, columns)
        name = f"{style.name}_r{row:02d}_c{column:02d}"
        window = np.s_[row * size : (row + 1) * size, column * size : (column + 1) * size]
        transform = Affine(
            PIXEL_SIZE_M, 0, west + column * size * PIXEL_SIZE_M,
            0, -PIXEL_SIZE_M, north - row * size * PIXEL_SIZE_M,
        )  # fmt: skip
        s2 = rasters.sentinel2[(slice(None), *window)].copy()
        label = rasters.codes[window].copy()
        if index in label_gaps:
            _blank_label_strip(rng, label)
        if index in swath_gaps:
            _blank_swath_corner(rng, s2)
        grid = {"crs": crs, "transform": transform}
        write_geotiff(
            region_dir / "s1" / f"{name}.tif",
            round_to_step(rasters.sentinel1[(slice(None), *window)], -5),  # 0.03 dB
            descriptions=sentinel1.BANDS,
            **grid,
        )
        write_geotiff(
            region_dir / "s2" / f"{name}.tif", s2, descriptions=sentinel2.BANDS, nodata=0, **grid
        )
        write_geotiff(
            region_dir / "dem" / f"{name}.tif",
            round_to_step(rasters.elevation_m[window][None], -4),  # 6 cm
            descriptions=("elevation",),
            **grid,
        )
        write_geotiff(
            region_dir / "dnw" / f"{name}.tif",
            rasters.dynamic_world[window][None],
            descriptions=("label",),
            **grid,
        )
        write_geotiff(
            region_dir / "label" / f"{name}.tif",
            label[None],
            descriptions=("urban_atlas_code",),
            nodata=NO_DATA_CODE,
            **grid,
        )
        names.append(name)
    return names


def _blank_label_strip(rng: np.random.Generator, label_tile: np.ndarray) -> None:
    """Set a strip along one edge of the tile to the no-data code (outside UrbanAtlas coverage)."""
    width = max(1, int(rng.uniform(0.03, 0.15) * label_tile.shape[0]))
    strips = (np.s_[:width, :], np.s_[-width:, :], np.s_[:, :width], np.s_[:, -width:])
    label_tile[strips[rng.integers(4)]] = NO_DATA_CODE


def _blank_swath_corner(rng: np.random.Generator, sentinel2_tile: np.ndarray) -> None:
    """Set the north-west corner of the tile, beyond a diagonal swath edge, to no data (0)."""
    size = sentinel2_tile.shape[1]
    rows = np.arange(size)[:, None]
    cols = np.arange(sentinel2_tile.shape[2])[None, :]
    sentinel2_tile[:, rows + cols < rng.uniform(0.2, 0.6) * size] = 0
