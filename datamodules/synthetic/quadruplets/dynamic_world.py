"""A Dynamic World label map of a synthetic region: a degraded reading of the reference map.

Dynamic World classifies land cover, not land use, so each UrbanAtlas class is seen as the cover
it mostly has: urban fabric and industrial estates both as ``built`` (it cannot tell them apart),
parks as ``trees`` or ``grass``, pastures as ``grass`` like natural grassland, fallow fields as
``bare``, wetlands as ``flooded_vegetation``. Parcel-based classes pick their cover per parcel,
natural ones in smooth patches. Being itself a model output, the map then gets blobby errors
(confusions between similar covers) and a mode filter that smooths it and erases thin roads.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from datamodules.landcover import DYNAMIC_WORLD_CLASSES
from datamodules.synthetic.noise import blob_noise
from datamodules.synthetic.quadruplets.land_cover_map import LandCoverMap
from datamodules.synthetic.quadruplets.regions import RegionStyle
from datamodules.synthetic.quadruplets.surface_types import code_index, code_table
from datamodules.synthetic.quadruplets.terrain import Terrain
from datamodules.synthetic.raster_ops import mode_filter

WATER, TREES, GRASS, FLOODED, CROPS, SHRUB, BUILT, BARE, SNOW = range(len(DYNAMIC_WORLD_CLASSES))

COVER_PROBABILITIES: dict[int, dict[int, float]] = {
    11100: {BUILT: 0.97, GRASS: 0.03},
    11210: {BUILT: 0.9, TREES: 0.06, GRASS: 0.04},
    11220: {BUILT: 0.85, TREES: 0.1, GRASS: 0.05},
    11230: {BUILT: 0.65, TREES: 0.2, GRASS: 0.15},
    11240: {BUILT: 0.45, TREES: 0.3, GRASS: 0.25},
    11300: {BUILT: 0.6, GRASS: 0.4},
    12100: {BUILT: 0.93, BARE: 0.07},
    12210: {BUILT: 0.8, BARE: 0.1, GRASS: 0.1},
    12220: {BUILT: 0.8, BARE: 0.1, GRASS: 0.1},
    12230: {BUILT: 0.5, BARE: 0.3, GRASS: 0.2},
    12300: {BUILT: 0.9, BARE: 0.1},
    12400: {GRASS: 0.55, BUILT: 0.35, BARE: 0.1},
    13100: {BARE: 0.8, BUILT: 0.1, SHRUB: 0.1},
    13300: {BARE: 0.6, BUILT: 0.3, GRASS: 0.1},
    13400: {GRASS: 0.5, BARE: 0.25, SHRUB: 0.25},
    14100: {TREES: 0.5, GRASS: 0.5},
    14200: {GRASS: 0.8, BUILT: 0.1, BARE: 0.1},
    21000: {CROPS: 0.86, GRASS: 0.08, BARE: 0.06},
    22000: {CROPS: 0.45, SHRUB: 0.3, TREES: 0.25},
    23000: {GRASS: 0.85, CROPS: 0.15},
    24000: {CROPS: 0.55, GRASS: 0.35, TREES: 0.1},
    31000: {TREES: 0.96, SHRUB: 0.03, GRASS: 0.01},
    32000: {GRASS: 0.5, SHRUB: 0.5},
    33000: {BARE: 0.85, SHRUB: 0.1, GRASS: 0.05},
    40000: {FLOODED: 0.7, GRASS: 0.15, WATER: 0.15},
    50000: {WATER: 0.99, FLOODED: 0.01},
}
"""UrbanAtlas code -> Dynamic World class -> probability of being seen as that class."""

PER_PARCEL_CODES = frozenset({12100, 12300, 13300, 13400, 14200, 21000, 22000, 23000, 24000})
"""Classes whose cover is chosen once per parcel (field, block); the others vary in patches."""

CONFUSED_WITH: tuple[int, ...] = (FLOODED, SHRUB, CROPS, GRASS, GRASS, GRASS, BARE, BUILT, BARE)
"""For each Dynamic World class, the class it is mistaken for in the model's error patches."""

_FALLOW_GREENNESS = 0.12


def simulate_dynamic_world(
    rng: np.random.Generator, terrain: Terrain, land_cover: LandCoverMap, style: RegionStyle
) -> np.ndarray:
    """Derive the Dynamic World label map of a region canvas.

    Args:
        rng: random source of this region's Dynamic World map.
        terrain: the canvas's terrain (snow above the snow line).
        land_cover: the canvas's reference map and parcels.
        style: the region's character (snow line).

    Returns:
        ``uint8 [H, W]`` Dynamic World classes 0..8.
    """
    codes, shape = land_cover.codes, land_cover.codes.shape
    per_parcel = rng.random(land_cover.parcel_count).astype(np.float32)[land_cover.parcel_id]
    in_patches = ndtr(blob_noise(rng, shape, sigma_px=2.5)).astype(np.float32)
    parcel_based = np.isin(codes, list(PER_PARCEL_CODES))
    draw = np.where(parcel_based, per_parcel, in_patches)

    cumulative = np.cumsum(code_table(_probability_rows(), [0.0] * 8 + [1.0]), axis=1)
    rows = code_index(codes)
    labels = np.zeros(shape, dtype=np.uint8)
    for dw_class in range(len(DYNAMIC_WORLD_CLASSES) - 1):
        labels += draw >= cumulative[:, dw_class][rows]

    fallow = (codes == 21000) & (land_cover.greenness[land_cover.parcel_id] < _FALLOW_GREENNESS)
    labels[fallow & (per_parcel < 0.6)] = BARE
    if style.snow_line_m is not None:
        labels[(codes == 33000) & (terrain.elevation_m > style.snow_line_m)] = SNOW

    errors = blob_noise(rng, shape, sigma_px=8) > 2.0
    labels[errors] = np.asarray(CONFUSED_WITH, dtype=np.uint8)[labels[errors]]
    return mode_filter(labels, len(DYNAMIC_WORLD_CLASSES), size=3)


def _probability_rows() -> dict[int, list[float]]:
    """The probability table as one row of nine class probabilities per code."""
    rows = {}
    for code, probabilities in COVER_PROBABILITIES.items():
        row = [0.0] * len(DYNAMIC_WORLD_CLASSES)
        for dw_class, probability in probabilities.items():
            row[dw_class] = probability
        rows[code] = row
    return rows
