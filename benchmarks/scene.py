"""Whole-scene prediction: the model's own tile throughput against the whole command's.

For the water model of ``experiments/segment_sen1floods11.yaml`` (S1 + S2 of a Sen1Floods11
chip: EPSG:4326, a 13-band L1C file, 64-pixel tiles at scale 2) and the land-cover model of
``experiments/segment_quad.yaml`` (S1, S2, DEM and the Dynamic World map, 256-pixel tiles),
both randomly initialised with their configs' hyper-parameters, on a synthetic ``size x size``
scene (default 2048), side by side:

- **model**: tiles already read and made into samples, in memory; only the forward passes
  (`SceneModel.predict` at the command's batch size and precision) are timed, just before and
  just after the command, the faster of the two counting;
- **command**: `fusion.scene.predict_scene` from the files to the COGs and the quick-look
  (reading, warping, preparing tiles in loader workers, the model, blending, writing).

The ratio of the command's tile throughput to the model's says how busy the command keeps the
machine (goal >= 0.8). Megapixels per second are scene pixels over the command's time. Peak
memory: the resident set of this process (reset before each case through
``/proc/self/clear_refs``) and the largest loader worker's.

    python -m benchmarks.scene [--size 2048] [--repeats 1] [--models water quad]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch
import yaml
from rasterio.transform import from_origin

from benchmarks.backbone import paired_ratio
from fusion.run.model_file import datamodule_from_section
from fusion.scene import SceneModel, load_scene_model, predict_scene
from fusion.scene.predict import SceneTiles, default_workers
from fusion.scene.sources import ModalityRaster, reference_grid, tile_windows
from fusion.tasks import SegmentationTask

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
PIXEL_DEGREES = 8.983152841195215e-05  # the Sen1Floods11 chip's pixel
UTM = "EPSG:32633"


@dataclass(frozen=True)
class SceneCase:
    """A model and its scene: the config it comes from and how to write its rasters."""

    config: str
    write: Callable[[Path, int], dict[str, Path]]


def field(size: int) -> np.ndarray:
    """A smooth pattern in [0.25, 0.75] over a ``size x size`` grid."""
    rows, cols = np.mgrid[0:size, 0:size] / 37.0
    return 0.5 + 0.25 * np.sin(rows) * np.cos(cols * 0.7)


def write_raster(path: Path, data: np.ndarray, crs: str, transform, nodata: float) -> Path:
    """A tiled GeoTIFF."""
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=len(data),
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
    ) as dst:
        dst.write(data)
    return path


def water_scene(folder: Path, size: int) -> dict[str, Path]:
    """S1 (2 bands, dB) and S2 L1C (13 bands) in EPSG:4326, as a Sen1Floods11 chip."""
    rng = np.random.default_rng(0)
    f = field(size)
    s1 = np.stack([-20 + 15 * f, -25 + 12 * f]) + rng.normal(0, 1, (2, size, size))
    s2 = np.stack([300 + 3000 * (f if b % 2 else 1 - f) for b in range(13)])
    transform = from_origin(-3.0, 40.0, PIXEL_DEGREES, PIXEL_DEGREES)
    return {
        "s1": write_raster(
            folder / "s1.tif", s1.astype(np.float32), "EPSG:4326", transform, np.nan
        ),
        "s2": write_raster(folder / "s2.tif", s2.astype(np.uint16), "EPSG:4326", transform, 0),
    }


def quad_scene(folder: Path, size: int) -> dict[str, Path]:
    """S1, S2 (4 bands), DEM and the Dynamic World map on one 10 m UTM grid."""
    rng = np.random.default_rng(0)
    f = field(size)
    transform = from_origin(500000.0, 5000000.0, 10.0, 10.0)
    s1 = np.stack([-12 + 8 * f, -19 + 8 * f]) + rng.normal(0, 1, (2, size, size))
    s2 = np.stack([300 + 2000 * (f if b % 2 else 1 - f) for b in range(4)])
    dem = 200 + 300 * f[None]
    dnw = (f[None] * 8.99).astype(np.uint8)
    return {
        "s1": write_raster(folder / "s1.tif", s1.astype(np.float32), UTM, transform, np.nan),
        "s2": write_raster(folder / "s2.tif", s2.astype(np.uint16), UTM, transform, 0),
        "dem": write_raster(folder / "dem.tif", dem.astype(np.float32), UTM, transform, np.nan),
        "dnw": write_raster(folder / "dnw.tif", dnw, UTM, transform, 255),
    }


CASES = {
    "water": SceneCase("segment_sen1floods11.yaml", water_scene),
    "quad": SceneCase("segment_quad.yaml", quad_scene),
}


def scene_model(folder: Path, config_name: str) -> SceneModel:
    """A randomly initialised model of an experiment config, saved as a run and loaded."""
    config = yaml.safe_load((EXPERIMENTS / config_name).read_text())
    data = config["data"]
    dataset_class = datamodule_from_section(data).dataset_class
    names = data["init_args"].get("modalities") or list(dataset_class.all_modalities)
    specs = {name: dataset_class.all_modalities[name].spec for name in names}
    task = SegmentationTask(specs, **config["model"]["init_args"])
    hparams = {**task.hparams, "_class_path": "fusion.tasks.SegmentationTask"}
    checkpoint = folder / "run/checkpoints/last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, checkpoint)
    (folder / "run/config.yaml").write_text(yaml.safe_dump({"data": data}))
    return load_scene_model(checkpoint, device="cpu")


def in_memory_tiles(model: SceneModel, rasters: dict[str, Path], count: int) -> list[dict]:
    """The first ``count`` tiles of the scene, read and made into samples."""
    grid = reference_grid(next(iter(rasters.values())))
    sources = {
        name: ModalityRaster(name, path, model.modality_info[name], grid)
        for name, path in rasters.items()
    }
    tile = model.tile_pixels
    windows = tile_windows(next(iter(sources.values())), tile, tile // 2)
    dataset = SceneTiles(sources, windows, model.pipeline, tile)
    samples = [dataset[index]["sample"] for index in range(min(count, len(dataset)))]
    for source in sources.values():
        source.close()
    return samples


def reset_peak_memory() -> bool:
    """Reset this process's peak resident set (Linux); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_memory_mib() -> float:
    """This process's peak resident set since the last reset, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_case(name: str, size: int, repeats: int, model_tiles: int) -> dict[str, float]:
    """Times the model alone and the command on one case, interleaved; prints and returns."""
    case = CASES[name]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rasters = case.write(folder, size)
        model = scene_model(folder, case.config)
        batch = model.default_batch_size()

        def model_alone() -> float:
            # The tiles are read again each time, so that the command's peak memory does not
            # count them.
            samples = in_memory_tiles(model, rasters, model_tiles)
            model.predict(samples[:batch], model.tile_pixels)  # warm-up
            start = time.perf_counter()
            for first in range(0, len(samples), batch):
                model.predict(samples[first : first + batch], model.tile_pixels)
            return (time.perf_counter() - start) / len(samples)

        def command() -> tuple[float, int]:
            result = predict_scene(
                model, rasters, folder / "map.tif", overwrite=True, progress=False
            )
            return result.seconds, result.predicted

        per_tile_model, per_tile_command, seconds, memory = [], [], [], []
        tiles = 0
        for _ in range(repeats):
            before = model_alone()
            reset_peak_memory()
            took, tiles = command()
            memory.append(peak_memory_mib())
            # The model alone just before and just after the command; the faster of the two is
            # its speed undisturbed (a slow phase of a shared machine only slows a case down).
            per_tile_model.append(min(before, model_alone()))
            seconds.append(took)
            per_tile_command.append(took / tiles)
    workers_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    ratio = paired_ratio(per_tile_model, per_tile_command)
    best = min(seconds)
    row = {
        "model_tiles_per_s": 1 / min(per_tile_model),
        "command_tiles_per_s": tiles / best,
        "ratio": ratio,
        "mpx_per_s": size * size / 1e6 / best,
        "seconds": best,
        "tiles": tiles,
        "peak_mib": max(memory),
        "worker_peak_mib": workers_peak,
        "batch": batch,
    }
    print(
        f"  {name:<6s} {row['tiles']:5d} tiles {model.tile_pixels:4d} px  batch {batch:2d}  "
        f"model {row['model_tiles_per_s']:6.2f} tiles/s  command "
        f"{row['command_tiles_per_s']:6.2f} tiles/s  ratio {ratio:4.2f}  "
        f"{row['mpx_per_s']:6.3f} Mpx/s ({best:5.1f} s)  peak {row['peak_mib']:5.0f} MiB "
        f"(workers {workers_peak:4.0f} MiB)"
    )
    return row


def main(argv: Sequence[str] = ()) -> dict[str, dict[str, float]]:
    """Measures and prints every case; returns the rows by case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene side, pixels")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--model_tiles", type=int, default=160, help="tiles held in memory for the model alone"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = torch.device("cpu")
    print(
        f"\nScene prediction on a {args.size} x {args.size} scene, {torch.get_num_threads()} "
        f"torch threads, {default_workers(device)} loader worker(s); model alone = tiles in "
        f"memory, command = fusion predict-scene end to end; best of {args.repeats}"
    )
    rows = {
        name: measure_case(name, args.size, args.repeats, args.model_tiles) for name in args.models
    }
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
