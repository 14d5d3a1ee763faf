"""Writing compact, reproducible GeoTIFF files.

Files are tiled and ZSTD-compressed with a predictor (RGB images may be JPEG-compressed instead);
GDAL writes no time stamp, so equal arrays give byte-identical files. Floating-point rasters are
first rounded, far below the noise of the simulated sensors: to a few mantissa bits for values
spanning decades (`round_mantissa`), to a fixed power-of-two step for values in physical
units (`round_to_step`). That lets the compressor work on otherwise incompressible noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS

_FLOAT_BITS = 23


def round_mantissa(values: np.ndarray, kept_bits: int) -> np.ndarray:
    """Round ``float32`` values to ``kept_bits`` bits of mantissa (relative step ``2**-kept_bits``).

    Args:
        values: ``float32`` array, any shape.
        kept_bits: mantissa bits to keep, 1..23.

    Returns:
        A new ``float32`` array of the same shape, rounded to nearest.

    Raises:
        ValueError: if ``values`` is not ``float32`` or ``kept_bits`` is out of range.
    """
    if values.dtype != np.float32:
        raise ValueError(f"round_mantissa needs float32 values, got {values.dtype}")
    if not 1 <= kept_bits <= _FLOAT_BITS:
        raise ValueError(f"kept_bits must be in 1..{_FLOAT_BITS}, got {kept_bits}")
    dropped = _FLOAT_BITS - kept_bits
    if dropped == 0:
        return values.copy()
    bits = np.ascontiguousarray(values).view(np.uint32)
    half = np.uint32(1 << (dropped - 1))
    keep_mask = np.uint32(~((1 << dropped) - 1) & 0xFFFFFFFF)
    return ((bits + half) & keep_mask).view(np.float32)


def round_to_step(values: np.ndarray, step_exponent: int) -> np.ndarray:
    """Round ``float32`` values to the nearest multiple of ``2**step_exponent``.

    Multiples of a power of two are exact in ``float32`` (for magnitudes below
    ``2**(24 + step_exponent)``) and leave the low mantissa bits zero.

    Args:
        values: ``float32`` array, any shape.
        step_exponent: base-2 logarithm of the step (-5 gives steps of 1/32).

    Returns:
        A new ``float32`` array of the same shape.
    """
    step = np.float32(2.0**step_exponent)
    return (np.round(values / step) * step).astype(np.float32)


def write_geotiff(
    path: Path,
    bands: np.ndarray,
    *,
    crs: CRS,
    transform: Affine,
    descriptions: Sequence[str],
    nodata: float | None = None,
    jpeg_quality: int | None = None,
) -> None:
    """Write a ``[bands, height, width]`` array as a georeferenced GeoTIFF.

    Args:
        path: output file; its folder is created when missing.
        bands: pixel values ``[C, H, W]``; the file takes their dtype.
        crs: coordinate reference system of the grid.
        transform: affine pixel-to-map transform of the grid.
        descriptions: one name per band (``VV``, ``B8``, ``elevation``...).
        nodata: value tagged as no data, or None for none.
        jpeg_quality: store a ``uint8`` RGB image with lossy JPEG (YCbCr) at this quality, as
            many satellite image products are, instead of lossless ZSTD.

    Raises:
        ValueError: if ``bands`` is not 3-D, ``descriptions`` does not name every band, or JPEG
            is asked for anything but ``uint8`` RGB.
    """
    if bands.ndim != 3 or len(descriptions) != bands.shape[0]:
        raise ValueError(
            f"expected [C, H, W] bands and C descriptions, got {bands.shape} and {descriptions}"
        )
    count, height, width = bands.shape
    if jpeg_quality is None:
        predictor = 3 if np.issubdtype(bands.dtype, np.floating) else 2
        encoding = {
            "interleave": "band",
            "compress": "zstd",
            "zstd_level": 1,
            "predictor": predictor,
        }
    elif bands.dtype == np.uint8 and count == 3:
        encoding = {
            "interleave": "pixel",
            "compress": "jpeg",
            "photometric": "ycbcr",
            "jpeg_quality": jpeg_quality,
        }
    else:
        raise ValueError(f"JPEG needs uint8 RGB bands, got {count} band(s) of {bands.dtype}")
    block = 256 if height % 256 == 0 and width % 256 == 0 else None
    layout = {"tiled": True, "blockxsize": block, "blockysize": block} if block else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        **encoding,
        **layout,
    ) as dst:
        dst.write(bands)
        for index, description in enumerate(descriptions, start=1):
            dst.set_band_description(index, description)
