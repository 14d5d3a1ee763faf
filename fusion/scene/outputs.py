"""What ``fusion predict-scene`` writes: Cloud-Optimized GeoTIFFs, polygons and a quick-look.

From ``--out map.tif``:

- ``map.tif``: the class map, uint8 class ids with a colour table, 255 where no input had data;
  its metadata names the classes (dataset tag ``CLASS_NAMES``: a JSON list; band tags
  ``CLASS_<id>``);
- ``map_probabilities.tif`` (``--probabilities``): one band per class, float32 in [0, 1]
  (NaN: no data) or uint8 percent (255: no data);
- ``map_modalities.tif`` (``--modality_map``): bit m (the checkpoint's modality order) set
  where modality m held data, 0 where none did (no data);
- ``map_polygons.gpkg`` (instance models; ``.fgb`` or ``.geojson`` with ``--polygons``): the
  predicted objects (4-connected pixels of a class other than background) as polygons, with their
  ``class_id``, ``class`` name, ``area_m2`` (square metres: geodesic on a geographic grid) and
  ``score`` (mean probability of the class over the object's pixels, when scores are given).
  GeoPackage and FlatGeobuf keep the reference CRS; GeoJSON is RFC 7946 (WGS 84 longitude and
  latitude, no ``crs`` member);
- ``map.png``: a quick-look of the class map and of the modalities used.

Rasters are written block by block into temporary tiled GeoTIFFs and then copied to COGs
(GDAL's COG driver: 512-pixel blocks, DEFLATE, BigTIFF where a classic TIFF might overflow,
overviews by the mode for the class and modality maps and by the mean for probabilities), on
the reference grid or warped (mode, mean) to a coarser output grid. Polygons come from the
class map on the reference grid and are streamed too: those finished inside a block are
written with it, and only those touching a block seam wait to be merged at the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import numpy as np
import rasterio
import rasterio.features
import rasterio.shutil
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rasterio.enums import Resampling
from rasterio.windows import Window

from datamodules.rasters import RasterGrid
from fusion.scene.blend import BLOCK
from fusion.scene.polygons import CLASS_NODATA, POLYGON_FORMATS

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
        polygon_format: str = "gpkg",
    ) -> OutputPaths:
        """The paths derived from the class map's path ``out``.

        Args:
            out: the class map, ``.tif`` or ``.tiff``.
            probabilities: write ``<stem>_probabilities.tif``.
            modality_map: write ``<stem>_modalities.tif``.
            polygons: write ``<stem>_polygons.<polygon_format>``.
            quicklook: write ``<stem>.png``.
            polygon_format: one of ``POLYGON_FORMATS``: ``gpkg``, ``fgb`` or ``geojson``.

        Raises:
            ValueError: if ``out`` is not a GeoTIFF path (``.tif``/``.tiff``): the class map is
                one, and a ``.png`` would be overwritten by the quick-look of the same name;
                or if ``polygon_format`` is unknown.
        """
        out = Path(out)
        if out.suffix.lower() not in (".tif", ".tiff"):
            raise ValueError(
                f"--out {out}: the class map is a GeoTIFF, name it .tif or .tiff (the quick-look "
                f"is written beside it as {out.with_suffix('.png').name})"
            )
        if polygon_format not in POLYGON_FORMATS:
            raise ValueError(
                f"polygon format {polygon_format!r} is not one of {', '.join(POLYGON_FORMATS)}"
            )

        def sibling(suffix: str) -> Path:
            return out.with_name(out.stem + suffix)

        return cls(
            out,
            sibling("_probabilities.tif") if probabilities else None,
            sibling("_modalities.tif") if modality_map else None,
            sibling(f"_polygons.{polygon_format}") if polygons else None,
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


def combination_name(bits: int, names: Sequence[str]) -> str:
    """``"s1 + s2"`` for the bits of s1 and s2."""
    return " + ".join(name for m, name in enumerate(names) if bits >> m & 1)


def class_map_tags(class_names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """The class map's metadata naming its classes: dataset tags and band 1 tags."""
    dataset = {"CLASS_NAMES": json.dumps(list(class_names))}
    band = {f"CLASS_{k}": name for k, name in enumerate(class_names)}
    return dataset, band


