"""What ``fusion predict-scene`` writes: Cloud-Optimized GeoTIFFs, polygons and a quick-look.

From ``--out map.tif``:

- ``map.tif``: the class map, uint8 class ids with a colour table, 255 where no input had data;
- ``map_probabilities.tif`` (``--probabilities``): one band per class, float32 in [0, 1]
  (NaN: no data) or uint8 percent (255: no data);
- ``map_modalities.tif`` (``--modality_map``): bit m (the checkpoint's modality order) set
  where modality m held data, 0 where none did (no data);
- ``map_polygons.geojson`` (instance models): the predicted objects (connected pixels of a
  class other than background) as polygons in the reference CRS;
- ``map.png``: a quick-look of the class map and of the modalities used.

Rasters are written block by block into temporary tiled GeoTIFFs and then copied to COGs
(GDAL's COG driver: 512-pixel blocks, DEFLATE, overviews), all on the reference grid.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
import shapely
from affine import Affine
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling
from rasterio.windows import Window

from datamodules.rasters import RasterGrid
from fusion.scene.blend import BLOCK

CLASS_NODATA = 255
"""Class-map value where no input had data."""
PERCENT_NODATA = 255
"""No-data value of uint8 (percent) probabilities."""


@dataclass(frozen=True)
class OutputPaths:
    """The files of one prediction; None: not written."""

    classes: Path
    probabilities: Path | None = None
    modalities: Path | None = None
    polygons: Path | None = None
    quicklook: Path | None = None

    @classmethod
    def beside(
        cls,
        out: str | Path,
        probabilities: bool = False,
        modality_map: bool = False,
        polygons: bool = False,
        quicklook: bool = True,
    ) -> OutputPaths:
        """The paths derived from the class map's path ``out``.

        Raises:
            ValueError: if ``out`` is not a GeoTIFF path (``.tif``/``.tiff``): the class map is
                one, and a ``.png`` would be overwritten by the quick-look of the same name.
        """
        out = Path(out)
        if out.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(
                f"--out {out}: the class map is a GeoTIFF, name it .tif or .tiff (the quick-look "
                f"is written beside it as {out.with_suffix('.png').name})"
            )

        def sibling(suffix: str) -> Path:
            return out.with_name(out.stem + suffix)

        return cls(
            out,
            sibling("_probabilities.tif") if probabilities else None,
            sibling("_modalities.tif") if modality_map else None,
            sibling("_polygons.geojson") if polygons else None,
            out.with_suffix(".png") if quicklook else None,
        )

    def all(self) -> list[Path]:
        """Every path written."""
        paths = (self.classes, self.probabilities, self.modalities, self.polygons, self.quicklook)
        return [path for path in paths if path is not None]


def class_colours(count: int) -> list[tuple[int, int, int]]:
    """Colours of the classes: light grey for class 0, then matplotlib's tab10 / tab20."""
    palette = colormaps["tab10" if count <= 11 else "tab20"].colors
    colours = [(0.82, 0.82, 0.82), *palette]
    return [tuple(round(255 * c) for c in colours[k % len(colours)][:3]) for k in range(count)]


def modality_colours(count: int) -> list[tuple[int, int, int]]:
    """Colours of the modality bit-maps 0 .. 2^M - 1 (0: no data, white)."""
    palette = colormaps["Set2" if count <= 9 else "tab20"].colors
    return [(255, 255, 255)] + [
        tuple(round(255 * c) for c in palette[(k - 1) % len(palette)][:3]) for k in range(1, count)
    ]


LEGEND = dict(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncols=3, fontsize=8, frameon=False)
"""Legends below the maps."""


def combination_name(bits: int, names: Sequence[str]) -> str:
    """``"s1 + s2"`` for the bits of s1 and s2."""
    return " + ".join(name for m, name in enumerate(names) if bits >> m & 1)


