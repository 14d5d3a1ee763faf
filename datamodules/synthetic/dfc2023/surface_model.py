"""The normalised DSM (height above ground) of a synthetic DFC2023 tile.

The reference nDSMs of the contest come from stereo matching at about 2 m and are resampled to the
image grid: the synthetic one is the scene's true roof and canopy heights plus a gently undulating
ground residual, smoothed to that resolution, with patches where matching went wrong (heights off
by a metre or two) and fine noise. Trees are as high as small buildings, which makes the nDSM a
strong but imperfect cue for buildings.
"""

from __future__ import annotations

import cv2
import numpy as np

from datamodules.synthetic.dfc2023.scene import Scene
from datamodules.synthetic.noise import blob_noise, fractal_noise


def render_ndsm(rng: np.random.Generator, scene: Scene) -> np.ndarray:
    """Render the nDSM of a tile.

    Args:
        rng: random source of this tile's surface model.
        scene: the tile's layout.

    Returns:
        ``float32 [1, H, W]`` heights above ground in metres (ground about 0).
    """
    shape = scene.ground.shape
    ground = 0.25 * blob_noise(rng, shape, sigma_px=40) + 0.08 * fractal_noise(rng, shape, 2.5)
    mismatch = blob_noise(rng, shape, sigma_px=12)
    excess = np.maximum(np.abs(mismatch) - 1.6, 0)
    matching_errors = (2.0 * np.sign(mismatch) * excess).astype(np.float32)
    surface = cv2.GaussianBlur(scene.height_m + ground + matching_errors, (0, 0), 1.5)
    surface += 0.1 * rng.standard_normal(shape, dtype=np.float32)
    return surface.astype(np.float32)[None]
