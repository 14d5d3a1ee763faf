"""Write small GeoTIFFs for loader tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine, from_origin


def write_tif(
    path: Path,
    data: np.ndarray,
    crs: str | None = "EPSG:32632",
    origin: tuple[float, float] = (500000.0, 5000000.0),
    pixel: float = 10.0,
    nodata: float | None = None,
    transform: Affine | None = None,
) -> Path:
    """Write ``data`` ([C, H, W] or [H, W]) as a GeoTIFF and return its path.

    North-up from ``origin`` (west, north) with square ``pixel``s, unless ``transform`` is given.
    """
    data = data[None] if data.ndim == 2 else data
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=CRS.from_string(crs) if crs else None,
        transform=transform or from_origin(*origin, pixel, pixel),
        nodata=nodata,
    ) as dst:
        dst.write(data)
    return path
