"""Synthetic Earth-Engine quadruplets: Sentinel-1, Sentinel-2, DEM, Dynamic World + UrbanAtlas.

Layout written under ``<root>/quadruplets/`` (10 m pixels, one projected CRS per region)::

    splits.json                   {"train": [regions], "val": [...], "test": [...]}
    <region>/s1/<tile>.tif        float32 VV, VH backscatter in dB
    <region>/s2/<tile>.tif        uint16 B2, B3, B4, B8 reflectance x 10000, 0 = no data
    <region>/dem/<tile>.tif       float32 elevation in metres
    <region>/dnw/<tile>.tif       uint8 Dynamic World label 0..8
    <region>/label/<tile>.tif     uint16 UrbanAtlas 2018 code, 0 = no data

Each region is one continuous scene (terrain, water, towns, fields, forest) rendered by every
sensor and cut into tiles ``<region>_rRR_cCC`` that lie side by side.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

import numpy as np

from datamodules.synthetic.quadruplets.dynamic_world import simulate_dynamic_world
from datamodules.synthetic.quadruplets.land_cover_map import make_land_cover_map
from datamodules.synthetic.quadruplets.regions import REGIONS, REGIONS_BY_NAME, RegionStyle
from datamodules.synthetic.quadruplets.sentinel1 import simulate_sentinel1
from datamodules.synthetic.quadruplets.sentinel2 import simulate_sentinel2
from datamodules.synthetic.quadruplets.terrain import make_terrain
from datamodules.synthetic.quadruplets.tiles import RegionRasters, tile_grid, write_region_tiles
from datamodules.synthetic.stamp import build_dataset_folder

GENERATOR_VERSION = 1
"""Bump when the output of the same settings changes, so that stale folders are rebuilt."""

DATASET_NAME = "quadruplets"
DEFAULT_TILES_PER_REGION = 24
DEFAULT_SIZE = 256
SPLITS = ("train", "val", "test")


def write_quadruplets(
    root: str | Path,
    seed: int = 0,
    tiles_per_region: int = DEFAULT_TILES_PER_REGION,
    size: int = DEFAULT_SIZE,
    regions: Sequence[str] | None = None,
    force: bool = False,
    workers: int = 2,
) -> Path:
    """Generate the synthetic quadruplet dataset under ``<root>/quadruplets`` (if not up to date).

    Args:
        root: data folder; the dataset goes to its ``quadruplets`` subfolder.
        seed: random seed; the same seed and settings give byte-identical files.
        tiles_per_region: tiles per region.
        size: tile side in pixels (10 m each).
        regions: names of the regions to write (see `REGIONS`), None for all fourteen.
        force: regenerate even when the folder's stamp says it is up to date.
        workers: processes rendering regions in parallel (1: no subprocess).

    Returns:
        The dataset folder.

    Raises:
        KeyError: if a region name is unknown.
        ValueError: if ``tiles_per_region`` or ``size`` is not positive.
        FileExistsError: if the dataset folder exists but was not written by this package.
    """
    if tiles_per_region < 1 or size < 1:
        raise ValueError(
            f"tiles_per_region and size must be positive, got {tiles_per_region}, {size}"
        )
    styles = [REGIONS_BY_NAME[name] for name in regions] if regions is not None else list(REGIONS)
    dataset_dir = Path(root) / DATASET_NAME
    stamp = {
        "generator": "datamodules.synthetic",
        "dataset": DATASET_NAME,
        "version": GENERATOR_VERSION,
        "seed": seed,
        "tiles_per_region": tiles_per_region,
        "size": size,
        "regions": [style.name for style in styles],
    }

    def build(folder: Path) -> None:
        jobs = [(folder, style, seed, tiles_per_region, size) for style in styles]
        if workers > 1 and len(jobs) > 1:
            with Pool(min(workers, len(jobs))) as pool:
                pool.starmap(_write_region, jobs, chunksize=1)
        else:
            for job in jobs:
                _write_region(*job)
        splits = {split: [s.name for s in styles if s.split == split] for split in SPLITS}
        (folder / "splits.json").write_text(json.dumps(splits, indent=2) + "\n")

    build_dataset_folder(dataset_dir, stamp, build, force=force)
    return dataset_dir


def _write_region(folder: Path, style: RegionStyle, seed: int, tiles: int, size: int) -> list[str]:
    """Render one region's canvas with every sensor and write its tiles."""
    region_number = [region.name for region in REGIONS].index(style.name)
    streams = [
        np.random.default_rng(child)
        for child in np.random.SeedSequence([seed, region_number]).spawn(6)
    ]
    rows, columns = tile_grid(tiles)
    shape = (rows * size, columns * size)
    terrain = make_terrain(streams[0], shape, style)
    land_cover = make_land_cover_map(streams[1], terrain, style)
    rasters = RegionRasters(
        sentinel1=simulate_sentinel1(streams[2], terrain, land_cover, style),
        sentinel2=simulate_sentinel2(streams[3], terrain, land_cover, style),
        elevation_m=terrain.elevation_m,
        dynamic_world=simulate_dynamic_world(streams[4], terrain, land_cover, style),
        codes=land_cover.codes,
    )
    return write_region_tiles(streams[5], folder / style.name, style, rasters, tiles, size)
