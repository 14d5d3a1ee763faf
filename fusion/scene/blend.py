"""Blending overlapping tile predictions on disk, so that memory does not grow with the scene.

Each tile's per-class probabilities are weighted by a smooth window (`blend_window`: a 2-D
squared sine, highest in the tile's centre, with a floor above zero so that the scene's edges,
covered by one tile, still count) and added into a temporary tiled GeoTIFF on the reference
grid, together with the weights and the modality bit-map. Only the tile's window is read and
written back, through GDAL's block cache, so memory holds a few tiles whatever the scene size.
`SceneAccumulator.blocks` then reads the sums back block by block as weighted means. With the
squared sine and a stride of half a tile the shifted windows add up to a constant, so a tile's
influence fades out linearly where the next one fades in: no seams.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from datamodules.rasters import RasterGrid

BLOCK = 256
"""Block side of the temporary and output GeoTIFFs, pixels."""


def blend_window(size: int, floor: float = 0.01) -> np.ndarray:
    """Blending weights of a tile: ``float32 [size, size]``, ``w(y) w(x)``.

    ``w(t) = max(sin^2(pi (t + 0.5) / size), floor)``: 1 in the middle, ``floor`` at the
    edges. The floor is applied to each direction, so along a scene edge, where one row of
    tiles meets the next column, the weights still fade smoothly from tile to tile.

    Args:
        size: tile side, pixels.
        floor: smallest weight of each direction, in (0, 1]; 1 gives uniform weights (plain
            averaging).
    """
    centres = (np.arange(size, dtype=np.float64) + 0.5) / size
    profile = np.maximum(np.sin(np.pi * centres) ** 2, floor)
    return np.outer(profile, profile).astype(np.float32)


def clip_window(window: Window, grid: RasterGrid) -> tuple[Window, tuple[slice, slice]] | None:
    """The part of a window inside the grid, and the matching slices of a tile array.

    Returns:
        ``(window on the grid, (rows, cols) of the tile)``, or None if they do not meet.
    """
    row0, col0 = max(int(window.row_off), 0), max(int(window.col_off), 0)
    row1 = min(int(window.row_off + window.height), grid.height)
    col1 = min(int(window.col_off + window.width), grid.width)
    if row1 <= row0 or col1 <= col0:
        return None
    inside = Window(col0, row0, col1 - col0, row1 - row0)
    rows = slice(row0 - int(window.row_off), row1 - int(window.row_off))
    cols = slice(col0 - int(window.col_off), col1 - int(window.col_off))
    return inside, (rows, cols)


class SceneAccumulator:
    """Weighted sums of tile probabilities on the reference grid, in a temporary GeoTIFF.

    Bands: ``C`` weighted probability sums, the weight sum, and the modality bit-map (bit m
    set where modality m holds data; written, not summed: it is the same in every tile).

    Args:
        path: the temporary file to create.
        grid: the reference grid.
        channels: C, the number of classes in the probabilities.
    """

    def __init__(self, path: Path, grid: RasterGrid, channels: int) -> None:
        self.grid = grid
        self.channels = channels
        self.dataset = rasterio.open(
            path,
            "w+",
            driver="GTiff",
            width=grid.width,
            height=grid.height,
            count=channels + 2,
            dtype="float32",
            crs=grid.crs,
            transform=grid.transform,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            sparse_ok=True,
        )

    def add(
        self, window: Window, probabilities: np.ndarray, weights: np.ndarray, bits: np.ndarray
    ) -> None:
        """Add one tile.

        Args:
            window: the tile's window on the grid (may hang over its edges).
            probabilities: ``float32 [C, h, w]``.
            weights: ``float32 [h, w]`` blending weights.
            bits: ``[h, w]`` modality bit-map of the tile.
        """
        clipped = clip_window(window, self.grid)
        if clipped is None:
            return
        inside, (rows, cols) = clipped
        sums = self.dataset.read(window=inside)
        tile_weights = weights[rows, cols]
        sums[: self.channels] += probabilities[:, rows, cols] * tile_weights
        sums[self.channels] += tile_weights
        sums[self.channels + 1] = bits[rows, cols]
        self.dataset.write(sums, window=inside)

    def blocks(self, size: int = BLOCK) -> Iterator[tuple[Window, np.ndarray, np.ndarray]]:
        """The blended result, block by block.

        Yields:
            ``(window, probabilities float32 [C, h, w], bits int64 [h, w])``; probabilities are
            NaN where no tile was predicted.
        """
        for row in range(0, self.grid.height, size):
            for col in range(0, self.grid.width, size):
                window = Window(
                    col, row, min(size, self.grid.width - col), min(size, self.grid.height - row)
                )
                sums = self.dataset.read(window=window)
                weight = sums[self.channels]
                with np.errstate(invalid="ignore", divide="ignore"):
                    probabilities = sums[: self.channels] / weight
                probabilities[:, weight <= 0] = np.nan
                yield window, probabilities, sums[self.channels + 1].astype(np.int64)

    def close(self) -> None:
        """Close the temporary file (again: nothing)."""
        self.dataset.close()

    def __enter__(self) -> SceneAccumulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
