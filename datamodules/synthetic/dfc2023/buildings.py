"""Buildings of a synthetic DFC2023 tile: placement, footprints and roof heights.

Footprints are rectangles and L-shapes aligned with the streets, placed by rejection so that they
overlap neither the roads (with a setback) nor each other (with a gap); roofs are flat or gabled.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datamodules.synthetic.dfc2023 import footprints
from datamodules.synthetic.dfc2023.places import ROOF_COLOURS, PlaceKind
from datamodules.synthetic.raster_ops import polygon_window

PIXEL_SIZE_M = 0.5
"""Ground sampling distance of the DFC2023 rasters."""


@dataclass(frozen=True)
class Building:
    """One building.

    Attributes:
        polygon: ``[N, 2]`` footprint vertices ``(x, y)``, rounded, possibly beyond the tile.
        centre: ``(x, y)`` of the footprint's bounding rectangle.
        angle_deg: angle of the footprint's length axis.
        width_px: footprint width (short side), pixels.
        eave_m: height of the flat roof or of the eaves, metres.
        ridge_m: height of the ridge (equal to ``eave_m`` for a flat roof).
        roof_colour: RGB colour of the roof.
    """

    polygon: np.ndarray
    centre: tuple[float, float]
    angle_deg: float
    width_px: float
    eave_m: float
    ridge_m: float
    roof_colour: tuple[int, int, int]

    @property
    def gabled(self) -> bool:
        """Whether the roof has a ridge."""
        return self.ridge_m > self.eave_m


@dataclass(frozen=True)
class BuildingLayout:
    """The buildings of a tile and their rasters.

    Attributes:
        buildings: the buildings whose footprint reaches into the tile.
        index: ``int16 [H, W]`` 1 + index into ``buildings``, 0 where no building.
        height_m: ``float32 [H, W]`` roof heights, 0 outside buildings.
        roof_side: ``float32 [H, W]`` -1 / +1 on the two sides of a gabled roof's ridge, 0 on
            flat roofs and outside buildings.
    """

    buildings: list[Building]
    index: np.ndarray
    height_m: np.ndarray
    roof_side: np.ndarray


def place_buildings(
    rng: np.random.Generator,
    kind: PlaceKind,
    street_angle_deg: float,
    distance_to_road: np.ndarray,
    area_scale: float,
) -> BuildingLayout:
    """Place buildings by rejection sampling.

    A candidate is dropped when its footprint comes closer to a road than the kind's smallest
    setback, overlaps an earlier building or its gap, or has too little of it inside the tile.

    Args:
        rng: random source of the tile's layout.
        kind: the kind of place (sizes, heights, roofs, count, setbacks).
        street_angle_deg: orientation of the street grid; buildings are aligned with it.
        distance_to_road: ``float32 [H, W]`` distance of each pixel to the nearest road, pixels.
        area_scale: tile area relative to a 512 x 512 tile (scales the building count).

    Returns:
        The buildings and their rasters.
    """
    shape = distance_to_road.shape
    gap = 3
    target = round(rng.integers(*kind.buildings_per_tile, endpoint=True) * area_scale)
    blocked = distance_to_road < kind.setback_px[0]
    layout = BuildingLayout(
        buildings=[],
        index=np.zeros(shape, dtype=np.int16),
        height_m=np.zeros(shape, dtype=np.float32),
        roof_side=np.zeros(shape, dtype=np.float32),
    )
    if kind.along_streets:
        near_street = distance_to_road <= kind.setback_px[1] + 30
        candidates = np.flatnonzero((~blocked & near_street).ravel())
    else:
        candidates = np.flatnonzero((~blocked).ravel())
    if target == 0 or candidates.size == 0:
        return layout
    for _ in range(12 * target):
        if len(layout.buildings) >= target:
            break
        row, col = divmod(int(rng.choice(candidates)), shape[1])
        if blocked[row, col]:
            continue
        building = _random_building(rng, kind, street_angle_deg, (row, col))
        window, inside = polygon_window(building.polygon, shape)
        visible = int(inside.sum())
        if visible < 40 or visible < 0.4 * footprints.polygon_area(building.polygon):
            continue
        if (blocked[window] & inside).any():
            continue
        layout.buildings.append(building)
        layout.index[window][inside] = len(layout.buildings)
        layout.height_m[window][inside], layout.roof_side[window][inside] = _roof_heights(
            building, window, inside
        )
        _mark_blocked(blocked, window, inside, gap)
    return layout


def _random_building(
    rng: np.random.Generator, kind: PlaceKind, street_angle: float, row_col: tuple[int, int]
) -> Building:
    """A building of the given kind centred near pixel ``row_col``, aligned with the streets."""
    length = rng.uniform(*kind.length_px)
    width = max(8.0, length * rng.uniform(*kind.width_px))
    angle = street_angle + (90.0 if rng.random() < 0.5 else 0.0) + rng.normal(0, 2)
    centre = (row_col[1] + rng.uniform(0, 1), row_col[0] + rng.uniform(0, 1))
    eave = float(rng.uniform(*kind.height_m))
    ridge = eave
    if width >= 16 and rng.random() < kind.l_shape_share:
        notch = (rng.uniform(0.35, 0.5), rng.uniform(0.35, 0.5))
        polygon = footprints.l_shape(centre, length, width, angle, notch)
    else:
        polygon = footprints.rectangle(centre, length, width, angle)
        if rng.random() < kind.gabled_share:
            ridge = eave + width / 2 * PIXEL_SIZE_M * np.tan(np.radians(rng.uniform(25, 45)))
    colour = np.asarray(ROOF_COLOURS[kind.roofs[rng.integers(len(kind.roofs))]], dtype=float)
    colour = np.clip(colour * rng.uniform(0.88, 1.12), 0, 255)
    return Building(
        polygon=polygon,
        centre=centre,
        angle_deg=float(angle),
        width_px=float(width),
        eave_m=eave,
        ridge_m=float(ridge),
        roof_colour=tuple(int(c) for c in colour),
    )


def _roof_heights(
    building: Building, window: tuple[slice, slice], inside: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Roof height and roof side (-1 / +1 across the ridge, 0 when flat) of the footprint pixels."""
    if not building.gabled:
        count = int(inside.sum())
        return np.full(count, building.eave_m, np.float32), np.zeros(count, np.float32)
    rows = np.arange(window[0].start, window[0].stop) + 0.5
    cols = np.arange(window[1].start, window[1].stop) + 0.5
    points = np.stack(np.broadcast_arrays(cols[None, :], rows[:, None]), axis=-1)[inside]
    _, across = footprints.to_local(points, building.centre, building.angle_deg)
    rise = 1 - np.clip(np.abs(across) / (building.width_px / 2), 0, 1)
    heights = building.eave_m + (building.ridge_m - building.eave_m) * rise
    return heights.astype(np.float32), np.sign(across).astype(np.float32)


def _mark_blocked(
    blocked: np.ndarray, window: tuple[slice, slice], inside: np.ndarray, gap: int
) -> None:
    """Forbid a footprint and a margin of ``gap`` pixels around it to later buildings."""
    rows, cols = window
    top, left = max(rows.start - gap, 0), max(cols.start - gap, 0)
    bottom = min(rows.stop + gap, blocked.shape[0])
    right = min(cols.stop + gap, blocked.shape[1])
    padded = np.zeros((bottom - top, right - left), dtype=np.uint8)
    padded[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = inside
    kernel = np.ones((2 * gap + 1, 2 * gap + 1), dtype=np.uint8)
    blocked[top:bottom, left:right] |= cv2.dilate(padded, kernel) > 0
