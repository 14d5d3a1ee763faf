"""The SAR amplitude image of a synthetic DFC2023 tile (side-looking radar, 0.5 m pixels).

The radar looks from the east (towards -x) at 35 degrees incidence. Everything elevated is
displaced towards the sensor by ``height / tan(incidence)`` (layover), walls facing the sensor
add a bright streak from their foot towards the sensor, the dihedral formed by such a wall and the
ground adds a very bright line at the foot (double bounce), and the ground behind tall objects
lies in radar shadow. The image is smoothed to the sensor's 1 m resolution, shifted by a small
misregistration, and multiplied by strong, spatially correlated speckle. Values are
linear (``10 log10`` gives dB), about 0.003..1, with bright returns above 1.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.dfc2023.scene import CROP, GRASS, PAVED, PIXEL_SIZE_M, ROAD, SOIL, Scene
from datamodules.synthetic.noise import blob_noise
from datamodules.synthetic.raster_ops import occluding_height

INCIDENCE_DEG = 35.0
LOOKS = 1.0
NOISE_FLOOR = 0.005
MAX_MISREGISTRATION_PX = 2

GROUND_BACKSCATTER = {GRASS: 0.045, SOIL: 0.03, PAVED: 0.014, ROAD: 0.006, CROP: 0.06}
TREE_BACKSCATTER = 0.15


def render_sar(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """Render the SAR amplitude of a tile.

    Args:
        rng: random source of this tile's SAR image.
        scene: the tile's layout.

    Returns:
        ``float32 [1, H, W]`` linear backscatter.
    """
    shape = scene.ground.shape
    height = scene.height_m
    layover_px_per_m = 1 / np.tan(np.radians(INCIDENCE_DEG)) / PIXEL_SIZE_M
    table = np.array([GROUND_BACKSCATTER[c] for c in sorted(GROUND_BACKSCATTER)], np.float32)
    reflectivity = table[scene.ground] * np.exp(0.5 * blob_noise(rng, shape, sigma_px=8))
    reflectivity[scene.tree_height_m > 0.5] = TREE_BACKSCATTER
    roofs = scene.building_index > 0
    if scene.buildings:
        roof_backscatter = np.concatenate([[0.0], rng.uniform(0.02, 0.12, len(scene.buildings))])
        facing = np.array([0.0] + [-np.sin(np.radians(b.angle_deg)) for b in scene.buildings])
        towards_sensor = facing[scene.building_index] * scene.roof_side > 0.3
        reflectivity[roofs] = roof_backscatter[scene.building_index][roofs]
        reflectivity[roofs & towards_sensor] = 0.5

    drop = PIXEL_SIZE_M / np.tan(np.radians(INCIDENCE_DEG))
    max_steps = int(np.ceil(float(height.max()) / drop)) + 1
    in_shadow = occluding_height(height, (0, -1), drop, max_steps) > height + 0.3
    reflectivity[in_shadow] *= 0.05

    rows, cols = np.indices(shape)
    displaced = cols + np.round(height * layover_px_per_m).astype(np.int64)
    image = _accumulate(shape, rows.ravel(), displaced.ravel(), reflectivity.ravel())
    image += _sensor_facing_walls(rng, scene, layover_px_per_m)

    image = cv2.GaussianBlur(image, (0, 0), 1.2)
    shift = rng.integers(-MAX_MISREGISTRATION_PX, MAX_MISREGISTRATION_PX, 2, endpoint=True)
    image = cv2.warpAffine(
        image,
        np.float32([[1, 0, shift[1]], [0, 1, shift[0]]]),
        shape[::-1],
        borderMode=cv2.BORDER_REFLECT,
    )
    coarse = (-(-shape[0] // 2), -(-shape[1] // 2))
    speckle = rng.gamma(LOOKS, 1 / LOOKS, coarse).astype(np.float32)
    speckle = cv2.resize(speckle, (coarse[1] * 2, coarse[0] * 2), interpolation=cv2.INTER_LINEAR)
    image = image * speckle[: shape[0], : shape[1]] + NOISE_FLOOR * rng.exponential(1, shape)
    return image.astype(np.float32)[None]


def _sensor_facing_walls(
    rng: np.random.Generator, scene: Scene, layover_px_per_m: float
) -> np.ndarray:
    """Returns of the east walls (facing the sensor) and of their dihedral with the ground."""
    shape = scene.ground.shape
    height = scene.building_height_m
    east_neighbour = np.zeros_like(height)
    east_neighbour[:, :-1] = height[:, 1:]
    wall_height = np.where(scene.building_index > 0, height - east_neighbour, 0)
    rows, cols = np.nonzero(wall_height > 1.5)
    walls = np.zeros(shape, dtype=np.float32)
    if rows.size == 0:
        return walls
    foot = cols + 1
    samples = np.ceil(wall_height[rows, cols] * layover_px_per_m).astype(np.int64)
    sample_rows = np.repeat(rows, samples)
    offsets = np.arange(samples.sum()) - np.repeat(np.cumsum(samples) - samples, samples)
    storey_m = offsets / layover_px_per_m % 3.0
    brightness = np.where(storey_m < 0.6, 0.8, 0.2) * rng.uniform(0.5, 1.5, offsets.size)
    walls += _accumulate(shape, sample_rows, np.repeat(foot, samples) + offsets, brightness)
    walls += _accumulate(shape, rows, foot, rng.uniform(2.0, 8.0, rows.size))
    return walls


def _accumulate(
    shape: tuple[int, int], rows: np.ndarray, cols: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Sum ``values`` into an ``[H, W]`` image at ``(rows, cols)``, dropping what falls outside."""
    inside = (cols >= 0) & (cols < shape[1])
    flat = rows[inside] * shape[1] + cols[inside]
    summed = np.bincount(flat, weights=values[inside], minlength=shape[0] * shape[1])
    return summed.reshape(shape).astype(np.float32)
