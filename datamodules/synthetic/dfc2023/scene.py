"""The layout of one synthetic DFC2023 tile (0.5 m pixels): roads, ground, buildings, trees.

A tile is one of five kinds of place (rural, suburban, urban, dense centre, industrial) that set
the street grid, the building sizes and heights, the roof palette and the greenery. Buildings are
rotated rectangles and L-shapes aligned with the streets, placed by rejection so that they never
overlap each other or the roads; houses line up along the streets. The scene holds true heights;
the sensors (`.optical`, `.sar`, `.surface_model`) render it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from datamodules.synthetic.dfc2023.buildings import PIXEL_SIZE_M, Building, place_buildings
from datamodules.synthetic.dfc2023.places import PLACE_KINDS, PlaceKind
from datamodules.synthetic.noise import blob_noise

__all__ = ["CROP", "GRASS", "PAVED", "PIXEL_SIZE_M", "ROAD", "SOIL", "Scene", "make_scene"]

GRASS, SOIL, PAVED, ROAD, CROP = range(5)
"""Ground cover classes of `Scene.ground`."""


@dataclass(frozen=True)
class Scene:
    """The layout of a tile.

    Attributes:
        kind: the kind of place.
        street_angle_deg: orientation of the street grid.
        ground: ``uint8 [H, W]`` ground cover (`GRASS`, `SOIL`, ...).
        lane_marking: ``bool [H, W]`` painted lines on the roads.
        field_rows: ``float32 [H, W]`` 0..1 pattern of crop rows (0 where no field).
        buildings: the buildings whose footprint reaches into the tile.
        building_index: ``int16 [H, W]`` 1 + index into ``buildings``, 0 where no building.
        building_height_m: ``float32 [H, W]`` roof heights, 0 outside buildings.
        roof_side: ``float32 [H, W]`` -1 / +1 on the two sides of a gabled roof, 0 elsewhere.
        tree_height_m: ``float32 [H, W]`` canopy heights, 0 where no tree.
    """

    kind: PlaceKind
    street_angle_deg: float
    ground: np.ndarray
    lane_marking: np.ndarray
    field_rows: np.ndarray
    buildings: list[Building]
    building_index: np.ndarray
    building_height_m: np.ndarray
    roof_side: np.ndarray
    tree_height_m: np.ndarray

    @property
    def height_m(self) -> np.ndarray:
        """``float32 [H, W]`` height of whatever stands on the ground (roofs, canopies)."""
        return np.maximum(self.building_height_m, self.tree_height_m)


def make_scene(rng: np.random.Generator, size: int) -> Scene:
    """Lay out one tile.

    Args:
        rng: random source of this tile.
        size: tile side, pixels.

    Returns:
        The tile's scene.
    """
    kinds = PLACE_KINDS
    kind = kinds[rng.choice(len(kinds), p=[k.probability for k in kinds])]
    shape = (size, size)
    angle = float(rng.uniform(0, 180))
    area_scale = size * size / 512**2
    road, marking = _streets(rng, shape, kind, angle)
    ground, field_rows = _ground_cover(rng, shape, kind, road, angle)

    distance_to_road = cv2.distanceTransform((~road).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_5)
    layout = place_buildings(rng, kind, angle, distance_to_road, area_scale)
    unbuilt = layout.index == 0
    if kind.name in ("urban", "dense"):
        ground[(distance_to_road > 0) & (distance_to_road <= 4) & unbuilt] = PAVED  # sidewalks
    tree_height = _plant_trees(rng, kind, (~road) & (distance_to_road > 3) & unbuilt, area_scale)
    tree_height[~unbuilt] = 0
    return Scene(
        kind=kind,
        street_angle_deg=angle,
        ground=ground,
        lane_marking=marking,
        field_rows=field_rows,
        buildings=layout.buildings,
        building_index=layout.index,
        building_height_m=layout.height_m,
        roof_side=layout.roof_side,
        tree_height_m=tree_height,
    )


def _streets(
    rng: np.random.Generator, shape: tuple[int, int], kind: PlaceKind, angle_deg: float
) -> tuple[np.ndarray, np.ndarray]:
    """Road mask and dashed lane markings: a street grid, or maybe a single country road."""
    road = np.zeros(shape, dtype=np.uint8)
    marking = np.zeros(shape, dtype=np.uint8)
    reach = float(np.hypot(*shape))
    centre = np.array([shape[1] / 2, shape[0] / 2])
    if kind.street_spacing_px is None:
        if rng.random() < 0.6:
            offset = rng.uniform(-0.3, 0.3) * shape[0]
            _draw_street(
                road, marking, centre, angle_deg, offset, rng.uniform(10, 16), False, reach
            )
        return road > 0, marking > 0
    for family_angle in (angle_deg, angle_deg + 90):
        spacing = rng.uniform(*kind.street_spacing_px)
        first = rng.uniform(0, spacing) - spacing * np.ceil(reach / 2 / spacing)
        width = rng.uniform(12, 18)
        dashed = rng.random() < 0.5
        for offset in np.arange(first, reach / 2 + spacing, spacing):
            _draw_street(road, marking, centre, family_angle, offset, width, dashed, reach)
    return road > 0, (marking > 0) & (road > 0)


def _draw_street(
    road: np.ndarray,
    marking: np.ndarray,
    centre: np.ndarray,
    angle_deg: float,
    offset: float,
    width: float,
    dashed: bool,
    reach: float,
) -> None:
    """Draw a straight street at ``offset`` pixels from the centre line of direction ``angle``."""
    angle = np.radians(angle_deg)
    direction = np.array([np.cos(angle), np.sin(angle)])
    middle = centre + offset * np.array([-direction[1], direction[0]])
    start, end = middle - reach / 2 * direction, middle + reach / 2 * direction
    cv2.line(road, _point(start), _point(end), 1, thickness=max(1, round(width)))
    if dashed:
        for along in np.arange(-reach / 2, reach / 2, 14.0):
            dash_start = middle + along * direction
            cv2.line(marking, _point(dash_start), _point(dash_start + 7 * direction), 1, 1)


def _point(xy: np.ndarray) -> tuple[int, int]:
    """Integer pixel ``(x, y)`` for OpenCV drawing."""
    return int(round(xy[0])), int(round(xy[1]))


def _ground_cover(
    rng: np.random.Generator,
    shape: tuple[int, int],
    kind: PlaceKind,
    road: np.ndarray,
    angle: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Grass, soil and paving in smooth patches; crop fields with rows in rural tiles."""
    grass_share, soil_share, _ = kind.ground_shares
    patches = blob_noise(rng, shape, sigma_px=25) + 0.3 * blob_noise(rng, shape, sigma_px=5)
    order = np.argsort(patches.ravel()[::7])
    ranked = np.sort(patches.ravel()[::7])
    cut_grass = ranked[min(int(grass_share * len(order)), len(order) - 1)]
    cut_soil = ranked[min(int((grass_share + soil_share) * len(order)), len(order) - 1)]
    ground = np.full(shape, PAVED, dtype=np.uint8)
    ground[patches < cut_soil] = SOIL
    ground[patches < cut_grass] = GRASS
    field_rows = np.zeros(shape, dtype=np.float32)
    if kind.name == "rural":
        rows = np.arange(shape[0], dtype=np.float32)[:, None]
        cols = np.arange(shape[1], dtype=np.float32)[None, :]
        radians = np.radians(angle + rng.uniform(-20, 20))
        across = rows * np.float32(np.cos(radians)) - cols * np.float32(np.sin(radians))
        field = np.floor((across - across.min()) / rng.uniform(120, 260)).astype(int)
        cropped = rng.random(field.max() + 1) < 0.6
        crop = cropped[field] & (blob_noise(rng, shape, sigma_px=40) > -0.8)
        ground[crop] = CROP
        period = rng.uniform(5, 9)
        field_rows = np.where(crop, 0.5 + 0.5 * np.sin(2 * np.pi * across / period), 0).astype(
            np.float32
        )
    ground[road] = ROAD
    return ground, field_rows


