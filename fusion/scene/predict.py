"""Predict a whole scene from any subset of a model's modalities, tile by tile, as a stream.

1. Each modality's rasters (one or several, mosaicked) become a TorchGeo dataset on the
   reference grid (`fusion.scene.sources`; the first given modality's grid unless
   ``reference`` names another, cropped to ``bounds`` when given). Inputs whose values lie far
   from the training statistics are reported (`fusion.scene.checks`).
2. TorchGeo's grid sampler lays overlapping tiles over the reference grid; each tile is read
   from every modality (in loader worker processes that prefetch while the model runs,
   `SceneTiles`), and a modality without any valid pixel in the tile is absent there, so
   each part of the scene uses the modalities that hold data in it. Partly covered tiles keep
   the modality, with its no-data pixels filled and marked invalid: patches without a valid
   pixel are hidden from the backbone, as in training (`fusion.tasks.batches`). A tile where
   no modality holds data is not predicted.
3. Tiles become training samples through the training dataset's own steps
   (`fusion.scene.pipeline`), are predicted in batches under the autocast training would use
   on the device, and their per-class probabilities are blended into a temporary GeoTIFF
   with smooth weights (`fusion.scene.blend`).
4. The blended result is written block by block as COGs on the reference grid (or resampled
   to ``resolution``), with polygons for instance models and a quick-look
   (`fusion.scene.outputs`), all in a temporary folder beside ``out`` and moved into place
   only when every output is complete.

Memory holds a few batches of tiles and a few GDAL blocks, whatever the scene size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from fusion.scene.blend import SceneAccumulator, blend_window
from fusion.scene.checks import value_range_warnings
from fusion.scene.outputs import OutputPaths, SceneWriter, write_quicklook
from fusion.scene.pipeline import SceneModel, TilePipeline
from fusion.scene.polygons import write_polygons
from fusion.scene.sources import (
    ModalityRaster,
    NoOverlapError,
    RasterPath,
    TileGrid,
    crop_grid,
    reference_grid,
    resample_grid,
    tile_windows,
)

log = logging.getLogger(__name__)

Rasters = Mapping[str, RasterPath | Sequence[RasterPath]]
"""Modality name -> its raster, or several (mosaicked)."""


@dataclass
class SceneResult:
    """What a scene prediction wrote and did.

    Attributes:
        paths: the files written.
        tiles: tiles laid over the scene.
        predicted: tiles predicted (the others had no data).
        subsets: tiles predicted per modality subset, e.g. ``{("s1", "s2"): 12, ("s1",): 4}``.
        seconds: wall-clock time.
        polygons: polygons written (instance models).
        warnings: inputs whose values lie far from the training statistics
            (`fusion.scene.checks`).
        batch_size: tiles per forward pass used.
        workers: loader worker processes used.
    """

    paths: OutputPaths
    tiles: int = 0
    predicted: int = 0
    subsets: dict[tuple[str, ...], int] = field(default_factory=dict)
    seconds: float = 0.0
    polygons: int | None = None
    warnings: list[str] = field(default_factory=list)
    batch_size: int = 0
    workers: int = 0


def default_workers(device: torch.device) -> int:
    """Loader worker processes: one beside a CPU model on up to 4 cores, else cores - 1 (<= 8).

    The model's own threads use the cores on a CPU; a GPU needs the CPUs to feed it.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if cores < 2:
        return 0
    if device.type == "cpu" and cores <= 4:
        return 1
    return min(cores - 1, 8)


