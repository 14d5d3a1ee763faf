"""Sentinel-1 GRD backscatter (VV, VH in dB) of a synthetic region.

Each land-cover class has a mean backscatter: calm water very low, bright double-bounce returns
from buildings, high cross-polarised volume scattering from forest, and crops and grass in between,
overlapping (their backscatter follows the parcel's biomass and soil moisture, not its class). The
mean is shifted by a weak terrain term (slopes facing the sensor are brighter), smoothed to the
sensor's resolution, and multiplied in linear power by gamma-distributed speckle of a few looks.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.noise import blob_noise
from datamodules.synthetic.quadruplets.land_cover_map import LandCoverMap
from datamodules.synthetic.quadruplets.regions import RegionStyle
from datamodules.synthetic.quadruplets.surface_types import code_index, code_table, is_between
from datamodules.synthetic.quadruplets.terrain import PIXEL_SIZE_M, Terrain

BANDS = ("VV", "VH")

EQUIVALENT_LOOKS = 4.4
"""Equivalent number of looks of Sentinel-1 IW GRD high-resolution products."""

MEAN_BACKSCATTER_DB: dict[int, tuple[float, float]] = {
    11100: (-1.0, -10.0), 11210: (-3.0, -12.0), 11220: (-4.5, -13.5), 11230: (-6.0, -15.0),
    11240: (-8.0, -16.5), 11300: (-3.0, -12.0), 12100: (-1.5, -10.5), 12210: (-13.0, -21.0),
    12220: (-11.5, -19.0), 12230: (-8.0, -16.0), 12300: (-4.0, -12.5), 12400: (-13.0, -21.0),
    13100: (-9.0, -18.0), 13300: (-10.0, -18.0), 13400: (-11.0, -18.0), 14100: (-8.5, -14.5),
    14200: (-11.0, -18.5), 22000: (-9.5, -16.5), 31000: (-7.5, -12.5), 32000: (-11.5, -18.5),
    33000: (-9.0, -17.0), 40000: (-9.0, -17.0), 50000: (-20.0, -27.0),
}  # fmt: skip
"""Mean (VV, VH) backscatter in dB of the classes whose response does not depend on crop state."""


def simulate_sentinel1(
    rng: np.random.Generator, terrain: Terrain, land_cover: LandCoverMap, style: RegionStyle
) -> np.ndarray:
    """Render the Sentinel-1 channels of a region canvas.

    Args:
        rng: random source of this region's Sentinel-1 image.
        terrain: the canvas's terrain.
        land_cover: the canvas's reference map and parcels.
        style: the region's character (calibration offset).

    Returns:
        ``float32 [2, H, W]`` VV and VH backscatter in dB.
    """
    codes, shape = land_cover.codes, land_cover.codes.shape
    parcel = land_cover.parcel_id
    parcel_offset_db = rng.normal(0, 1, land_cover.parcel_count).astype(np.float32)
    mean_db = code_table(MEAN_BACKSCATTER_DB, default=(-11.0, -18.0))[code_index(codes)]

    farmland = (codes == 21000) | (codes == 23000) | (codes == 24000)
    greenness = land_cover.greenness[parcel[farmland]]
    moisture = land_cover.moisture[parcel[farmland]]
    mean_db[farmland] = np.stack(
        [-13.5 + 4.0 * moisture + 1.5 * greenness, -22.0 + 6.5 * greenness + 1.5 * moisture],
        axis=-1,
    )

    built = is_between(codes, 11000, 12000) | (codes == 12100) | (codes == 12300)
    spread_db = np.where(built, np.float32(2.5), np.float32(0.8)) * parcel_offset_db[parcel]
    spread_db += _slope_towards_sensor_db(terrain.elevation_m) + style.backscatter_offset_db
    spread_db[built & (rng.random(shape, dtype=np.float32) < 0.05)] += 8.0  # point scatterers
    water = codes == 50000
    spread_db[water] += 2.5 * blob_noise(rng, shape, sigma_px=25)[water]  # wind on the water
    mean_db += spread_db[..., None]

    power = cv2.GaussianBlur(np.exp(mean_db * np.float32(np.log(10) / 10)), (0, 0), 0.7)
    power *= rng.standard_gamma(EQUIVALENT_LOOKS, power.shape, dtype=np.float32) / EQUIVALENT_LOOKS
    backscatter_db = np.float32(10) * np.log10(np.maximum(power, np.float32(1e-6)))
    return backscatter_db.transpose(2, 0, 1).copy()


def _slope_towards_sensor_db(elevation_m: np.ndarray) -> np.ndarray:
    """Brightening of slopes that face the sensor (ascending pass, looking east), in dB."""
    _, d_col = np.gradient(elevation_m.astype(np.float32), PIXEL_SIZE_M)
    # ground rising to the east faces a sensor that looks east from the west
    return np.clip(12.0 * d_col, -6.0, 6.0).astype(np.float32)
