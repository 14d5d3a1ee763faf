"""Polygons of a class map, streamed to GeoPackage, FlatGeobuf or GeoJSON.

The objects of a class map (4-connected pixels of a class other than background and no data)
are polygonized block by block: polygons finished inside a block are written with it, and only
those touching a block seam wait to be merged with their neighbours at the end, so memory does
not hold every polygon and no object is cut. Each polygon carries its ``class_id``, ``class``
name, ``area_m2`` (square metres: planar in a projected CRS, geodesic on a geographic grid) and,
when a score raster is given, ``score``: the mean of that raster over the object's pixels.
GeoPackage and FlatGeobuf keep the reference CRS; GeoJSON is RFC 7946 (WGS 84 longitude and
latitude, no ``crs`` member).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio.raw
import pyproj
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from affine import Affine
from rasterio.windows import Window
from scipy import ndimage

from datamodules.rasters import RasterGrid
from fusion.scene.blend import BLOCK

CLASS_NODATA = 255
"""Class-map value where no input had data."""


@dataclass(frozen=True)
class PolygonFormat:
    """How the polygons of one file suffix are written.

    Attributes:
        driver: the OGR driver.
        lonlat: coordinates in WGS 84 longitude, latitude (else in the reference CRS).
        batch: finished polygons gathered before a write. GDAL appends to a GeoPackage in
            place but rewrites a whole FlatGeobuf or GeoJSON file on each append, so those
            are written in few large batches (memory holds at most one).
        options: layer creation options.
    """

    driver: str
    lonlat: bool = False
    batch: int = 1
    options: dict[str, str] = field(default_factory=dict)


POLYGON_FORMATS = {
    "gpkg": PolygonFormat("GPKG"),
    "fgb": PolygonFormat("FlatGeobuf", batch=50_000),
    "geojson": PolygonFormat("GeoJSON", lonlat=True, batch=50_000, options={"RFC7946": "YES"}),
}
"""Polygon formats by file suffix; the first is the default."""


def polygon_format(path: Path) -> PolygonFormat:
    """The format of a polygon file, from its suffix.

    Raises:
        ValueError: naming the suffix if it is none of ``POLYGON_FORMATS``.
    """
    suffix = path.suffix.lower().removeprefix(".")
    if suffix not in POLYGON_FORMATS:
        raise ValueError(
            f"polygons {path.name}: unknown format {path.suffix!r}, "
            f"use one of {', '.join('.' + name for name in POLYGON_FORMATS)}"
        )
    return POLYGON_FORMATS[suffix]


@dataclass(frozen=True)
class Polygons:
    """Objects of the class map as polygons in its pixel coordinates, with their score sums.

    Attributes:
        class_ids: ``int64 [N]`` class of each polygon.
        shapes: ``object [N]`` shapely polygons, in pixel coordinates (column, row) of the map.
        score_sums: ``float64 [N]`` sum of the scores over each polygon's pixels.
        score_counts: ``int64 [N]`` its pixels with a finite score.
    """

    class_ids: np.ndarray
    shapes: np.ndarray
    score_sums: np.ndarray
    score_counts: np.ndarray

    def __len__(self) -> int:
        return len(self.class_ids)

    def __getitem__(self, index: np.ndarray) -> Polygons:
        return Polygons(
            self.class_ids[index],
            self.shapes[index],
            self.score_sums[index],
            self.score_counts[index],
        )

    @classmethod
    def concatenate(cls, parts: Sequence[Polygons]) -> Polygons:
        """All polygons of ``parts``, in order (none for no parts)."""
        if not parts:
            return cls(
                np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0), np.zeros(0, np.int64)
            )
        columns = (column.name for column in dataclasses.fields(cls))
        return cls(*(np.concatenate([getattr(part, name) for part in parts]) for name in columns))

    def scores(self) -> np.ndarray:
        """``float64 [N]`` mean score of each polygon (NaN: no finite score)."""
        means = np.full(len(self), np.nan)
        np.divide(self.score_sums, self.score_counts, out=means, where=self.score_counts > 0)
        return means


def block_polygons(values: np.ndarray, scores: np.ndarray | None, window: Window) -> Polygons:
    """The objects of one block: a polygon per 4-connected component of a class other than 0.

    Args:
        values: ``uint8 [h, w]`` class ids of the block (``CLASS_NODATA``: no data).
        scores: ``float32 [h, w]`` scores of the block (NaN: none), or None.
        window: the block's window on the map.
    """
    labels = np.zeros(values.shape, np.int32)  # [h, w] component id, 0: no object
    class_of = [0]  # class of each component id
    for value in np.unique(values):
        if value in (0, CLASS_NODATA):
            continue
        components, count = ndimage.label(values == value)  # 4-connected
        inside = components > 0
        labels[inside] = components[inside] + (len(class_of) - 1)
        class_of += [int(value)] * count
    found = list(
        rasterio.features.shapes(
            labels,
            mask=labels > 0,
            connectivity=4,
            transform=Affine.translation(window.col_off, window.row_off),
        )
    )
    ids = np.array([int(label) for _, label in found], dtype=np.int64)  # one per component
    shapes = np.array([shapely.geometry.shape(geometry) for geometry, _ in found], dtype=object)
    if scores is None:
        sums, counts = np.zeros(len(ids)), np.zeros(len(ids), np.int64)
    else:
        finite = np.isfinite(scores)
        sums = np.bincount(labels[finite], scores[finite], minlength=len(class_of))[ids]
        counts = np.bincount(labels[finite], minlength=len(class_of))[ids]
    return Polygons(np.array(class_of, np.int64)[ids], shapes, sums, counts)


def at_block_seams(shapes: np.ndarray, window: Window, grid: RasterGrid) -> np.ndarray:
    """``bool [N]``: which polygons of a block touch a seam with another block.

    The map's own edges are no seams.
    """
    left, top = window.col_off, window.row_off
    right, bottom = left + window.width, top + window.height
    bounds = shapely.bounds(shapes).reshape(-1, 4)  # [N, 4] left, top, right, bottom (pixels)
    return (
        ((bounds[:, 0] == left) & (left > 0))
        | ((bounds[:, 1] == top) & (top > 0))
        | ((bounds[:, 2] == right) & (right < grid.width))
        | ((bounds[:, 3] == bottom) & (bottom < grid.height))
    )


def merge_across_seams(pieces: Polygons) -> Polygons:
    """Merge polygons cut by block seams into the objects they are parts of.

    Pieces of a class that share an edge become one polygon; pieces that meet at a corner
    only stay apart, as 4-connected pixels do. A merged polygon's score sums and counts are
    those of its pieces together.
    """
    merged = []
    for value in np.unique(pieces.class_ids):
        of_class = pieces[pieces.class_ids == value]
        parts = shapely.get_parts(shapely.unary_union(of_class.shapes))
        # A point inside a piece lies inside the one merged part holding the piece.
        piece, part = shapely.STRtree(parts).query(
            shapely.point_on_surface(of_class.shapes), predicate="intersects"
        )
        owner = np.zeros(len(of_class), np.int64)
        owner[piece] = part
        merged.append(
            Polygons(
                np.full(len(parts), value, np.int64),
                parts,
                np.bincount(owner, of_class.score_sums, minlength=len(parts)),
                np.bincount(owner, of_class.score_counts, minlength=len(parts)).astype(np.int64),
            )
        )
    return Polygons.concatenate(merged)


def square_metres(shapes: np.ndarray, crs: pyproj.CRS | None) -> np.ndarray:
    """``float64 [N]`` areas of polygons in the coordinates of ``crs``, square metres.

    A projected CRS: the planar area times the square of its linear unit in metres. A
    geographic one (longitude, latitude): the geodesic area on its ellipsoid. Another CRS, or
    none: NaN.
    """
    if crs is None or not (crs.is_projected or crs.is_geographic):
        return np.full(len(shapes), np.nan)
    unit = crs.axis_info[0].unit_conversion_factor  # metres, or radians, per unit
    if crs.is_projected:
        return shapely.area(shapes) * unit**2
    geod = crs.get_geod()
    degrees = shapely.transform(shapes, lambda xy: xy * math.degrees(unit))
    return np.array([abs(geod.geometry_area_perimeter(shape)[0]) for shape in degrees], float)


class PolygonFile:
    """A polygon file (`POLYGON_FORMATS`) filled batch by batch: pyogrio writes, then appends.

    Args:
        target: the file to write; its suffix gives the format.
        grid: the reference grid, in whose pixel coordinates the polygons come.
        class_names: names of the class ids.
        scores: whether the polygons carry a ``score``.

    Raises:
        ValueError: for an unknown suffix, or GeoJSON (longitude, latitude) from a grid
            without a CRS.
    """

    def __init__(
        self, target: Path, grid: RasterGrid, class_names: Sequence[str], scores: bool
    ) -> None:
        self.format = polygon_format(target)
        if self.format.lonlat and grid.crs is None:
            raise ValueError(f"polygons {target.name}: GeoJSON needs a grid with a CRS")
        self.target = target
        self.grid = grid
        self.class_names = tuple(class_names)
        self.scores = scores
        self.crs = None if grid.crs is None else pyproj.CRS.from_user_input(grid.crs)
        if self.format.lonlat:
            self.to_lonlat = pyproj.Transformer.from_crs(self.crs, "OGC:CRS84", always_xy=True)
        self.pending: list[Polygons] = []
        self.written = 0
        self.started = False

    def add(self, polygons: Polygons) -> None:
        """Queue finished polygons; write the queue once it holds a batch."""
        self.pending.append(polygons)
        if sum(len(queued) for queued in self.pending) >= self.format.batch:
            self.flush()

    def flush(self) -> None:
        """Write the queued polygons (the first write creates the file, even without any)."""
        polygons = Polygons.concatenate(self.pending)
        self.pending = []
        if self.started and not len(polygons):
            return
        t = self.grid.transform
        matrix, offset = np.array([[t.a, t.b], [t.d, t.e]]), np.array([t.c, t.f])
        shapes = shapely.transform(polygons.shapes, lambda xy: xy @ matrix.T + offset)
        names = [
            self.class_names[k] if k < len(self.class_names) else str(k) for k in polygons.class_ids
        ]
        fields = {
            "class_id": polygons.class_ids.astype(np.int32),
            "class": np.array(names, dtype=object),
            "area_m2": square_metres(shapes, self.crs),
        }
        if self.scores:
            fields["score"] = polygons.scores()
        crs = None if self.crs is None else self.grid.crs.to_wkt()
        if self.format.lonlat:
            shapes = shapely.transform(
                shapes, lambda xy: np.column_stack(self.to_lonlat.transform(xy[:, 0], xy[:, 1]))
            )
            crs = "OGC:CRS84"
        self.target.parent.mkdir(parents=True, exist_ok=True)
        pyogrio.raw.write(
            self.target,
            shapely.to_wkb(shapes),
            field_data=list(fields.values()),
            fields=list(fields),
            driver=self.format.driver,
            geometry_type="Polygon",
            promote_to_multi=False,
            crs=crs,
            append=self.started,
            layer_options=self.format.options,
        )
        self.started = True
        self.written += len(polygons)

    def close(self) -> int:
        """Write what is queued; return the number of polygons written."""
        self.flush()
        return self.written


def write_polygons(
    classes: Path,
    target: Path,
    grid: RasterGrid,
    class_names: Sequence[str],
    block: int = BLOCK,
    scores: Path | None = None,
) -> int:
    """The objects of a class map (4-connected pixels of a class other than 0) as polygons.

    The map is polygonized block by block. Polygons inside a block are written with it;
    those touching a block seam are kept and merged with their neighbours across it at the
    end, so no object is cut and memory holds only the polygons along seams. The format
    follows the suffix of ``target`` (`POLYGON_FORMATS`): GeoPackage and FlatGeobuf in the
    reference CRS, GeoJSON in WGS 84 longitude, latitude (RFC 7946). Each polygon has its
    ``class_id``, ``class`` name, ``area_m2`` (`square_metres`) and, with ``scores``, its
    ``score``: the mean of the scores over its pixels.

    Args:
        classes: the class map (on ``grid``).
        target: the polygon file to write (``.gpkg``, ``.fgb`` or ``.geojson``).
        grid: the reference grid.
        class_names: names of the class ids.
        block: side of the polygonized blocks, pixels.
        scores: a float32 raster on ``grid``, per pixel the probability of its class
            (`SceneWriter`'s ``scores``), or None: no ``score``.

    Returns:
        The number of polygons written.

    Raises:
        ValueError: for an unknown suffix, or GeoJSON from a grid without a CRS.
    """
    file = PolygonFile(target, grid, class_names, scores is not None)
    at_seams = []
    with ExitStack() as opened:
        class_map = opened.enter_context(rasterio.open(classes))
        score_map = None if scores is None else opened.enter_context(rasterio.open(scores))
        for row in range(0, grid.height, block):
            for col in range(0, grid.width, block):
                window = Window(
                    col, row, min(block, grid.width - col), min(block, grid.height - row)
                )
                polygons = block_polygons(
                    class_map.read(1, window=window),
                    None if score_map is None else score_map.read(1, window=window),
                    window,
                )
                seams = at_block_seams(polygons.shapes, window, grid)
                at_seams.append(polygons[seams])
                file.add(polygons[~seams])
    file.add(merge_across_seams(Polygons.concatenate(at_seams)))
    return file.close()
