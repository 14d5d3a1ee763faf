"""Polygons of class maps: streamed, merged across block seams, in square metres, scored.

The module is imported whole (``poly.<name>``), so that each test fails on its own when a
name it needs is missing.
"""

import json
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
from pyproj import Geod
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from datamodules.rasters import RasterGrid
from fusion.scene import polygons as poly
from tests.fusion.scene.maps import (
    NAMES,
    UTM,
    blobs,
    components,
    pixels_of,
    read_polygons,
    write_map,
    write_scores,
)


def polygonize_scored(tmp_path: Path, classes: np.ndarray, scores: np.ndarray) -> tuple:
    """Polygons of a UTM class map in 32-pixel blocks with a score raster, read back."""
    written = poly.write_polygons(
        write_map(tmp_path, classes),
        tmp_path / "objects.gpkg",
        UTM,
        NAMES,
        block=32,
        scores=write_scores(tmp_path, scores),
    )
    return written, *read_polygons(tmp_path / "objects.gpkg")


def test_polygon_areas_are_geodesic_square_metres_on_a_geographic_grid(tmp_path: Path) -> None:
    step = 8.983e-5  # degrees: about 10 m at the equator
    west, north = 12.0, 0.001
    grid = RasterGrid(20, 20, CRS.from_epsg(4326), from_origin(west, north, step, step))
    classes = np.zeros((20, 20), np.uint8)
    classes[4:14, 5:15] = 1  # 10 x 10 pixels
    written = poly.write_polygons(
        write_map(tmp_path, classes, grid), tmp_path / "objects.gpkg", grid, NAMES
    )
    polygons, fields = read_polygons(tmp_path / "objects.gpkg")
    assert written == len(polygons) == 1
    lons = west + step * np.array([5, 15, 15, 5])
    lats = north - step * np.array([14, 14, 4, 4])
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)[0])
    assert 0.95e4 < expected < 1.0e4  # 100 pixels of about 10 x 9.9 m
    assert fields["area_m2"][0] == pytest.approx(expected, rel=0.01)
    assert fields["class_id"][0] == 1 and fields["class"][0] == "building"


@pytest.mark.parametrize(
    ("crs", "unit"),
    [("EPSG:32633", 1.0), ("EPSG:2263", 1200 / 3937)],  # metres; US survey feet
)
def test_polygon_areas_on_a_projected_grid_are_pixel_counts_times_pixel_area(
    tmp_path: Path, crs: str, unit: float
) -> None:
    grid = RasterGrid(100, 100, CRS.from_string(crs), UTM.transform)
    classes = blobs(0)
    poly.write_polygons(
        write_map(tmp_path, classes, grid), tmp_path / "objects.gpkg", grid, NAMES, block=32
    )
    polygons, fields = read_polygons(tmp_path / "objects.gpkg")
    labels = components(classes)
    pixel_area = (10.0 * unit) ** 2  # m²
    for polygon, class_id, area in zip(
        polygons, fields["class_id"], fields["area_m2"], strict=True
    ):
        pixels = pixels_of(polygon, class_id, labels, grid).sum()
        assert area == pytest.approx(pixels * pixel_area, rel=1e-9)


def test_an_object_across_block_seams_is_one_polygon_with_the_mean_score_of_its_pixels(
    tmp_path: Path,
) -> None:
    classes = np.zeros((100, 100), np.uint8)
    classes[20:80, 28:36] = 1  # a column across the seams at rows 32 and 64, and column 32
    classes[40:44, 20:70] = 1  # a bar across the column and the seams at columns 32 and 64
    classes[44:50, 36:40] = 2  # another class beside the column, across no seam: apart
    classes[90:96, 26:32] = 1  # left of the seam at column 32 ...
    classes[96:99, 32:40] = 1  # ... meeting this one right of it at a corner only: apart
    scores = np.random.default_rng(1).random((100, 100))
    written, polygons, fields = polygonize_scored(tmp_path, classes, scores)
    assert written == len(polygons) == 4
    labels = components(classes)
    for polygon, class_id, score, area in zip(
        polygons, fields["class_id"], fields["score"], fields["area_m2"], strict=True
    ):
        pixels = pixels_of(polygon, class_id, labels, UTM)
        assert (classes[pixels] == class_id).all()
        assert score == pytest.approx(scores[pixels].astype(np.float32).mean(), rel=1e-5)
        assert area == pytest.approx(pixels.sum() * 100.0)
    cross = np.argmax(fields["area_m2"])
    assert fields["area_m2"][cross] == pytest.approx((60 * 8 + 4 * 42) * 100.0)


