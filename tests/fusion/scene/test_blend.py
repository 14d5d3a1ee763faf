from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from rasterio.crs import CRS
from rasterio.windows import Window

from datamodules.rasters import RasterGrid
from fusion.scene.blend import SceneAccumulator, blend_window

GRID = RasterGrid(112, 80, CRS.from_epsg(32633), Affine(10, 0, 500000, 0, -10, 5000000))


def test_blend_window_is_smooth_with_a_floor() -> None:
    weights = blend_window(32)
    assert weights.shape == (32, 32) and weights.dtype == np.float32
    assert weights.min() == pytest.approx(0.01**2) and weights.max() == pytest.approx(1, abs=0.01)
    np.testing.assert_allclose(weights, weights.T)
    np.testing.assert_allclose(weights, weights[::-1, ::-1])
    # Shifted by half a tile, the squared sine windows add up to a constant.
    plain = blend_window(32, floor=0.0)
    profile = plain[16] / np.sqrt(plain[16, 16])
    np.testing.assert_allclose(profile[:16] + profile[16:], 1.0, atol=1e-6)


def blended(tmp_path: Path, weights: np.ndarray) -> np.ndarray:
    """Blend tiles that each predict one random constant probability; return class 0's map."""
    rng = np.random.default_rng(0)
    accumulator = SceneAccumulator(tmp_path / f"sums{weights.min()}.tif", GRID, channels=2)
    for row in range(0, GRID.height - 16, 16):
        for col in range(-16, GRID.width, 16):  # the first column hangs over the edge
            value = rng.uniform()
            tile = np.stack([np.full((32, 32), value), np.full((32, 32), 1 - value)])
            bits = np.ones((32, 32), dtype=np.int64)
            accumulator.add(Window(col, row, 32, 32), tile.astype(np.float32), weights, bits)
    ((window, probabilities, bits),) = accumulator.blocks()
    accumulator.close()
    assert (window.width, window.height) == (GRID.width, GRID.height) and (bits == 1).all()
    np.testing.assert_allclose(probabilities.sum(0), 1.0, atol=1e-6)
    return probabilities[0]


def test_blending_has_no_seams(tmp_path: Path) -> None:
    smooth = blended(tmp_path, blend_window(32))
    steps = max(np.abs(np.diff(smooth, axis=0)).max(), np.abs(np.diff(smooth, axis=1)).max())
    # Plain averaging (uniform weights) jumps where a tile starts or ends: a seam.
    flat = blended(tmp_path, blend_window(32, floor=1.0))
    flat_steps = max(np.abs(np.diff(flat, axis=0)).max(), np.abs(np.diff(flat, axis=1)).max())
    assert flat_steps > 0.2
    assert steps < 0.12 and steps < flat_steps / 2
