"""Whole-scene prediction speed with one modality against both, in megapixels per second.

``fusion predict-scene`` runs the water model of ``experiments/segment_sen1floods11.yaml``
(ViT-T + Mask2Former with 2 queries, 128 x 128 model tiles = 64 x 64 scene pixels, scale 2,
tiles overlapping by half) on a synthetic Sentinel-1 + Sentinel-2 scene laid out like a
Sen1Floods11 chip (EPSG:4326, 13-band L1C file), with S1 alone, S2 alone and both, side by side
and interleaved, in the precision training uses on this CPU (`benchmarks.machine`). The whole
command is timed (reading and warping, the model, blending, the COG), except the quick-look.
A modality that is absent costs no tokens, but the fusion tokens, the pyramid and the
Mask2Former head run in full whatever is present, so one modality saves less than half.

    python -m benchmarks.scene [--size 512] [--repeats 3] [--warmup 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml
from rasterio.transform import from_origin

from benchmarks.backbone import measure, paired_ratio
from benchmarks.machine import autocast_for, training_precision
from fusion.scene import SceneModel, load_scene_model, predict_scene
from fusion.tasks import SegmentationTask

MODEL = dict(num_classes=2, num_queries=2, img_size=128, patch_size=16)
"""The water model of experiments/segment_sen1floods11.yaml (ViT-T and the head's defaults)."""
PIXEL_DEGREES = 8.983152841195215e-05  # the Sen1Floods11 chip's pixel


def write_scene(folder: Path, size: int, seed: int = 0) -> dict[str, Path]:
    """Synthetic ``size x size`` S1 (2 bands, dB) and S2 L1C (13 bands) rasters on one grid."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:size, 0:size] / 37.0
    field = 0.5 + 0.25 * np.sin(rows) * np.cos(cols * 0.7)
    s1 = np.stack([-20 + 15 * field, -25 + 12 * field]) + rng.normal(0, 1, (2, size, size))
    s2 = np.stack([300 + 3000 * (field if b % 2 else 1 - field) for b in range(13)])
    transform = from_origin(-3.0, 40.0, PIXEL_DEGREES, PIXEL_DEGREES)
    paths = {}
    for name, data, nodata in (
        ("s1", s1.astype(np.float32), np.nan),
        ("s2", s2.astype(np.uint16), 0),
    ):
        paths[name] = folder / f"{name}.tif"
        with rasterio.open(
            paths[name],
            "w",
            driver="GTiff",
            width=size,
            height=size,
            count=len(data),
            dtype=data.dtype,
            crs="EPSG:4326",
            transform=transform,
            nodata=nodata,
            tiled=True,
        ) as dst:
            dst.write(data)
    return paths


def scene_model(folder: Path) -> SceneModel:
    """A randomly initialised water model saved as a run: checkpoint and config."""
    task = SegmentationTask({"s1": 2, "s2": 4}, **MODEL)
    hparams = {**task.hparams, "_class_path": "fusion.tasks.SegmentationTask"}
    checkpoint = folder / "run/checkpoints/last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, checkpoint)
    config = {
        "data": {
            "class_path": "datamodules.Sen1Floods11DataModule",
            "init_args": {"tile_size": 64, "image_size": MODEL["img_size"]},
        }
    }
    (folder / "run/config.yaml").write_text(yaml.safe_dump(config))
    return load_scene_model(checkpoint, device="cpu")


def scene_cases(folder: Path, size: int) -> dict[str, Callable[[], None]]:
    """One scene prediction per modality subset, sharing one model."""
    rasters = write_scene(folder, size)
    model = scene_model(folder)
    precision = training_precision()

    def run(names: tuple[str, ...]) -> Callable[[], None]:
        def case() -> None:
            with autocast_for(precision):
                predict_scene(
                    model,
                    {name: rasters[name] for name in names},
                    folder / f"map_{'_'.join(names)}.tif",
                    overwrite=True,
                    progress=False,
                    quicklook=False,
                )

        return case

    return {
        "S1 only": run(("s1",)),
        "S2 only": run(("s2",)),
        "S1 + S2": run(("s1", "s2")),
    }


def main(argv: Sequence[str] = ()) -> dict[str, float]:
    """Measures and prints the comparison; returns megapixels per second by case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="scene side, pixels")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    precision = training_precision().precision
    with tempfile.TemporaryDirectory() as folder:
        times = measure(scene_cases(Path(folder), args.size), args.repeats, args.warmup)
    megapixels = args.size**2 / 1e6
    speeds = {name: megapixels / statistics.median(values) for name, values in times.items()}
    print(
        f"\nScene prediction (ViT-T + Mask2Former water model, {args.size} x {args.size} "
        f"scene, 64-pixel tiles overlapping by half, {precision}), medians of "
        f"{args.repeats} interleaved repetitions"
    )
    for name, speed in speeds.items():
        print(f"  {name:<10s} {speed:8.3f} Mpx/s")
    full = times["S1 + S2"]
    for name in ("S1 only", "S2 only"):
        print(f"  {name} / S1 + S2 speed: {paired_ratio(full, times[name]):.2f}")
    return speeds


if __name__ == "__main__":
    main(sys.argv[1:])
