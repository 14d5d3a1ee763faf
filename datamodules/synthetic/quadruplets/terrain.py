"""Terrain and surface water of a synthetic region: elevation, sea, rivers and lakes.

The elevation is fractal noise stretched to the region's relief, with a coast that slopes down to
the sea, flat-floored valleys carved along meandering rivers, and lakes that fill the lowest
hollows. All distances are in 10 m pixels, elevations in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from datamodules.synthetic.noise import blob_noise, fractal_noise
from datamodules.synthetic.quadruplets.regions import RegionStyle

PIXEL_SIZE_M = 10.0
"""Ground sampling distance of the quadruplet rasters."""

_SEA_SHARE = 0.2
_MIN_LAKE_PX = 40


@dataclass(frozen=True)
class Terrain:
    """Elevation and water of a region canvas.

    Attributes:
        elevation_m: ``float32 [H, W]`` ground elevation in metres (sea at 0 m).
        relative_height: ``float32 [H, W]`` elevation above the region's base level divided by
            its relief (about 0 in the valleys, 1 on the highest ground).
        slope_deg: ``float32 [H, W]`` terrain slope in degrees.
        sea: ``bool [H, W]``.
        river: ``bool [H, W]``.
        lake: ``bool [H, W]``.
        distance_to_water_px: ``float32 [H, W]`` distance to the nearest water pixel.
    """

    elevation_m: np.ndarray
    relative_height: np.ndarray
    slope_deg: np.ndarray
    sea: np.ndarray
    river: np.ndarray
    lake: np.ndarray
    distance_to_water_px: np.ndarray

    @property
    def water(self) -> np.ndarray:
        """``bool [H, W]``: sea, rivers and lakes."""
        return self.sea | self.river | self.lake


def make_terrain(rng: np.random.Generator, shape: tuple[int, int], style: RegionStyle) -> Terrain:
    """Generate the elevation and the water bodies of one region canvas.

    Args:
        rng: random source of this region's terrain.
        shape: ``(height, width)`` of the canvas in 10 m pixels.
        style: the region's character.

    Returns:
        The canvas's terrain.
    """
    hills = _unit_range(fractal_noise(rng, shape, beta=3.3))
    tilt = _unit_range(_linear_ramp(shape, rng.uniform(0, 2 * np.pi)))
    relative = np.clip(0.8 * hills**1.4 + 0.35 * tilt - 0.1, 0, None)
    sea = np.zeros(shape, dtype=bool)
    if style.coast is not None:
        inland = _distance_from_side(shape, style.coast)
        coastline = _SEA_SHARE + 0.07 * fractal_noise(rng, shape, beta=3.0)
        sea = ndimage.binary_opening(inland < coastline, iterations=2)
        relative *= np.clip((inland - coastline) / 0.35, 0, 1) ** 0.8
    river = _draw_rivers(rng, shape, style, avoid=sea)
    valley_width_px = min(30 + 0.04 * style.relief_m, 90)
    valley = np.exp(-((distance_to(river) / valley_width_px) ** 2))
    relative = relative * (1 - valley) + 0.01 * valley
    lake = _fill_lakes(rng, relative, style.lake_share, blocked=sea | river)
    relative = _flood_lakes(relative, lake)
    elevation = style.base_elevation_m + style.relief_m * relative
    elevation += 0.4 * fractal_noise(rng, shape, beta=2.2)
    elevation = np.where(sea, 0.0, np.maximum(elevation, 0.5)).astype(np.float32)
    water = sea | river | lake
    return Terrain(
        elevation_m=elevation,
        relative_height=relative.astype(np.float32),
        slope_deg=slope_degrees(elevation),
        sea=sea,
        river=river,
        lake=lake,
        distance_to_water_px=distance_to(water),
    )


def distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest pixel of ``mask``.

    Args:
        mask: ``bool [H, W]``.

    Returns:
        ``float32 [H, W]`` distances in pixels (0 on the mask; a large value everywhere when the
        mask is empty).
    """
    if not mask.any():
        return np.full(mask.shape, 1e6, dtype=np.float32)
    # the 5 x 5 chamfer mask runs sequentially: the precise mode is multithreaded and its result
    # depends on the thread count
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)


def slope_degrees(elevation_m: np.ndarray) -> np.ndarray:
    """Terrain slope of a 10 m elevation grid.

    Args:
        elevation_m: ``[H, W]`` elevations in metres.

    Returns:
        ``float32 [H, W]`` slope in degrees.
    """
    d_row, d_col = np.gradient(elevation_m.astype(np.float32), PIXEL_SIZE_M)
    return np.degrees(np.arctan(np.hypot(d_row, d_col))).astype(np.float32)