class SceneWriter:
    """Temporary tiled GeoTIFFs of the outputs, filled block by block, then copied to COGs.

    A context manager: leaving it, even by an exception, closes every file. ``finish`` closes
    them and writes the COGs.

    Args:
        folder: where the temporary files go (e.g. a temporary folder beside the output).
        grid: the reference grid.
        paths: the outputs.
        class_names: the names of the C classes.
        modality_names: the checkpoint's modalities (bits of the modality map).
        percent: write probabilities as uint8 percent rather than float32.
        scores: also write ``temporary["scores"]``, float32, the probability of the predicted
            class (NaN: no data), for the polygons' scores; it is not copied to a COG.
        output_grid: the grid of the COGs if other than ``grid`` (e.g. coarser pixels over
            the same area): they are warped to it, class and modality maps by the mode,
            probabilities by the mean. The temporary files stay on ``grid``.

    Attributes:
        temporary: the temporary GeoTIFFs by output (``classes``, ``modalities``, and
            ``probabilities``, ``scores`` when written).
        files: their open rasterio datasets.
    """

    def __init__(
        self,
        folder: Path,
        grid: RasterGrid,
        paths: OutputPaths,
        class_names: Sequence[str],
        modality_names: Sequence[str],
        percent: bool = False,
        scores: bool = False,
        output_grid: RasterGrid | None = None,
    ) -> None:
        if len(class_names) >= CLASS_NODATA:
            raise ValueError(f"at most {CLASS_NODATA - 1} classes fit a uint8 map")
        self.grid = grid
        self.output_grid = None if output_grid == grid else output_grid
        self.paths = paths
        self.class_names = tuple(class_names)
        self.modality_names = tuple(modality_names)
        self.percent = percent
        layouts = {
            "classes": dict(count=1, dtype="uint8", nodata=CLASS_NODATA),
            "modalities": dict(
                count=1, dtype="uint8" if len(modality_names) <= 8 else "uint16", nodata=0
            ),
        }
        if paths.probabilities is not None:
            layouts["probabilities"] = dict(
                count=len(class_names),
                dtype="uint8" if percent else "float32",
                nodata=PERCENT_NODATA if percent else np.nan,
            )
        if scores:
            layouts["scores"] = dict(count=1, dtype="float32", nodata=np.nan)
        self.temporary = {key: folder / f"{key}.tif" for key in layouts}
        self.files: dict[str, rasterio.io.DatasetWriter] = {}
        with ExitStack() as opened:  # a failure here closes what was opened
            for key, layout in layouts.items():
                self.files[key] = opened.enter_context(
                    rasterio.open(
                        self.temporary[key],
                        "w",
                        driver="GTiff",
                        width=grid.width,
                        height=grid.height,
                        crs=grid.crs,
                        transform=grid.transform,
                        tiled=True,
                        blockxsize=BLOCK,
                        blockysize=BLOCK,
                        **layout,
                    )
                )
            self._describe()
            self._open = opened.pop_all()

    def _describe(self) -> None:
        """Colours and names of the classes, names of the probability bands."""
        classes = self.files["classes"]
        classes.write_colormap(
            1, {k: (*rgb, 255) for k, rgb in enumerate(class_colours(len(self.class_names)))}
        )
        classes.set_band_description(1, "class")
        dataset_tags, band_tags = class_map_tags(self.class_names)
        classes.update_tags(**dataset_tags)
        classes.update_tags(1, **band_tags)
        if "probabilities" in self.files:
            for band, name in enumerate(self.class_names, start=1):
                self.files["probabilities"].set_band_description(band, name)

    def __enter__(self) -> SceneWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

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
        if "scores" in self.files:
            best = np.nan_to_num(probabilities).max(axis=0).astype(np.float32)  # [h, w]
            best[nodata] = np.nan
            self.files["scores"].write(best[None], window=window)

    def close(self) -> None:
        """Close every temporary file (all of them, even if one fails; again: nothing)."""
        self._open.close()

    def finish(self) -> None:
        """Close the temporary files and copy the requested ones to COGs (on ``output_grid``)."""
        self.close()
        targets = {
            "classes": (self.paths.classes, "MODE"),
            "modalities": (self.paths.modalities, "MODE"),
            "probabilities": (self.paths.probabilities, "AVERAGE"),
        }
        for key, (target, resampling) in targets.items():
            if target is not None:
                write_cog(self.temporary[key], target, resampling, self.output_grid)


