"""The command that recomputes a dataset's normalization statistics (`datamodules.stats`).

It reads a split once and writes ``{modality: {"mean": [...], "std": [...]}}`` over the valid
pixels::

    python -m datamodules.normalization quadruplets --root /data/quad --split train --out quad.json

The file is passed to the dataset (or DataModule) as ``stats="quad.json"``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

import datamodules
from datamodules.stats import Stats

if TYPE_CHECKING:
    from datamodules.dataset import MultimodalDataset


def compute_stats(dataset: MultimodalDataset, max_samples: int | None = None) -> Stats:
    """Compute per-channel mean and standard deviation over the valid pixels of a dataset.

    Reads each tile once, with every modality, before resizing and augmentation; no-data pixels
    are left out.

    Args:
        dataset: the dataset (normally a training split).
        max_samples: use only the first ``max_samples`` tiles.

    Returns:
        Statistics for every continuous modality of the dataset.
    """
    continuous = [m for m in dataset.modalities if not dataset.modality_info[m].categorical]
    count = {m: 0 for m in continuous}
    total = {m: np.zeros(dataset.modality_info[m].bands) for m in continuous}
    squares = {m: np.zeros(dataset.modality_info[m].bands) for m in continuous}
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    for index in tqdm(range(n), desc="normalization statistics", unit="tile"):
        for name, raster in dataset.read_modalities(index, continuous).items():
            pixels = raster.data.reshape(raster.data.shape[0], -1).astype(np.float64)
            if raster.nodata is not None:
                pixels = pixels[:, ~raster.nodata.ravel()]
            count[name] += pixels.shape[1]
            total[name] += pixels.sum(axis=1)
            squares[name] += (pixels**2).sum(axis=1)
    stats: Stats = {}
    for name in continuous:
        mean = total[name] / max(count[name], 1)
        var = squares[name] / max(count[name], 1) - mean**2
        std = np.sqrt(np.maximum(var, 1e-12))
        stats[name] = {"mean": mean.round(6).tolist(), "std": std.round(6).tolist()}
    return stats


def main(argv: list[str] | None = None) -> None:
    """Command line: recompute a dataset's statistics on a split and print or save them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(datamodules.DATASETS))
    parser.add_argument("--root", required=True, help="dataset folder")
    parser.add_argument("--split", default="train")
    parser.add_argument("--max-samples", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    dataset = datamodules.DATASETS[args.dataset](root=args.root, split=args.split)
    text = json.dumps(compute_stats(dataset, args.max_samples), indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)


if __name__ == "__main__":
    main()
