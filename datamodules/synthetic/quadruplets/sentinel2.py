"""Sentinel-2 surface reflectance (B2, B3, B4, B8) of a synthetic region.

Each pixel mixes a few endmember spectra according to its land cover: soil and green crop by the
parcel's greenness, roofs and gardens by the built-up density of urban fabric (a fine-grained mix),
one roof material per industrial block (large uniform roofs), broadleaf and conifer per forest
stand. On top come per-parcel brightness, texture, terrain shading from the DEM (the product is
not terrain corrected), a little blur for the sensor's point spread, and the region's calibration
offsets and a patchy haze. Values are reflectance x 10000, never 0 (0 is the no-data value).
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.noise import blob_noise, fractal_noise
from datamodules.synthetic.quadruplets.land_cover_map import LandCoverMap
from datamodules.synthetic.quadruplets.regions import RegionStyle
from datamodules.synthetic.quadruplets.surface_types import code_index, code_table, is_between
from datamodules.synthetic.quadruplets.terrain import PIXEL_SIZE_M, Terrain

BANDS = ("B2", "B3", "B4", "B8")

# endmember spectra, reflectance x 10000 in B2 (blue), B3 (green), B4 (red), B8 (NIR)
SOIL = np.array([1000, 1250, 1550, 2200], dtype=np.float32)
GREEN_CROP = np.array([280, 600, 320, 4200], dtype=np.float32)
GRASS = np.array([420, 720, 520, 3300], dtype=np.float32)
DRY_GRASS = np.array([780, 1000, 1250, 2300], dtype=np.float32)
BROADLEAF = np.array([280, 520, 300, 3300], dtype=np.float32)
CONIFER = np.array([200, 380, 220, 2300], dtype=np.float32)
TILED_ROOF = np.array([650, 780, 1050, 1500], dtype=np.float32)
GREY_ROOF = np.array([1050, 1120, 1180, 1450], dtype=np.float32)
ASPHALT = np.array([700, 780, 830, 1050], dtype=np.float32)
BRIGHT_ROOF = np.array([1550, 1650, 1750, 2050], dtype=np.float32)
DARK_ROOF = np.array([560, 610, 640, 780], dtype=np.float32)
CONCRETE = np.array([1200, 1300, 1350, 1600], dtype=np.float32)
ROCK = np.array([1300, 1500, 1700, 2200], dtype=np.float32)
SAND = np.array([1700, 1950, 2200, 2500], dtype=np.float32)
SNOW = np.array([8500, 8600, 8500, 7600], dtype=np.float32)
CLEAR_WATER = np.array([450, 520, 330, 150], dtype=np.float32)
TURBID_WATER = np.array([650, 820, 700, 330], dtype=np.float32)
WETLAND = np.array([380, 620, 480, 1900], dtype=np.float32)
MOORLAND = np.array([470, 640, 640, 2100], dtype=np.float32)

BUILT_FRACTION: dict[int, float] = {
    11100: 0.92, 11210: 0.72, 11220: 0.5, 11230: 0.3, 11240: 0.15, 11300: 0.65,
}  # fmt: skip
"""Share of roofs and paving in a pixel of each urban-fabric class (the rest is gardens)."""


def simulate_sentinel2(
    rng: np.random.Generator, terrain: Terrain, land_cover: LandCoverMap, style: RegionStyle
) -> np.ndarray:
    """Render the Sentinel-2 bands of a region canvas.

    Args:
        rng: random source of this region's Sentinel-2 image.
        terrain: the canvas's terrain.
        land_cover: the canvas's reference map and parcels.
        style: the region's character (dryness, calibration, haze, hemisphere via the CRS).

    Returns:
        ``uint16 [4, H, W]`` reflectance x 10000 in B2, B3, B4, B8, in ``1..10000``.
    """
    codes, shape = land_cover.codes, land_cover.codes.shape
    parcel = land_cover.parcel_id
    parcel_draw = rng.random(land_cover.parcel_count).astype(np.float32)
    parcel_tone = rng.normal(0, 1, land_cover.parcel_count).astype(np.float32)
    grass = GRASS + (DRY_GRASS - GRASS) * style.dryness
    simple_spectra = {
        12210: ASPHALT, 12220: 0.8 * ASPHALT + 0.2 * grass, 12230: 0.6 * ASPHALT + 0.4 * ROCK,
        12300: CONCRETE, 12400: 0.3 * CONCRETE + 0.7 * grass, 13100: 1.1 * ROCK,
        13300: SOIL, 13400: 0.5 * SOIL + 0.5 * DRY_GRASS, 14100: 0.5 * grass + 0.5 * BROADLEAF,
        14200: 0.85 * GRASS + 0.15 * CONCRETE, 32000: 0.7 * MOORLAND + 0.3 * DRY_GRASS,
        33000: ROCK, 40000: WETLAND,
    }  # fmt: skip
    spectrum = code_table(simple_spectra, default=grass)[code_index(codes)]

    def per_parcel(values: np.ndarray, where: np.ndarray) -> np.ndarray:
        """Per-parcel values at the pixels ``where``, as a column ``[N, 1]``."""
        return values[parcel[where]][:, None]

    arable = (codes == 21000) | (codes == 24000)
    soil = SOIL * (1 + 0.12 * per_parcel(parcel_tone, arable))
    spectrum[arable] = _mix(soil, GREEN_CROP, per_parcel(land_cover.greenness, arable))
    orchard = codes == 22000
    soil = SOIL * (1 + 0.12 * per_parcel(parcel_tone, orchard))
    vigour = 0.35 + 0.3 * per_parcel(land_cover.greenness, orchard)
    spectrum[orchard] = _mix(soil, BROADLEAF, vigour)
    pasture = codes == 23000
    vigour = 0.6 + 0.4 * per_parcel(land_cover.greenness, pasture) - 0.4 * style.dryness
    spectrum[pasture] = _mix(DRY_GRASS, GRASS, vigour)
    forest = codes == 31000
    spectrum[forest] = _mix(BROADLEAF, CONIFER, per_parcel(parcel_draw, forest))

    # urban fabric: a fine-grained mix of roofs (tiles, grey, concrete) and gardens
    fabric = is_between(codes, 11000, 12000)
    built_table = code_table({code: [share] for code, share in BUILT_FRACTION.items()}, [0.0])
    built = built_table[code_index(codes[fabric])] + 0.1 * per_parcel(parcel_tone, fabric)
    built += 0.3 * blob_noise(rng, shape, 0.7)[fabric][:, None]
    roof_kind = np.digitize(blob_noise(rng, shape, sigma_px=0.8)[fabric], [-0.4, 0.6])
    roofs = np.stack([TILED_ROOF, GREY_ROOF, CONCRETE])[roof_kind]
    spectrum[fabric] = _mix(0.6 * grass + 0.4 * BROADLEAF, roofs, np.clip(built, 0, 1))

    # industrial estates: one roof material per block, with car parks and verges
    industrial = codes == 12100
    material = np.digitize(per_parcel(parcel_draw, industrial)[:, 0], [0.35, 0.6, 0.8, 0.9])
    roof = np.stack([BRIGHT_ROOF, CONCRETE, GREY_ROOF, DARK_ROOF, TILED_ROOF])[material]
    spectrum[industrial] = 0.65 * roof + 0.25 * ASPHALT + 0.1 * grass

    water = codes == 50000
    turbidity = (
        0.35 + 0.35 * blob_noise(rng, shape, sigma_px=20)[water] + 0.4 * terrain.river[water]
    )
    spectrum[water] = _mix(CLEAR_WATER, TURBID_WATER, np.clip(turbidity, 0, 1)[:, None])
    open_ground = codes == 33000
    spectrum[open_ground & (terrain.relative_height < 0.05)] = SAND
    if style.snow_line_m is not None:
        spectrum[open_ground & (terrain.elevation_m > style.snow_line_m)] = SNOW

    brightness = (1 + 0.12 * parcel_tone[parcel]) * (1 + 0.08 * fractal_noise(rng, shape, beta=2.0))
    brightness *= np.where(water, 1.0, terrain_shading(terrain.elevation_m, _sun_azimuth(style)))
    spectrum *= brightness[..., None]
    spectrum *= 1 + 0.1 * (rng.random(spectrum.shape, dtype=np.float32) - 0.5)  # std 3 %

    spectrum = cv2.GaussianBlur(spectrum, (0, 0), 0.5)
    thin_cloud = np.clip(1 + blob_noise(rng, shape, sigma_px=60), 0, None)
    haze = style.haze * np.array([1.0, 0.6, 0.35, 0.15], dtype=np.float32)
    spectrum = (
        spectrum * np.asarray(style.spectral_gain, dtype=np.float32) + thin_cloud[..., None] * haze
    )
    return np.clip(spectrum, 1, 10000).astype(np.uint16).transpose(2, 0, 1).copy()


def _mix(start: np.ndarray, end: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Linear mix ``start + (end - start) * weight`` of spectra (broadcasting)."""
    return start + (end - start) * weight