def test_polygons_of_random_objects_are_their_components_with_mean_scores(
    tmp_path: Path,
) -> None:
    classes = blobs(2)
    scores = np.random.default_rng(3).random((100, 100)).astype(np.float32)
    scores[classes == poly.CLASS_NODATA] = np.nan
    written, polygons, fields = polygonize_scored(tmp_path, classes, scores)
    labels = components(classes)
    assert written == len(polygons) == sum(component.max() for component in labels.values())
    assert written > 20
    seen = set()
    for polygon, class_id, score in zip(polygons, fields["class_id"], fields["score"], strict=True):
        pixels = pixels_of(polygon, class_id, labels, UTM)
        seen.add((class_id, labels[class_id][pixels][0]))
        assert polygon.area == pytest.approx(pixels.sum() * 100.0)
        assert score == pytest.approx(scores[pixels].mean(), rel=1e-5)
    assert len(seen) == written  # each component once


def test_geojson_polygons_are_rfc7946_longitude_latitude(tmp_path: Path) -> None:
    classes = blobs(4)
    target = tmp_path / "objects.geojson"
    poly.write_polygons(write_map(tmp_path, classes), target, UTM, NAMES, block=32)
    collection = json.loads(target.read_text())
    assert "crs" not in collection
    west, south, east, north = transform_bounds(UTM.crs, "EPSG:4326", 500000, 4999000, 501000, 5e6)
    features = collection["features"]
    assert len(features) == sum(c.max() for c in components(classes).values())
    for feature in features:
        lon, lat = np.array(feature["geometry"]["coordinates"][0]).T
        assert (west - 1e-6 <= lon).all() and (lon <= east + 1e-6).all()
        assert (south - 1e-6 <= lat).all() and (lat <= north + 1e-6).all()
        # areas are still those of the pixels (computed on the reference grid)
        area = feature["properties"]["area_m2"]
        assert area / 100.0 == pytest.approx(round(area / 100.0), abs=1e-6)


@pytest.mark.parametrize(("suffix", "driver"), [("gpkg", "GPKG"), ("fgb", "FlatGeobuf")])
def test_polygon_files_keep_the_reference_crs_in_the_format_of_their_suffix(
    tmp_path: Path, suffix: str, driver: str
) -> None:
    target = tmp_path / f"objects.{suffix}"
    poly.write_polygons(write_map(tmp_path, blobs(5)), target, UTM, NAMES, block=32)
    info = pyogrio.read_info(target)
    assert info["driver"] == driver and info["crs"] == "EPSG:32633"
    assert list(info["fields"]) == ["class_id", "class", "area_m2"]  # no scores given
    left, bottom, right, top = info["total_bounds"]
    assert 500000 <= left < right <= 501000 and 4999000 <= bottom < top <= 5000000


@pytest.mark.parametrize("suffix", ["gpkg", "fgb", "geojson"])
def test_a_map_without_objects_gives_an_empty_polygon_file(tmp_path: Path, suffix: str) -> None:
    classes = np.zeros((100, 100), np.uint8)
    classes[:10] = poly.CLASS_NODATA
    target = tmp_path / f"objects.{suffix}"
    assert poly.write_polygons(write_map(tmp_path, classes), target, UTM, NAMES) == 0
    polygons, fields = read_polygons(target)
    assert polygons == []
    if suffix != "geojson":  # GeoJSON has no schema: its fields are those of its features
        assert list(fields) == ["class_id", "class", "area_m2"]
    assert pyogrio.read_info(target)["driver"] == poly.POLYGON_FORMATS[suffix].driver


def test_an_unknown_polygon_suffix_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"'\.shp'"):
        poly.write_polygons(write_map(tmp_path, blobs(5)), tmp_path / "objects.shp", UTM, NAMES)


def test_polygons_are_written_block_by_block(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes = np.zeros((100, 100), np.uint8)
    for top in (0, 32, 64):
        for left in (0, 32, 64):
            classes[top + 10 : top + 14, left + 10 : left + 14] = 1  # inside a block
    classes[60:70, 60:70] = 2  # across two seams
    calls = []
    write = pyogrio.raw.write

    def spy(path, geometry, *args, **kwargs):
        calls.append((len(geometry), kwargs.get("append", False)))
        return write(path, geometry, *args, **kwargs)

    monkeypatch.setattr(pyogrio.raw, "write", spy)
    target = tmp_path / "objects.gpkg"
    written = poly.write_polygons(write_map(tmp_path, classes), target, UTM, NAMES, block=32)
    assert written == 10 == pyogrio.read_info(target)["features"]
    # one write per block with objects inside it, then the object cut by the seams
    assert calls == [(1, False)] + [(1, True)] * 9
