"""Tiny class maps and score rasters for the scene output and polygon tests."""

from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import shapely
from rasterio.crs import CRS
from rasterio.transform import from_origin, rowcol
from scipy import ndimage

from datamodules.rasters import RasterGrid
from fusion.scene import polygons as poly
from tests.data.geotiff import write_tif

UTM = RasterGrid(100, 100, CRS.from_epsg(32633), from_origin(500000.0, 5000000.0, 10.0, 10.0))
"""A 100 x 100 map of 10 m pixels: 4 x 4 blocks of 32 pixels (the last ones 4 wide)."""
NAMES = ("background", "building", "tree")


def write_map(folder: Path, classes: np.ndarray, grid: RasterGrid = UTM) -> Path:
    """A class map (uint8, 255: no data) on ``grid``."""
    return write_tif(
        folder / "classes.tif",
        classes.astype(np.uint8),
        crs=grid.crs.to_string(),
        transform=grid.transform,
        nodata=poly.CLASS_NODATA,
    )


def write_scores(folder: Path, scores: np.ndarray, grid: RasterGrid = UTM) -> Path:
    """A float32 score raster on ``grid``."""
    return write_tif(
        folder / "scores.tif",
        scores.astype(np.float32),
        crs=grid.crs.to_string(),
        transform=grid.transform,
    )


def read_polygons(path: Path) -> tuple[list[shapely.Geometry], dict[str, np.ndarray]]:
    """The polygons of a file and their attributes by name."""
    meta, _, geometries, values = pyogrio.raw.read(path)
    return list(shapely.from_wkb(geometries)), dict(zip(meta["fields"], values, strict=True))


def blobs(seed: int, shape: tuple[int, int] = (100, 100)) -> np.ndarray:
    """Smooth random objects of classes 1 and 2 on background, some no data: ``uint8 [H, W]``."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 2.5)
    classes = np.where(field > 0.52, 1, np.where(field < 0.47, 2, 0)).astype(np.uint8)
    classes[:5, -5:] = poly.CLASS_NODATA
    return classes


def components(classes: np.ndarray) -> dict[int, np.ndarray]:
    """The 4-connected components of each class other than 0: class -> labels ``[H, W]``."""
    return {
        int(k): ndimage.label(classes == k)[0]
        for k in np.unique(classes)
        if k not in (0, poly.CLASS_NODATA)
    }


def pixels_of(polygon: shapely.Geometry, class_id: int, labels: dict, grid: RasterGrid):
    """``bool [H, W]``: the pixels of the component holding ``polygon``."""
    point = polygon.point_on_surface()
    row, col = rowcol(grid.transform, point.x, point.y)
    component = labels[class_id]
    return component == component[row, col]