def _plant_trees(
    rng: np.random.Generator, kind: PlaceKind, free: np.ndarray, area_scale: float
) -> np.ndarray:
    """``float32 [H, W]`` canopy heights of round tree crowns rooted on ``free`` pixels."""
    shape = free.shape
    heights = np.zeros(shape, dtype=np.float32)
    count = round(rng.integers(*kind.trees_per_tile, endpoint=True) * area_scale)
    free_pixels = np.flatnonzero(free.ravel())
    if count == 0 or free_pixels.size == 0:
        return heights
    cluster_centres = [divmod(int(p), shape[1]) for p in rng.choice(free_pixels, 3)]
    for _ in range(count):
        if rng.random() < 0.5:
            row, col = cluster_centres[rng.integers(3)]
            row, col = int(row + rng.normal(0, 35)), int(col + rng.normal(0, 35))
            if not (0 <= row < shape[0] and 0 <= col < shape[1] and free[row, col]):
                continue
        else:
            row, col = divmod(int(rng.choice(free_pixels)), shape[1])
        radius = rng.uniform(3, 12)
        top_height = float(np.clip(2.5 + 1.2 * radius + rng.normal(0, 2), 4, 20))
        _add_crown(heights, (row + 0.5, col + 0.5), radius, top_height)
    return heights


def _add_crown(heights: np.ndarray, centre: tuple[float, float], radius: float, top: float) -> None:
    """Raise ``heights`` to a dome-shaped crown (maximum with what is there)."""
    y, x = centre
    top_row, left = max(int(y - radius), 0), max(int(x - radius), 0)
    bottom, right = (
        min(int(y + radius) + 1, heights.shape[0]),
        min(int(x + radius) + 1, heights.shape[1]),
    )
    if top_row >= bottom or left >= right:
        return
    rows = np.arange(top_row, bottom)[:, None] + 0.5
    cols = np.arange(left, right)[None, :] + 0.5
    reach = 1 - ((rows - y) ** 2 + (cols - x) ** 2) / radius**2
    crown = np.where(reach > 0, top * (0.55 + 0.45 * np.sqrt(np.clip(reach, 0, 1))), 0)
    window = heights[top_row:bottom, left:right]
    np.maximum(window, crown.astype(np.float32), out=window)
