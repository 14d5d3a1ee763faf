"""Synthetic DFC2023 track 2 tiles: RGB, SAR and nDSM with COCO building polygons.

Layout written under ``<root>/dfc2023/`` (the official contest layout, 0.5 m pixels)::

    annotations/buildings_only_{train,val,test}.json   MS COCO, polygons, category 1 = building
    {train,val,test}/rgb/<name>.tif                    uint8 red, green, blue
    {train,val,test}/sar/<name>.tif                    float32 SAR amplitude, linear
    {train,val,test}/height/<name>.tif                 float32 nDSM in metres, 0 = ground

Tiles are named ``P0001.tif``, ``P0002.tif``... numbered across the splits (train first), and the
COCO ``file_name`` is that bare name. Each tile lies in a projected CRS (the UTM zone of one of a
few cities on six continents, as the contest's 17 cities do).
"""

from __future__ import annotations

from collections.abc import Mapping
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.crs import CRS

from datamodules.synthetic.dfc2023.coco import (
    TileAnnotations,
    coco_document,
    visible_footprints,
    write_coco,
)
from datamodules.synthetic.dfc2023.optical import render_rgb
from datamodules.synthetic.dfc2023.sar import render_sar
from datamodules.synthetic.dfc2023.scene import PIXEL_SIZE_M, make_scene
from datamodules.synthetic.dfc2023.surface_model import render_ndsm
from datamodules.synthetic.geotiff import round_mantissa, round_to_step, write_geotiff
from datamodules.synthetic.stamp import build_dataset_folder

GENERATOR_VERSION = 1
"""Bump when the output of the same settings changes, so that stale folders are rebuilt."""

DATASET_NAME = "dfc2023"
DEFAULT_TILES_PER_SPLIT: dict[str, int] = {"train": 160, "val": 40, "test": 40}
DEFAULT_SIZE = 512

CITIES: tuple[tuple[int, float, float], ...] = (
    (32631, 430_000, 4_582_000),  # Barcelona-like
    (32633, 391_000, 5_820_000),  # Berlin-like
    (32651, 353_000, 3_462_000),  # Shanghai-like
    (32618, 585_000, 4_512_000),  # New York-like
    (32723, 683_000, 7_460_000),  # Rio de Janeiro-like
    (32737, 257_000, 9_857_000),  # Nairobi-like
    (32756, 334_000, 6_250_000),  # Sydney-like
)
"""(EPSG, easting, northing) of the places tiles are georeferenced around."""


def write_dfc2023(
    root: str | Path,
    seed: int = 0,
    tiles_per_split: Mapping[str, int] | None = None,
    size: int = DEFAULT_SIZE,
    force: bool = False,
    workers: int = 2,
) -> Path:
    """Generate the synthetic DFC2023 dataset under ``<root>/dfc2023`` (if not up to date).

    Args:
        root: data folder; the dataset goes to its ``dfc2023`` subfolder.
        seed: random seed; the same seed and settings give byte-identical files.
        tiles_per_split: number of tiles of each split (default 160 / 40 / 40).
        size: tile side in pixels (0.5 m each).
        force: regenerate even when the folder's stamp says it is up to date.
        workers: processes rendering tiles in parallel (1: no subprocess).

    Returns:
        The dataset folder.

    Raises:
        ValueError: if ``size`` is not positive or a tile count is negative.
        FileExistsError: if the dataset folder exists but was not written by this package.
    """
    counts = dict(DEFAULT_TILES_PER_SPLIT if tiles_per_split is None else tiles_per_split)
    if size < 1 or any(count < 0 for count in counts.values()):
        raise ValueError(f"size must be positive and tile counts non-negative: {size}, {counts}")
    dataset_dir = Path(root) / DATASET_NAME
    stamp = {
        "generator": "datamodules.synthetic",
        "dataset": DATASET_NAME,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "tiles_per_split": counts,
        "size": size,
    }

    def build(folder: Path) -> None:
        jobs, number = [], 1
        for split, count in counts.items():
            jobs += [(folder / split, seed, n, size) for n in range(number, number + count)]
            number += count
        if workers > 1 and len(jobs) > 1:
            with Pool(workers) as pool:
                tiles = pool.starmap(
                    _write_tile, jobs, chunksize=max(1, len(jobs) // (8 * workers))
                )
        else:
            tiles = [_write_tile(*job) for job in jobs]
        first = 0
        for split, count in counts.items():
            document = coco_document(tiles[first : first + count], first_image_id=first + 1)
            write_coco(folder / "annotations" / f"buildings_only_{split}.json", document)
            first += count

    build_dataset_folder(dataset_dir, stamp, build, force=force)
    return dataset_dir


def tile_name(number: int) -> str:
    """File name of tile ``number`` (1-based): ``P0001.tif``."""
    return f"P{number:04d}.tif"


def _write_tile(split_dir: Path, seed: int, number: int, size: int) -> TileAnnotations:
    """Lay out, render and write one tile; return its annotations."""
    layout_rng, rgb_rng, sar_rng, height_rng, place_rng = (
        np.random.default_rng(child) for child in np.random.SeedSequence([seed, number]).spawn(5)
    )
    scene = make_scene(layout_rng, size)
    epsg, easting, northing = CITIES[place_rng.integers(len(CITIES))]
    west = easting + place_rng.integers(-40, 40) * size * PIXEL_SIZE_M
    north = northing + place_rng.integers(-40, 40) * size * PIXEL_SIZE_M
    grid = {
        "crs": CRS.from_epsg(epsg),
        "transform": Affine(PIXEL_SIZE_M, 0, west, 0, -PIXEL_SIZE_M, north),
    }
    name = tile_name(number)
    write_geotiff(
        split_dir / "rgb" / name,
        render_rgb(rgb_rng, scene),
        descriptions=("red", "green", "blue"),
        jpeg_quality=95,
        **grid,
    )
    write_geotiff(
        split_dir / "sar" / name,
        round_mantissa(render_sar(sar_rng, scene), 8),
        descriptions=("amplitude",),
        **grid,
    )
    write_geotiff(
        split_dir / "height" / name,
        round_to_step(render_ndsm(height_rng, scene), -5),  # 3 cm
        descriptions=("ndsm",),
        **grid,
    )
    polygons = visible_footprints([b.polygon for b in scene.buildings], size, size)
    return TileAnnotations(file_name=name, width=size, height=size, polygons=polygons)
