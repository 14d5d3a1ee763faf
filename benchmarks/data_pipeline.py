"""Data-pipeline throughput of every DataModule at the paper's 256 x 256, with 0 and 2 workers.

Each DataModule is read as training reads it (random modality subsets, augmentation,
normalization, collation), batch 16. Beside it, the throughput of one pretraining step of
ViT-T at the same size, in the precision training uses on this CPU (`benchmarks.machine`), so
the two can be compared: the loader must deliver samples faster than training consumes them.

    python -m benchmarks.data_pipeline [--data data] [--batches 12]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from benchmarks.machine import autocast_for, training_precision
from datamodules import DFC2023DataModule, QuadrupletsDataModule, Sen1Floods11DataModule
from datamodules.datamodule import MultimodalDataModule
from datamodules.sen1floods11 import SHARED_CHIP_FOLDER
from fusion.tasks import PretrainTask

BATCH_SIZE = 16
IMAGE_SIZE = 256


def datamodules(data: Path, num_workers: int) -> dict[str, MultimodalDataModule]:
    """The benchmarked DataModules, reading at 256 x 256."""
    common = {"batch_size": BATCH_SIZE, "num_workers": num_workers, "image_size": IMAGE_SIZE}
    modules = {
        "DFC2023 (512 px tiles resized)": DFC2023DataModule(root=str(data / "dfc2023"), **common),
        "Quadruplets (256 px tiles)": QuadrupletsDataModule(
            root=str(data / "quadruplets"), **common
        ),
    }
    if SHARED_CHIP_FOLDER.is_dir():
        modules["Sen1Floods11 (128 px tiles upsampled)"] = Sen1Floods11DataModule(
            tile_size=128, stride=16, **common
        )
    return modules


def loader_throughput(datamodule: MultimodalDataModule, batches: int) -> float:
    """Samples per second over ``batches`` training batches, after one warm-up batch."""
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    stream = itertools.chain.from_iterable(itertools.repeat(loader))
    next(stream)  # workers start, caches warm
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return batches * BATCH_SIZE / (time.perf_counter() - start)


def pretraining_throughput(datamodule: MultimodalDataModule, steps: int = 3) -> float:
    """Samples per second of ViT-T pretraining steps (forward, backward, AdamW).

    Runs in the precision training would use on this CPU (bf16 autocast or float32).
    """
    datamodule.setup("fit")
    batch = next(iter(datamodule.train_dataloader()))
    task = PretrainTask(datamodule.modality_specs, img_size=IMAGE_SIZE)
    task.log = lambda *args, **kwargs: None
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    precision = training_precision()

    def step() -> None:
        with autocast_for(precision):
            loss, _ = task.shared_step(batch, "train", 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * BATCH_SIZE / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--batches", type=int, default=12)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    precision = training_precision().precision
    print(f"\nData pipeline, training split, batch {BATCH_SIZE}, {IMAGE_SIZE} x {IMAGE_SIZE}")
    print(f"(ViT-T pretraining step in {precision}, the precision training uses on this CPU)")
    print(f"{'DataModule':38s} {'0 workers':>12s} {'2 workers':>12s} {'ViT-T step':>12s} ratio")
    for name in datamodules(args.data, 0):
        rates = [
            loader_throughput(datamodules(args.data, workers)[name], args.batches)
            for workers in (0, 2)
        ]
        training = pretraining_throughput(datamodules(args.data, 0)[name])
        print(
            f"{name:38s} {rates[0]:8.0f} s/s {rates[1]:8.0f} s/s {training:8.1f} s/s "
            f"{rates[1] / training:5.1f}x"
        )
    print("s/s: samples per second; ratio: 2-worker loading over pretraining consumption.")


if __name__ == "__main__":
    main()