def predict_scene(
    model: SceneModel,
    rasters: Rasters,
    out: str | Path,
    reference: str | None = None,
    overlap: float = 0.5,
    batch_size: int | None = None,
    probabilities: str | None = None,
    modality_map: bool = False,
    quicklook: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    quicklook_side: int = 1024,
    workers: int | None = None,
    bounds: Sequence[float] | None = None,
    resolution: float | None = None,
    polygon_format: str = "gpkg",
    check_values: bool = True,
) -> SceneResult:
    """Predict the scene covered by ``rasters`` and write the maps.

    Args:
        model: the model and its training data pipeline (`fusion.scene.load_scene_model`).
        rasters: modality name -> raster (local path or GDAL path such as ``/vsicurl/...``),
            or a list of rasters mosaicked into one; any non-empty subset of the model's
            modalities, in any CRS and resolution.
        out: the class map to write (a COG, ``.tif``); the other outputs go beside it.
        reference: the modality whose grid the model runs on (default: the first of
            ``rasters``; its first file when it has several).
        overlap: share of a tile shared with the next one, in [0, 1).
        batch_size: tiles per forward pass (default: sized to the device,
            `SceneModel.default_batch_size`).
        probabilities: also write per-class probabilities: ``"float32"`` or ``"uint8"``
            (percent); None: no.
        modality_map: also write the per-pixel bit-map of the modalities used.
        quicklook: write a PNG quick-look.
        overwrite: replace existing outputs.
        progress: show a progress bar.
        quicklook_side: longest side of the quick-look's maps, pixels.
        workers: loader worker processes reading and warping tiles while the model runs
            (default: `default_workers`; 0 reads in the main process).
        bounds: ``(left, bottom, right, top)`` in the reference CRS: predict this area only
            (or beyond the reference raster where other modalities cover it), on the
            reference's pixels.
        resolution: pixel size of the written rasters, reference CRS units (default: the
            reference's). The model still runs on the reference's pixels (the resolution it
            was trained at); the outputs are resampled (class and modality maps by mode,
            probabilities by average).
        polygon_format: ``"gpkg"``, ``"fgb"`` or ``"geojson"`` (CRS84) for instance models.
        check_values: warn about inputs far from the training statistics
            (`fusion.scene.checks`).

    Returns:
        What was written and done.

    Raises:
        ValueError: for an unknown modality or reference, rasters that do not overlap the
            reference, a band count that does not match the modality, an output that is an
            input, or a bad option.
        FileNotFoundError: if a raster does not exist.
        FileExistsError: if an output exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    rasters = {name: as_list(paths) for name, paths in rasters.items()}
    reference = check_request(
        model, rasters, reference, overlap, probabilities, batch_size, workers
    )
    paths = OutputPaths.beside(
        out, probabilities is not None, modality_map, model.instance, quicklook, polygon_format
    )
    check_outputs(paths, rasters, overwrite)
    grid = reference_grid(rasters[reference][0], reference)
    if bounds is not None:
        grid = crop_grid(grid, bounds)
    output_grid = resample_grid(grid, resolution) if resolution is not None else None
    with ExitStack() as stack:
        sources, outside = {}, []
        for name, files in rasters.items():
            try:
                sources[name] = ModalityRaster(name, files, model.modality_info[name], grid)
            except NoOverlapError:
                if bounds is None or name == reference:
                    raise
                outside.append(name)  # the box of --bounds misses it: predicted without it
                continue
            stack.callback(sources[name].close)
        tile = model.tile_pixels
        windows = tile_windows(sources[reference], tile, max(1, round(tile * (1 - overlap))))
        result = SceneResult(paths, tiles=len(windows))
        result.warnings = [
            f"{name} ({', '.join(map(str, rasters[name]))}) lies outside --bounds: the area is "
            f"predicted without it"
            for name in outside
        ]
        if check_values:
            result.warnings += value_range_warnings(sources, model.dataset)
        for warning in result.warnings:
            log.warning(warning)
        result.batch_size = model.default_batch_size() if batch_size is None else batch_size
        result.workers = default_workers(model.device) if workers is None else workers
        paths.classes.parent.mkdir(parents=True, exist_ok=True)
        folder = Path(
            stack.enter_context(
                tempfile.TemporaryDirectory(dir=paths.classes.parent, prefix=".scene-")
            )
        )
        final, paths = paths, staged_paths(paths, folder / "outputs")
        accumulator = stack.enter_context(
            SceneAccumulator(folder / "sums.tif", grid, len(model.class_names))
        )
        tiles = scene_tiles(sources, windows, model.pipeline, tile, result.workers)
        bar = tqdm(
            tiles,
            total=len(windows),
            desc=f"predicting {final.classes.name}",
            unit="tile",
            disable=not progress,
        )
        predict_tiles(model, bar, accumulator, result.batch_size, result)
        writer = stack.enter_context(
            SceneWriter(
                folder,
                grid,
                paths,
                model.class_names,
                model.modality_names,
                probabilities == "uint8",
                scores=paths.polygons is not None,
                output_grid=output_grid,
            )
        )
        for window, blended, bits in accumulator.blocks():
            writer.write(window, blended, bits)
        accumulator.close()
        writer.finish()
        if paths.polygons is not None:
            result.polygons = write_polygons(
                writer.temporary["classes"],
                paths.polygons,
                grid,
                model.class_names,
                scores=writer.temporary["scores"],
            )
        if paths.quicklook is not None:
            write_quicklook(
                writer.temporary["classes"],
                writer.temporary["modalities"],
                paths.quicklook,
                model.class_names,
                model.modality_names,
                f"{final.classes.name}: {' + '.join(sources)} ({result.predicted} tiles)",
                quicklook_side,
            )
        move_into_place(paths, final)
    result.seconds = time.perf_counter() - start
    return result


def as_list(paths: RasterPath | Sequence[RasterPath]) -> list[RasterPath]:
    """One raster or several as a list."""
    return [paths] if isinstance(paths, str | Path) else list(paths)


def staged_paths(paths: OutputPaths, folder: Path) -> OutputPaths:
    """Where the outputs are written first: ``folder``, beside the final ones (one file system)."""
    folder.mkdir(parents=True, exist_ok=True)
    staged = {
        field.name: None
        if getattr(paths, field.name) is None
        else folder / getattr(paths, field.name).name
        for field in dataclasses.fields(paths)
    }
    return OutputPaths(**staged)


def move_into_place(staged: OutputPaths, final: OutputPaths) -> None:
    """Move every finished output onto its final path (``os.replace``, atomic per file).

    Called only when every output is complete, so a run that fails leaves the previous outputs
    as they were (and no partial set behind).
    """
    for output in dataclasses.fields(final):
        source, target = getattr(staged, output.name), getattr(final, output.name)
        if source is not None and target is not None:
            os.replace(source, target)


def check_request(
    model: SceneModel,
    rasters: Mapping[str, Sequence[RasterPath]],
    reference: str | None,
    overlap: float,
    probabilities: str | None,
    batch_size: int | None = None,
    workers: int | None = None,
) -> str:
    """Check the modalities and options; return the reference modality.

    Raises:
        ValueError: naming the modality or value that cannot be used.
    """
    unknown = [name for name in rasters if name not in model.modality_names]
    if unknown:
        raise ValueError(
            f"modality {unknown[0]!r} is not one of the checkpoint's modalities "
            f"({', '.join(model.modality_names)})"
        )
    if not rasters:
        raise ValueError(f"give at least one of the modalities {', '.join(model.modality_names)}")
    empty = [name for name, files in rasters.items() if not files]
    if empty:
        raise ValueError(f"no raster given for the {empty[0]} modality")
    reference = reference or next(iter(rasters))
    if reference not in rasters:
        raise ValueError(
            f"reference {reference!r} is not one of the given modalities ({', '.join(rasters)})"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if workers is not None and workers < 0:
        raise ValueError(f"workers must be 0 (read in this process) or more, got {workers}")
    if probabilities not in (None, "float32", "uint8"):
        raise ValueError(f"probabilities must be float32 or uint8, got {probabilities!r}")
    return reference


def check_outputs(
    paths: OutputPaths, rasters: Mapping[str, Sequence[RasterPath]], overwrite: bool
) -> None:
    """Refuse outputs that are inputs, and existing outputs unless ``overwrite``.

    Raises:
        ValueError: if an output is one of the input rasters.
        FileExistsError: if an output exists and ``overwrite`` is False.
    """
    inputs = {Path(path).resolve() for files in rasters.values() for path in files}
    clash = [path for path in paths.all() if path.resolve() in inputs]
    if clash:
        raise ValueError(f"output {clash[0]} would overwrite an input raster")
    existing = [path for path in paths.all() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass --overwrite to replace it)")


class SceneTiles(Dataset):
    """The tiles of a scene, read, warped and made into samples: what loader workers do.

    Item ``i`` is a dict: ``window`` (the tile's window on the grid), ``sample`` (the training
    sample, None when no modality holds data there), ``bits`` (``int64 [tile, tile]``: bit m
    set where modality m holds data) and ``subset`` (the modalities shown).

    Args:
        sources: the scene's modalities (each worker opens its own file handles).
        windows: the tile windows.
        pipeline: the training dataset's per-tile steps.
        tile: tile side, reference pixels.
    """

    def __init__(
        self,
        sources: Mapping[str, ModalityRaster],
        windows: TileGrid,
        pipeline: TilePipeline,
        tile: int,
    ) -> None:
        self.sources = dict(sources)
        self.windows = windows
        self.pipeline = pipeline
        self.tile = tile

    def __len__(self) -> int:
        """Number of tiles."""
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Read and prepare tile ``index``."""
        window = self.windows[index]
        tiles = {}
        for name, source in self.sources.items():
            read = source.read_window(window)
            if read is not None and read[1].any():
                tiles[name] = read
        sample = self.pipeline.sample(tiles, index)
        bits = np.zeros((self.tile, self.tile), dtype=np.int64)
        names = self.pipeline.modality_names
        for name, (_, valid) in tiles.items():
            bits[valid] |= 1 << names.index(name)
        subset = tuple(name for name in names if name in tiles)
        return {"window": window, "sample": sample, "bits": bits, "subset": subset}