def terrain_shading(
    elevation_m: np.ndarray, sun_azimuth_deg: float, sun_elevation_deg: float = 40
) -> np.ndarray:
    """Relative illumination of sloping ground: 1 on flat ground, less on slopes facing away.

    Args:
        elevation_m: ``[H, W]`` elevations on the 10 m grid, north up.
        sun_azimuth_deg: direction of the sun, clockwise from north.
        sun_elevation_deg: height of the sun above the horizon.

    Returns:
        ``float32 [H, W]`` factors in ``0.3..1.6``.
    """
    d_row, d_col = np.gradient(elevation_m.astype(np.float32), PIXEL_SIZE_M)
    east, north = d_col, -d_row
    azimuth, elevation = np.radians(sun_azimuth_deg), np.radians(sun_elevation_deg)
    sun = (
        np.sin(azimuth) * np.cos(elevation),
        np.cos(azimuth) * np.cos(elevation),
        np.sin(elevation),
    )
    cos_incidence = (-east * sun[0] - north * sun[1] + sun[2]) / np.sqrt(east**2 + north**2 + 1)
    return np.clip(cos_incidence / np.sin(elevation), 0.3, 1.6).astype(np.float32)


def _sun_azimuth(style: RegionStyle) -> float:
    """Morning sun from the south-east, or from the north-east in the southern hemisphere."""
    return 30.0 if 32700 < style.epsg < 32800 else 150.0