class SceneWriter:
    """Temporary tiled GeoTIFFs of the outputs, filled block by block, then copied to COGs.

    Args:
        folder: where the temporary files go (e.g. a temporary folder beside the output).
        grid: the reference grid.
        paths: the outputs.
        class_names: the names of the C classes.
        modality_names: the checkpoint's modalities (bits of the modality map).
        percent: write probabilities as uint8 percent rather than float32.
    """

    def __init__(
        self,
        folder: Path,
        grid: RasterGrid,
        paths: OutputPaths,
        class_names: Sequence[str],
        modality_names: Sequence[str],
        percent: bool = False,
    ) -> None:
        if len(class_names) >= CLASS_NODATA:
            raise ValueError(f"at most {CLASS_NODATA - 1} classes fit a uint8 map")
        self.grid = grid
        self.paths = paths
        self.class_names = tuple(class_names)
        self.modality_names = tuple(modality_names)
        self.percent = percent
        profile = {
            "driver": "GTiff",
            "width": grid.width,
            "height": grid.height,
            "crs": grid.crs,
            "transform": grid.transform,
            "tiled": True,
            "blockxsize": BLOCK,
            "blockysize": BLOCK,
        }
        self.temporary = {
            "classes": folder / "classes.tif",
            "modalities": folder / "modalities.tif",
        }
        self.files = {
            "classes": rasterio.open(
                self.temporary["classes"],
                "w",
                **profile,
                count=1,
                dtype="uint8",
                nodata=CLASS_NODATA,
            ),
            "modalities": rasterio.open(
                self.temporary["modalities"],
                "w",
                **profile,
                count=1,
                dtype="uint8" if len(modality_names) <= 8 else "uint16",
                nodata=0,
            ),
        }
        self.files["classes"].write_colormap(
            1, {k: (*rgb, 255) for k, rgb in enumerate(class_colours(len(class_names)))}
        )
        if paths.probabilities is not None:
            self.temporary["probabilities"] = folder / "probabilities.tif"
            self.files["probabilities"] = rasterio.open(
                self.temporary["probabilities"],
                "w",
                **profile,
                count=len(class_names),
                dtype="uint8" if percent else "float32",
                nodata=PERCENT_NODATA if percent else np.nan,
            )
            for band, name in enumerate(self.class_names, start=1):
                self.files["probabilities"].set_band_description(band, name)

    def write(self, window: Window, probabilities: np.ndarray, bits: np.ndarray) -> None:
        """Write one block.

        Args:
            window: the block's window on the grid.
            probabilities: ``float32 [C, h, w]`` blended probabilities (NaN: not predicted).
            bits: ``int [h, w]`` modality bit-map (0: no input had data).
        """
        nodata = (bits == 0) | ~np.isfinite(probabilities).all(axis=0)
        classes = np.nan_to_num(probabilities, nan=-1.0).argmax(axis=0).astype(np.uint8)
        classes[nodata] = CLASS_NODATA
        self.files["classes"].write(classes[None], window=window)
        self.files["modalities"].write(
            bits[None].astype(self.files["modalities"].dtypes[0]), window=window
        )
        if "probabilities" in self.files:
            if self.percent:
                values = np.rint(np.nan_to_num(probabilities) * 100).astype(np.uint8)
                values[:, nodata] = PERCENT_NODATA
            else:
                values = probabilities.astype(np.float32)
                values[:, nodata] = np.nan
            self.files["probabilities"].write(values, window=window)

    def finish(self) -> None:
        """Close the temporary files and copy the requested ones to COGs."""
        for file in self.files.values():
            file.close()
        targets = {
            "classes": (self.paths.classes, "NEAREST"),
            "modalities": (self.paths.modalities, "NEAREST"),
            "probabilities": (self.paths.probabilities, "AVERAGE"),
        }
        for key, (target, resampling) in targets.items():
            if target is not None:
                write_cog(self.temporary[key], target, resampling)


def write_cog(source: Path, target: Path, resampling: str) -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF (DEFLATE, 512 blocks, overviews)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    rasterio.shutil.copy(
        source,
        target,
        driver="COG",
        compress="DEFLATE",
        blocksize=512,
        overview_resampling=resampling,
    )


