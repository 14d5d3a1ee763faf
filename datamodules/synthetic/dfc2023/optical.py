"""The RGB image of a synthetic DFC2023 tile (an orthorectified 0.5 m satellite image).

Ground, roofs and tree crowns get their colours with texture; gabled roofs are lit on the side
facing the sun, roof edges are darker, cars sit on the roads. Buildings and trees cast shadows
away from a fixed sun (south-east, 50 degrees high) with a length proportional to their height.
Each tile then gets its own colour balance, haze, blur and noise, as images from different
satellites and cities do.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.dfc2023.scene import CROP, GRASS, PAVED, PIXEL_SIZE_M, ROAD, SOIL, Scene
from datamodules.synthetic.noise import blob_noise, fractal_noise
from datamodules.synthetic.raster_ops import occluding_height

SUN_STEP = (-1, -1)
"""Pixel step in the direction shadows fall (towards the north-west: the sun is south-east)."""

SUN_ELEVATION_DEG = 50.0

GROUND_COLOURS = {
    GRASS: (88, 112, 60),
    SOIL: (146, 126, 100),
    PAVED: (152, 150, 144),
    ROAD: (90, 91, 95),
    CROP: (104, 130, 66),
}
TREE_COLOUR = np.array([50, 76, 42], dtype=np.float32)
LANE_COLOUR = np.array([222, 222, 214], dtype=np.float32)
CAR_COLOURS = np.array(
    [[230, 230, 228], [30, 30, 34], [140, 140, 144], [160, 30, 30], [40, 60, 120]], dtype=np.float32
)
SHADOW_FACTOR = np.array([0.42, 0.45, 0.56], dtype=np.float32)


def render_rgb(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """Render the RGB image of a tile.

    Args:
        rng: random source of this tile's optical image.
        scene: the tile's layout.

    Returns:
        ``uint8 [3, H, W]`` red, green, blue.
    """
    shape = scene.ground.shape
    dryness = rng.uniform(0, 0.6)
    colours = np.array([GROUND_COLOURS[c] for c in sorted(GROUND_COLOURS)], dtype=np.float32)
    dry_grass = np.array([150, 140, 96], dtype=np.float32)
    colours[GRASS] += (dry_grass - colours[GRASS]) * dryness
    colours[CROP] += (dry_grass - colours[CROP]) * dryness * 0.5
    rgb = colours[scene.ground]
    crop = scene.ground == CROP
    rgb[crop] *= (0.82 + 0.3 * scene.field_rows[crop])[:, None]
    rgb *= (1 + 0.1 * fractal_noise(rng, shape, beta=2.2))[..., None]
    rgb[scene.lane_marking] = LANE_COLOUR
    _add_cars(rng, rgb, scene)

    trees = scene.tree_height_m > 0.5
    leaves = 1 + 0.18 * blob_noise(rng, shape, sigma_px=1.2)[trees]
    rgb[trees] = TREE_COLOUR * (_sunlit(scene.tree_height_m, 0.25)[trees] * leaves)[:, None]

    roofs = scene.building_index > 0
    if scene.buildings:
        index = scene.building_index[roofs]
        roof_colours = np.array([(0, 0, 0)] + [b.roof_colour for b in scene.buildings], np.float32)
        side_light = np.array([0.0] + [_gable_lighting(b.angle_deg) for b in scene.buildings])
        lighting = 1 + side_light[index] * scene.roof_side[roofs]
        lighting *= 1 + 0.04 * rng.standard_normal(index.size)
        rgb[roofs] = roof_colours[index] * lighting[:, None].astype(np.float32)
        edges = roofs & ~(cv2.erode(roofs.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0)
        rgb[edges] *= 0.82

    height = scene.height_m
    drop = np.hypot(*SUN_STEP) * PIXEL_SIZE_M * np.tan(np.radians(SUN_ELEVATION_DEG))
    max_steps = int(np.ceil(float(height.max()) / drop)) + 1
    in_shadow = occluding_height(height, SUN_STEP, drop, max_steps) > height + 0.3
    shade = cv2.GaussianBlur(in_shadow.astype(np.float32), (0, 0), 0.7)[..., None]
    rgb *= 1 - shade * (1 - SHADOW_FACTOR)

    gain = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    haze = rng.uniform(0, 25)
    rgb = cv2.GaussianBlur(rgb * gain + np.float32(haze), (0, 0), 0.6)
    rgb += 5.2 * (rng.random(rgb.shape, dtype=np.float32) - 0.5)  # sensor noise, std 1.5
    return np.clip(rgb, 0, 255).astype(np.uint8).transpose(2, 0, 1).copy()


def _sunlit(height_m: np.ndarray, strength: float) -> np.ndarray:
    """Brightness ``1 +- strength`` of a surface by how much it faces the sun."""
    d_row, d_col = np.gradient(cv2.GaussianBlur(height_m, (0, 0), 1.0))
    # the height falls towards the sun (against the shadow step) on sunlit slopes
    towards_sun = (d_row * SUN_STEP[0] + d_col * SUN_STEP[1]) / np.hypot(*SUN_STEP)
    return (1 + strength * np.tanh(towards_sun)).astype(np.float32)


def _gable_lighting(angle_deg: float) -> float:
    """Brightening of the roof side whose across-ridge coordinate is positive (negative: darker).

    The positive side of a footprint faces the direction ``(-sin a, cos a)`` in image
    coordinates; it is lit as much as that direction points away from the shadows.
    """
    angle = np.radians(angle_deg)
    facing = np.array([-np.sin(angle), np.cos(angle)])
    towards_sun = -np.array(SUN_STEP[::-1], dtype=float) / np.hypot(*SUN_STEP)
    return float(0.2 * facing @ towards_sun)


def _add_cars(rng: np.random.Generator, rgb: np.ndarray, scene: Scene) -> None:
    """Paint small car-sized rectangles on the roads, aligned with the streets."""
    road_pixels = np.flatnonzero((scene.ground == ROAD).ravel())
    if road_pixels.size == 0:
        return
    width = scene.ground.shape[1]
    for pixel in rng.choice(road_pixels, size=road_pixels.size // 2500):
        row, col = divmod(int(pixel), width)
        angle = scene.street_angle_deg + (90 if rng.random() < 0.5 else 0)
        corners = cv2.boxPoints(((col, row), (9, 4), angle))
        colour = CAR_COLOURS[rng.integers(len(CAR_COLOURS))]
        cv2.fillPoly(rgb, [np.round(corners).astype(np.int32)], colour.tolist())
