"""Predict a whole scene from any subset of a model's modalities, tile by tile, as a stream.

1. Each given raster becomes a TorchGeo dataset on the reference grid (`fusion.scene.sources`;
   the first given modality's grid unless ``reference`` names another).
2. TorchGeo's grid sampler lays overlapping tiles over the reference grid; each tile is read
   from every modality, and a modality without any valid pixel in the tile is absent there, so
   each part of the scene uses the modalities that hold data in it. Partly covered tiles keep
   the modality, with its no-data pixels filled and marked invalid: patches without a valid
   pixel are hidden from the backbone, as in training (`fusion.tasks.batches`). A tile where
   no modality holds data is not predicted.
3. Tiles become training samples through the training dataset's own steps
   (`fusion.scene.pipeline`), are predicted in batches, and their per-class probabilities are
   blended into a temporary GeoTIFF with smooth weights (`fusion.scene.blend`).
4. The blended result is written block by block as COGs on the reference grid, with polygons
   for instance models and a quick-look (`fusion.scene.outputs`).

Memory holds a batch of tiles and a few GDAL blocks, whatever the scene size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.windows import Window
from tqdm import tqdm

from fusion.scene.blend import SceneAccumulator, blend_window
from fusion.scene.outputs import OutputPaths, SceneWriter, write_polygons, write_quicklook
from fusion.scene.pipeline import SceneModel
from fusion.scene.sources import ModalityRaster, reference_grid, tile_windows

log = logging.getLogger(__name__)


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
    """

    paths: OutputPaths
    tiles: int = 0
    predicted: int = 0
    subsets: dict[tuple[str, ...], int] = field(default_factory=dict)
    seconds: float = 0.0
    polygons: int | None = None


def predict_scene(
    model: SceneModel,
    rasters: Mapping[str, str | Path],
    out: str | Path,
    reference: str | None = None,
    overlap: float = 0.5,
    batch_size: int = 4,
    probabilities: str | None = None,
    modality_map: bool = False,
    quicklook: bool = True,
    overwrite: bool = False,
    progress: bool = True,
    quicklook_side: int = 1024,
) -> SceneResult:
    """Predict the scene covered by ``rasters`` and write the maps.

    Args:
        model: the model and its training data pipeline (`fusion.scene.load_scene_model`).
        rasters: modality name -> raster file, any non-empty subset of the model's
            modalities, in any CRS and resolution.
        out: the class map to write (a COG); the other outputs go beside it.
        reference: the modality whose grid the maps are on (default: the first of
            ``rasters``).
        overlap: share of a tile shared with the next one, in [0, 1).
        batch_size: tiles per forward pass.
        probabilities: also write per-class probabilities: ``"float32"`` or ``"uint8"``
            (percent); None: no.
        modality_map: also write the per-pixel bit-map of the modalities used.
        quicklook: write a PNG quick-look.
        overwrite: replace existing outputs.
        progress: show a progress bar.
        quicklook_side: longest side of the quick-look's maps, pixels.

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
    reference = check_request(model, rasters, reference, overlap, probabilities)
    paths = OutputPaths.beside(
        out, probabilities is not None, modality_map, model.instance, quicklook
    )
    check_outputs(paths, rasters, overwrite)
    grid = reference_grid(rasters[reference])
    sources = {
        name: ModalityRaster(name, path, model.modality_info[name], grid)
        for name, path in rasters.items()
    }
    tile = model.tile_pixels
    windows = tile_windows(sources[reference], tile, max(1, round(tile * (1 - overlap))))
    result = SceneResult(paths, tiles=len(windows))
    paths.classes.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=paths.classes.parent, prefix=".scene-") as name:
        folder = Path(name)
        final, paths = paths, staged_paths(paths, folder / "outputs")
        accumulator = SceneAccumulator(folder / "sums.tif", grid, len(model.class_names))
        bar = tqdm(
            windows, desc=f"predicting {final.classes.name}", unit="tile", disable=not progress
        )
        predict_tiles(model, sources, bar, accumulator, batch_size, result)
        for source in sources.values():
            source.close()
        writer = SceneWriter(
            folder, grid, paths, model.class_names, model.modality_names, probabilities == "uint8"
        )
        for window, blended, bits in accumulator.blocks():
            writer.write(window, blended, bits)
        accumulator.close()
        writer.finish()
        if paths.polygons is not None:
            result.polygons = write_polygons(
                writer.temporary["classes"], paths.polygons, grid, model.class_names
            )
        if paths.quicklook is not None:
            write_quicklook(
                writer.temporary["classes"],
                writer.temporary["modalities"],
                paths.quicklook,
                model.class_names,
                model.modality_names,
                f"{final.classes.name}: {' + '.join(rasters)} ({result.predicted} tiles)",
                quicklook_side,
            )
        move_into_place(paths, final)
    result.seconds = time.perf_counter() - start
    return result


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
    rasters: Mapping[str, str | Path],
    reference: str | None,
    overlap: float,
    probabilities: str | None,
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
    reference = reference or next(iter(rasters))
    if reference not in rasters:
        raise ValueError(
            f"reference {reference!r} is not one of the given modalities ({', '.join(rasters)})"
        )
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if probabilities not in (None, "float32", "uint8"):
        raise ValueError(f"probabilities must be float32 or uint8, got {probabilities!r}")
    return reference


def check_outputs(paths: OutputPaths, rasters: Mapping[str, str | Path], overwrite: bool) -> None:
    """Refuse outputs that are inputs, and existing outputs unless ``overwrite``.

    Raises:
        ValueError: if an output is one of the input rasters.
        FileExistsError: if an output exists and ``overwrite`` is False.
    """
    inputs = {Path(path).resolve() for path in rasters.values()}
    clash = [path for path in paths.all() if path.resolve() in inputs]
    if clash:
        raise ValueError(f"output {clash[0]} would overwrite an input raster")
    existing = [path for path in paths.all() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists (pass --overwrite to replace it)")


def predict_tiles(
    model: SceneModel,
    sources: Mapping[str, ModalityRaster],
    windows: Iterable[Window],
    accumulator: SceneAccumulator,
    batch_size: int,
    result: SceneResult,
) -> None:
    """Read, predict in batches and accumulate the tiles; count them in ``result``.

    Each tile shows the modalities with at least one valid pixel in it; a tile without any is
    skipped. The modality bit-map of a tile sets bit m where modality m holds data.
    """
    tile = model.tile_pixels
    weights = blend_window(tile)
    pending: list[tuple[Window, dict, np.ndarray]] = []

    def flush() -> None:
        if pending:
            scores = model.predict([sample for _, sample, _ in pending], tile).numpy()
            for (window, _, bits), probabilities in zip(pending, scores, strict=True):
                accumulator.add(window, probabilities, weights, bits)
            pending.clear()

    for index, window in enumerate(windows):
        tiles = {}
        for name, source in sources.items():
            read = source.read_window(window)
            if read is not None and read[1].any():
                tiles[name] = read
        sample = model.sample(tiles, index)
        if sample is None:
            continue
        bits = np.zeros((tile, tile), dtype=np.int64)
        for name, (_, valid) in tiles.items():
            bits[valid] |= 1 << model.modality_names.index(name)
        subset = tuple(name for name in model.modality_names if name in tiles)
        result.subsets[subset] = result.subsets.get(subset, 0) + 1
        result.predicted += 1
        pending.append((window, sample, bits))
        if len(pending) >= batch_size:
            flush()
    flush()