def _as_is(item: dict[str, Any]) -> dict[str, Any]:
    """The loader's collate function: items pass unchanged (batches are made afterwards)."""
    return item


def scene_tiles(
    sources: Mapping[str, ModalityRaster],
    windows: TileGrid,
    pipeline: TilePipeline,
    tile: int,
    workers: int,
) -> Iterator[dict[str, Any]]:
    """The prepared tiles in order, from ``workers`` loader processes prefetching ahead.

    Files opened in this process are closed first, so that every worker opens its own.
    """
    for source in sources.values():
        source.close()
    dataset = SceneTiles(sources, windows, pipeline, tile)
    if workers <= 0:
        return (dataset[index] for index in range(len(dataset)))
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=workers,
        collate_fn=_as_is,
        prefetch_factor=8,
    )
    return iter(loader)


def predict_tiles(
    model: SceneModel,
    tiles: Iterator[dict[str, Any]],
    accumulator: SceneAccumulator,
    batch_size: int,
    result: SceneResult,
) -> None:
    """Predict prepared tiles in batches and accumulate them; count them in ``result``."""
    tile = model.tile_pixels
    weights = blend_window(tile)
    pending: list[dict[str, Any]] = []

    def flush() -> None:
        if pending:
            scores = model.predict([item["sample"] for item in pending], tile).numpy()
            for item, probabilities in zip(pending, scores, strict=True):
                accumulator.add(item["window"], probabilities, weights, item["bits"])
            pending.clear()

    for item in tiles:
        if item["sample"] is None:
            continue
        result.subsets[item["subset"]] = result.subsets.get(item["subset"], 0) + 1
        result.predicted += 1
        pending.append(item)
        if len(pending) >= batch_size:
            flush()
    flush()
