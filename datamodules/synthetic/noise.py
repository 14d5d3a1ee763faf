"""Random fields for procedural scenes, shaped in the frequency domain.

Both fields are white noise filtered with an FFT, so their cost does not depend on the feature
size: ``fractal_noise`` has a power-law spectrum (terrain, texture), ``blob_noise`` a Gaussian one
(smooth patches a given number of pixels across). Both are periodic over the array, zero-mean and
scaled to unit standard deviation, ``float32``.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from scipy import fft


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], beta: float) -> np.ndarray:
    """Noise whose power spectrum falls as ``1 / f**beta``.

    Args:
        rng: source of the white noise.
        shape: ``(height, width)`` in pixels.
        beta: spectral exponent; about 2 gives rough texture, 3 smooth rolling terrain.

    Returns:
        ``float32 [height, width]`` field with mean 0 and standard deviation 1.
    """
    return _filtered_white_noise(rng, shape, lambda f: np.where(f > 0, f, np.inf) ** (-beta / 2))


def blob_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """White noise smoothed by a Gaussian kernel: blobs about ``2 * sigma_px`` pixels across.

    Args:
        rng: source of the white noise.
        shape: ``(height, width)`` in pixels.
        sigma_px: standard deviation of the smoothing kernel, in pixels.

    Returns:
        ``float32 [height, width]`` field with mean 0 and standard deviation 1.
    """
    if sigma_px < 3:
        field = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), sigma_px)
        return _standardised(field)
    # the field has no detail finer than sigma_px: draw it on a coarser grid and interpolate
    factor = int(np.clip(sigma_px // 2.5, 1, 8))
    coarse_shape = (-(-shape[0] // factor) + 1, -(-shape[1] // factor) + 1)
    coarse_sigma = sigma_px / factor
    field = _filtered_white_noise(
        rng, coarse_shape, lambda f: np.exp(-2 * (np.pi * coarse_sigma * f) ** 2) * (f > 0)
    )
    if factor == 1:
        return field[: shape[0], : shape[1]]
    size = (coarse_shape[1] * factor, coarse_shape[0] * factor)
    field = cv2.resize(field, size, interpolation=cv2.INTER_LINEAR)[: shape[0], : shape[1]]
    return _standardised(field)


def _filtered_white_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    amplitude: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """White noise multiplied in the frequency domain by ``amplitude(|f|)``, then normalised."""
    height, width = shape
    white = rng.standard_normal(shape, dtype=np.float32)
    radial_frequency = np.hypot(
        fft.fftfreq(height).astype(np.float32)[:, None],
        fft.rfftfreq(width).astype(np.float32)[None, :],
    )
    with np.errstate(divide="ignore"):
        spectrum = fft.rfft2(white) * amplitude(radial_frequency).astype(np.float32)
    return _standardised(fft.irfft2(spectrum, s=shape))


def _standardised(field: np.ndarray) -> np.ndarray:
    """``float32`` copy of ``field`` with mean 0 and standard deviation 1."""
    field = field.astype(np.float32)
    field -= field.mean()
    field /= max(float(field.std()), 1e-12)
    return field
