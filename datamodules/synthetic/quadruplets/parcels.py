"""Partitions of a canvas into parcels: agricultural fields and urban blocks.

A parcel grid is a rotated, gently warped grid of rows of varying height, each row cut into
parcels of its own width at its own offset, so neighbouring rows do not line up. The result reads
as a cadastral pattern (field strips, street blocks) and costs a few vectorised passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from datamodules.synthetic.noise import blob_noise


@dataclass(frozen=True)
class ParcelGrid:
    """Parcel ids of every pixel of a canvas.

    Attributes:
        ids: ``int32 [H, W]`` parcel ids in ``0..count-1`` (not all ids need to occur).
        count: number of possible ids.
    """

    ids: np.ndarray
    count: int

    def mean(self, values: np.ndarray) -> np.ndarray:
        """Average a per-pixel field over each parcel.

        Args:
            values: ``[H, W]`` values.

        Returns:
            ``float64 [count]`` parcel means (0 for ids that do not occur).
        """
        sums = np.bincount(self.ids.ravel(), weights=values.ravel(), minlength=self.count)
        sizes = np.bincount(self.ids.ravel(), minlength=self.count)
        return sums / np.maximum(sizes, 1)

    def boundaries(self) -> np.ndarray:
        """``bool [H, W]``: pixels whose right or lower neighbour is in another parcel."""
        edge = np.zeros(self.ids.shape, dtype=bool)
        edge[:, :-1] |= self.ids[:, :-1] != self.ids[:, 1:]
        edge[:-1, :] |= self.ids[:-1, :] != self.ids[1:, :]
        return edge


def parcel_grid(
    rng: np.random.Generator,
    shape: tuple[int, int],
    cell_px: float,
    angle_deg: float,
    elongation: tuple[float, float] = (0.7, 2.2),
) -> ParcelGrid:
    """Cut a canvas into roughly rectangular parcels about ``cell_px`` pixels across.

    Args:
        rng: random source.
        shape: ``(height, width)`` of the canvas.
        cell_px: typical parcel height, pixels.
        angle_deg: orientation of the rows (counter-clockwise from the image's x axis).
        elongation: range of parcel length along the row, as a multiple of ``cell_px``.

    Returns:
        The parcel ids.
    """
    angle = np.radians(angle_deg)
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    warp_px = 0.25 * cell_px
    along = cols * np.float32(np.cos(angle)) + rows * np.float32(np.sin(angle))
    across = rows * np.float32(np.cos(angle)) - cols * np.float32(np.sin(angle))
    along = along + warp_px * blob_noise(rng, shape, sigma_px=3 * cell_px)
    across = across + warp_px * blob_noise(rng, shape, sigma_px=3 * cell_px)
    across -= across.min()
    along -= along.min()

    row_count = int(across.max() / (0.6 * cell_px)) + 2
    row_edges = np.cumsum(cell_px * rng.uniform(0.6, 1.4, row_count))
    row = np.minimum(np.searchsorted(row_edges, across), row_count - 1)
    lengths = cell_px * rng.uniform(*elongation, row_count).astype(np.float32)
    offsets = rng.uniform(0, 1, row_count).astype(np.float32) * lengths
    column = ((along + offsets[row]) / lengths[row]).astype(np.int32)
    column_count = int(along.max() / (elongation[0] * cell_px)) + 2
    return ParcelGrid(
        ids=(row * column_count + column).astype(np.int32), count=row_count * column_count
    )