def write_polygons(
    classes: Path,
    target: Path,
    grid: RasterGrid,
    class_names: Sequence[str],
    block: int = BLOCK,
) -> int:
    """The objects of a class map (connected pixels of a class other than 0) as GeoJSON.

    The map is polygonized block by block (4-connected pixels); polygons that touch a block
    seam are merged with their neighbours across it, so no object is cut. Coordinates are in
    the reference CRS, and the collection names it (the ``crs`` member of GeoJSON 2008).

    Args:
        classes: the class map (on ``grid``).
        target: the GeoJSON file to write.
        grid: the reference grid.
        class_names: names of the class ids.
        block: side of the polygonized blocks, pixels.

    Returns:
        The number of polygons written.
    """
    done: list[tuple[int, shapely.Geometry]] = []
    at_seams: dict[int, list[shapely.Geometry]] = defaultdict(list)
    with rasterio.open(classes) as src:
        for row in range(0, grid.height, block):
            for col in range(0, grid.width, block):
                window = Window(
                    col, row, min(block, grid.width - col), min(block, grid.height - row)
                )
                values = src.read(1, window=window)
                objects = (values != 0) & (values != CLASS_NODATA)
                seams = (col, row, col + window.width, row + window.height)
                inner = (col > 0, row > 0, seams[2] < grid.width, seams[3] < grid.height)
                for geometry, value in rasterio.features.shapes(
                    values, mask=objects, transform=Affine.translation(col, row)
                ):
                    shape = shapely.geometry.shape(geometry)
                    bounds = shape.bounds
                    touches = any(seam and bounds[k] == seams[k] for k, seam in enumerate(inner))
                    if touches:
                        at_seams[int(value)].append(shape)
                    else:
                        done.append((int(value), shape))
    for value, shapes in at_seams.items():
        merged = shapely.unary_union(shapes)
        done += [(value, part) for part in shapely.get_parts(merged)]
    t = grid.transform
    matrix = [t.a, t.b, t.d, t.e, t.c, t.f]
    features = []
    for value, shape in done:
        geometry = shapely.affinity.affine_transform(shape, matrix)
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "class_id": value,
                    "class": class_names[value] if value < len(class_names) else str(value),
                    "area": geometry.area,
                },
                "geometry": shapely.geometry.mapping(geometry),
            }
        )
    epsg = grid.crs.to_epsg()
    name = f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else grid.crs.to_wkt()
    collection = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": name}},
        "features": features,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(collection))
    return len(features)


def write_quicklook(
    classes: Path,
    modalities: Path,
    target: Path,
    class_names: Sequence[str],
    modality_names: Sequence[str],
    title: str,
    max_side: int = 1024,
) -> None:
    """A PNG of the class map and, beside it, of the modalities used at each pixel.

    Both are read decimated (nearest neighbour) to at most ``max_side`` pixels a side.
    """
    with rasterio.open(classes) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_side)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        class_map = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    with rasterio.open(modalities) as src:
        bits = src.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.int64)
    colours = np.array([*class_colours(len(class_names))] + [(255, 255, 255)] * 256, np.uint8)
    class_rgb = colours[np.where(class_map == CLASS_NODATA, len(class_names), class_map)]
    combos = 1 << len(modality_names)
    bit_rgb = np.array(modality_colours(combos), np.uint8)[bits]
    figure = Figure(figsize=(10, 5.4), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.imshow(class_rgb, interpolation="nearest")
    left.set_title("predicted classes")
    left.legend(
        handles=[
            Patch(color=np.array(rgb) / 255, label=name)
            for name, rgb in zip(class_names, class_colours(len(class_names)), strict=True)
        ]
        + [Patch(facecolor="white", edgecolor="black", label="no data")],
        **LEGEND,
    )
    right.imshow(bit_rgb, interpolation="nearest")
    right.set_title("modalities used")
    used = sorted(int(b) for b in np.unique(bits) if b)
    right.legend(
        handles=[
            Patch(
                color=np.array(modality_colours(combos)[b]) / 255,
                label=combination_name(b, modality_names),
            )
            for b in used
        ]
        + [Patch(facecolor="white", edgecolor="black", label="no data")],
        **LEGEND,
    )
    for axis in (left, right):
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=10)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
