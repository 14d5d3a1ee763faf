"""Raster operations shared by the scene generators: shifts, cast shadows, mode filter, polygons."""

from __future__ import annotations

import cv2
import numpy as np


def shifted(values: np.ndarray, dy: int, dx: int, fill: float) -> np.ndarray:
    """Move a 2-D array's content by ``(dy, dx)`` pixels, filling what enters with ``fill``.

    Args:
        values: ``[H, W]`` array.
        dy: rows to move down (negative: up).
        dx: columns to move right (negative: left).
        fill: value of the pixels uncovered by the move.

    Returns:
        ``out`` with ``out[y, x] = values[y - dy, x - dx]`` where that index exists.
    """
    height, width = values.shape
    out = np.full_like(values, fill)
    if abs(dy) >= height or abs(dx) >= width:
        return out
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = values[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def occluding_height(
    height_m: np.ndarray, step: tuple[int, int], drop_per_step_m: float, max_steps: int
) -> np.ndarray:
    """Height of the highest obstacle on a sloping line of sight, for cast shadows.

    For each pixel ``p`` this is ``max_k height[p - k * step] - k * drop_per_step_m`` over
    ``0 <= k < 2**ceil(log2(max_steps))``: a pixel lies in shadow when the result exceeds its own
    height. ``step`` points the way shadows are cast (away from the sun, or away from a radar),
    ``drop_per_step_m`` is how far the grazing ray falls per step. The maximum is built by
    doubling, ``log2(max_steps)`` shifted copies instead of ``max_steps``.

    Args:
        height_m: ``float32 [H, W]`` heights in metres.
        step: ``(dy, dx)`` pixel step in the direction shadows are cast.
        drop_per_step_m: fall of the ray per step, in metres (positive).
        max_steps: longest shadow to model, in steps.

    Returns:
        ``float32 [H, W]`` occluding heights, never below ``height_m``.
    """
    horizon = height_m.astype(np.float32, copy=True)
    span = 1
    while span < max_steps:
        moved = shifted(horizon, step[0] * span, step[1] * span, fill=-np.inf)
        np.maximum(horizon, moved - np.float32(span * drop_per_step_m), out=horizon)
        span *= 2
    return horizon


def mode_filter(labels: np.ndarray, num_classes: int, size: int) -> np.ndarray:
    """Replace each label by the most frequent label in its ``size x size`` window.

    Args:
        labels: ``uint8 [H, W]`` class ids in ``0..num_classes-1``.
        num_classes: number of classes.
        size: odd window size in pixels.

    Returns:
        ``uint8 [H, W]`` filtered class ids (ties go to the lower id).
    """
    best_votes = np.full(labels.shape, -1, dtype=np.int16)
    best_label = np.zeros(labels.shape, dtype=np.uint8)
    for label in range(num_classes):
        votes = cv2.boxFilter(
            (labels == label).astype(np.uint8),
            cv2.CV_16S,
            (size, size),
            normalize=False,
            borderType=cv2.BORDER_REFLECT,
        )
        better = votes > best_votes
        best_label[better] = label
        np.maximum(best_votes, votes, out=best_votes)
    return best_label


def polygon_mask(polygon_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels of a ``[H, W]`` grid whose centres lie inside a polygon (MS COCO convention).

    Args:
        polygon_xy: ``[N, 2]`` vertices ``(x, y)`` in pixel coordinates, N >= 3.
        shape: ``(height, width)`` of the grid.

    Returns:
        ``bool [H, W]`` mask.
    """
    mask = np.zeros(shape, dtype=bool)
    window, inside = polygon_window(polygon_xy, shape)
    mask[window] = inside
    return mask


def polygon_window(
    polygon_xy: np.ndarray, shape: tuple[int, int]
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The part of a grid that a polygon's bounding box covers, and the polygon's pixels in it.

    A pixel ``(row, col)`` covers ``[col, col + 1] x [row, row + 1]`` and belongs to the polygon
    when its centre ``(col + 0.5, row + 0.5)`` is inside (even-odd rule), as pycocotools has it.

    Args:
        polygon_xy: ``[N, 2]`` vertices ``(x, y)`` in pixel coordinates, N >= 3.
        shape: ``(height, width)`` of the grid.

    Returns:
        ``(rows, cols)`` slices of the bounding box clipped to the grid (possibly empty), and
        the ``bool`` mask of the polygon's pixels within it.
    """
    polygon = np.asarray(polygon_xy, dtype=np.float64)
    x_lo, y_lo = (int(v) for v in np.clip(np.floor(polygon.min(axis=0)), 0, (shape[1], shape[0])))
    x_hi = int(np.clip(np.ceil(polygon[:, 0].max()), x_lo, shape[1]))
    y_hi = int(np.clip(np.ceil(polygon[:, 1].max()), y_lo, shape[0]))
    centre_x = np.arange(x_lo, x_hi)[None, :] + 0.5
    centre_y = np.arange(y_lo, y_hi)[:, None] + 0.5
    inside = np.zeros((y_hi - y_lo, x_hi - x_lo), dtype=bool)
    for (x0, y0), (x1, y1) in zip(polygon, np.vstack([polygon[1:], polygon[:1]]), strict=True):
        if y0 == y1:
            continue
        crosses_row = (y0 > centre_y) != (y1 > centre_y)
        crossing_x = x0 + (centre_y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses_row & (centre_x < crossing_x)
    return (slice(y_lo, y_hi), slice(x_lo, x_hi)), inside