def write_cog(source: Path, target: Path, resampling: str, grid: RasterGrid | None = None) -> None:
    """Copy a GeoTIFF to a Cloud-Optimized GeoTIFF (DEFLATE, 512 blocks, overviews).

    Args:
        source: the GeoTIFF.
        target: the COG to write.
        resampling: GDAL's resampling of the overviews and of the warp to ``grid`` (``MODE``
            for categories, ``AVERAGE``).
        grid: the COG's grid, north-up with square pixels, if other than the source's: the
            COG driver warps the source to it as it copies (keeping its metadata).

    Raises:
        ValueError: if ``grid`` has no CRS or is not north-up with square pixels.
    """
    warp = {}
    if grid is not None:
        t = grid.transform
        if grid.crs is None or t.b or t.d or t.a != -t.e:
            raise ValueError(
                f"a COG grid has a CRS and is north-up with square pixels, got {grid.crs} "
                f"{tuple(t)[:6]}"
            )
        extent = (t.c, t.f + grid.height * t.e, t.c + grid.width * t.a, t.f)
        warp = dict(
            target_srs=grid.crs.to_wkt(),
            res=repr(float(t.a)),
            extent=",".join(repr(float(value)) for value in extent),
            warp_resampling=resampling,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    rasterio.shutil.copy(
        source,
        target,
        driver="COG",
        compress="DEFLATE",
        blocksize=512,
        bigtiff="IF_SAFER",
        overview_resampling=resampling,
        **warp,
    )


LEGEND_COLUMNS = 3
"""Entries side by side in a quick-look legend."""
LEGEND = dict(
    loc="upper center", bbox_to_anchor=(0.5, -0.01), ncols=LEGEND_COLUMNS, fontsize=8, frameon=False
)
"""Legends below the maps."""
LEGEND_ROW = 0.19
"""Height of a legend row at ``fontsize=8``, inches."""
QUICKLOOK_WIDTH = 10.0
"""Width of the quick-look, inches; its height follows the maps' shape and the legends."""


def quicklook_figure(
    class_map: np.ndarray,
    bits: np.ndarray,
    class_names: Sequence[str],
    modality_names: Sequence[str],
    title: str,
) -> Figure:
    """The class map and, beside it, the modalities used at each pixel, with their legends.

    The figure is as tall as the maps (at most 6 inches) and the longer legend need, so any
    number of classes (or modality combinations) fits below the maps without shrinking them.
    The "compressed" layout places the maps, which keep their aspect, and makes room for the
    legends (the "constrained" one misjudges legends below axes of a fixed aspect).

    Args:
        class_map: ``uint8 [h, w]`` class ids (``CLASS_NODATA``: no data).
        bits: ``int [h, w]`` modality bit-map (0: no data).
        class_names: names of the class ids.
        modality_names: the modalities, in the order of the bits.
        title: the figure's title.
    """
    colours = np.array([*class_colours(len(class_names))] + [(255, 255, 255)] * 256, np.uint8)
    class_rgb = colours[np.where(class_map == CLASS_NODATA, len(class_names), class_map)]
    combos = 1 << len(modality_names)
    bit_rgb = np.array(modality_colours(combos), np.uint8)[bits]
    no_data = Patch(facecolor="white", edgecolor="black", label="no data")
    class_entries = [
        Patch(color=np.array(rgb) / 255, label=name)
        for name, rgb in zip(class_names, class_colours(len(class_names)), strict=True)
    ] + [no_data]
    used = sorted(int(b) for b in np.unique(bits) if b)
    modality_entries = [
        Patch(
            color=np.array(modality_colours(combos)[b]) / 255,
            label=combination_name(b, modality_names),
        )
        for b in used
    ] + [no_data]
    rows = math.ceil(max(len(class_entries), len(modality_entries)) / LEGEND_COLUMNS)
    map_width = QUICKLOOK_WIDTH / 2 - 0.4  # inches, within the margins
    map_height = min(map_width * class_map.shape[0] / class_map.shape[1], 6.0)
    height = 0.8 + map_height + 0.2 + rows * LEGEND_ROW  # titles, maps, gap, legends
    figure = Figure(figsize=(QUICKLOOK_WIDTH, height), layout="compressed")
    left, right = figure.subplots(1, 2)
    for axis, rgb, name, entries in (
        (left, class_rgb, "predicted classes", class_entries),
        (right, bit_rgb, "modalities used", modality_entries),
    ):
        axis.imshow(rgb, interpolation="nearest")
        axis.set_title(name)
        axis.legend(handles=entries, **LEGEND)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title, fontsize=10)
    return figure


def write_quicklook(
    classes: Path,
    modalities: Path,
    target: Path,
    class_names: Sequence[str],
    modality_names: Sequence[str],
    title: str,
    max_side: int = 1024,
) -> None:
    """A PNG of the class map and, beside it, of the modalities used (`quicklook_figure`).

    Both are read decimated (nearest neighbour) to at most ``max_side`` pixels a side.
    """
    with rasterio.open(classes) as src:
        factor = max(1, int(np.ceil(max(src.width, src.height) / max_side)))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        class_map = src.read(1, out_shape=shape, resampling=Resampling.nearest)
    with rasterio.open(modalities) as src:
        bits = src.read(1, out_shape=shape, resampling=Resampling.nearest).astype(np.int64)
    figure = quicklook_figure(class_map, bits, class_names, modality_names, title)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=100)