def _unit_range(values: np.ndarray) -> np.ndarray:
    """Rescale to 0..1."""
    low, high = float(values.min()), float(values.max())
    return (values - low) / max(high - low, 1e-6)


def _linear_ramp(shape: tuple[int, int], angle: float) -> np.ndarray:
    """A plane rising in direction ``angle`` (radians, 0 = towards the east)."""
    rows, cols = _pixel_coordinates(shape)
    return cols * np.float32(np.cos(angle)) - rows * np.float32(np.sin(angle))


def _distance_from_side(shape: tuple[int, int], side: str) -> np.ndarray:
    """Distance from one edge of the canvas, as a fraction of the canvas's shorter side."""
    height, width = shape
    rows, cols = _pixel_coordinates(shape)
    distance = {"north": rows, "south": height - 1 - rows, "west": cols, "east": width - 1 - cols}
    return np.broadcast_to(distance[side], shape) / np.float32(min(height, width))


def _pixel_coordinates(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row ``[H, 1]`` and column ``[1, W]`` indices as ``float32``, for broadcasting."""
    return (
        np.arange(shape[0], dtype=np.float32)[:, None],
        np.arange(shape[1], dtype=np.float32)[None, :],
    )


def _draw_rivers(
    rng: np.random.Generator, shape: tuple[int, int], style: RegionStyle, avoid: np.ndarray
) -> np.ndarray:
    """Meandering rivers that cross the canvas, the first one the widest."""
    height, width = shape
    canvas = np.zeros(shape, dtype=np.uint8)
    for index in range(style.rivers):
        width_px = style.river_width_px * (1.0 if index == 0 else rng.uniform(0.3, 0.6))
        vertical = rng.random() < 0.5
        start = np.array(
            [rng.uniform(0.15, 0.85) * width, 0.0]
            if vertical
            else [0.0, rng.uniform(0.2, 0.8) * height]
        )
        heading = (np.pi / 2 if vertical else 0.0) + rng.uniform(-0.4, 0.4)
        points = _meander(rng, start, heading, limit=(width, height))
        cv2.polylines(canvas, [points], isClosed=False, color=1, thickness=max(1, round(width_px)))
    return (canvas > 0) & ~avoid


def _meander(
    rng: np.random.Generator, start: np.ndarray, heading: float, limit: tuple[int, int]
) -> np.ndarray:
    """Points ``[N, 2]`` (x, y) of a smoothly bending path from ``start`` until it leaves."""
    step_px = 2.0
    max_steps = int(4 * sum(limit) / step_px)
    bends = ndimage.gaussian_filter1d(rng.standard_normal(max_steps), sigma=10)
    swings = ndimage.gaussian_filter1d(rng.standard_normal(max_steps), sigma=60)
    headings = heading + 1.0 * bends / bends.std() + 0.35 * swings / max(float(swings.std()), 1e-6)
    steps = step_px * np.stack([np.cos(headings), np.sin(headings)], axis=1)
    path = start + np.cumsum(steps, axis=0)
    margin = 10
    inside = (
        (path[:, 0] > -margin)
        & (path[:, 0] < limit[0] + margin)
        & (path[:, 1] > -margin)
        & (path[:, 1] < limit[1] + margin)
    )
    last = int(np.argmin(inside)) if not inside.all() else len(path)
    return np.round(np.vstack([start, path[:last]])).astype(np.int32)


def _fill_lakes(
    rng: np.random.Generator, relative: np.ndarray, share: float, blocked: np.ndarray
) -> np.ndarray:
    """Lakes in the lowest hollows, covering about ``share`` of the canvas."""
    if share <= 0:
        return np.zeros(relative.shape, dtype=bool)
    basin = relative + 0.15 * blob_noise(rng, relative.shape, sigma_px=12)
    candidates = basin < np.quantile(basin, share)
    candidates &= ~ndimage.binary_dilation(blocked, iterations=3)
    candidates = ndimage.binary_opening(candidates, iterations=2)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(candidates.astype(np.uint8), 4)
    large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= _MIN_LAKE_PX)
    return np.isin(labels, large[large > 0])


def _flood_lakes(relative: np.ndarray, lake: np.ndarray) -> np.ndarray:
    """Give each lake a flat level (its lowest ground) and let the shore slope gently to it."""
    if not lake.any():
        return relative
    labels, count = ndimage.label(lake)
    levels = np.full(count + 1, np.inf, dtype=np.float32)
    np.minimum.at(levels, labels[lake], relative[lake])
    distance, nearest = cv2.distanceTransformWithLabels(
        (~lake).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # cv2 numbers the zero pixels 1..N in row-major order, which is the order of labels[lake]
    nearest_level = levels[labels[lake]][nearest - 1]
    shore = np.exp(-((distance / 8.0) ** 2))
    return relative * (1 - shore) + nearest_level * shore
