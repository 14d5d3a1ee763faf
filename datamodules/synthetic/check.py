"""How informative is each modality subset of the synthetic data? A per-pixel Bayes classifier.

Usage::

    python -m datamodules.synthetic.check --root data [--dataset quadruplets|dfc2023|all]

A Gaussian / categorical Bayes classifier (`datamodules.synthetic.gaussian_bayes`) is fitted
on per-pixel features of the training tiles and scored on the validation and test tiles, for every
non-empty subset of modalities. It sees single pixels only (no shapes, no context), so it is a
floor for what a network can do, but it shows how the modalities differ. Features:

- quadruplets: Sentinel-1 VV, VH (3 x 3 mean, dB); Sentinel-2 B2, B3, B4, B8 and NDVI; DEM
  elevation and slope relative to the tile (so that regions of different relief compare);
  Dynamic World class. Target: the seven merged UrbanAtlas classes (no-data pixels left out),
  each modelled as a mixture over its UrbanAtlas codes.
- dfc2023: RGB; SAR in dB (5 x 5 mean); nDSM. Target: building / not building from the COCO
  polygons.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import rasterio

from datamodules.landcover import (
    DYNAMIC_WORLD_CLASSES,
    LANDCOVER_CLASSES,
    URBAN_ATLAS_CODES,
)
from datamodules.synthetic.gaussian_bayes import GaussianBayes, confusion_scores
from datamodules.synthetic.raster_ops import polygon_mask

QUADRUPLET_MODALITIES = ("s1", "s2", "dem", "dnw")
DFC2023_MODALITIES = ("rgb", "sar", "height")
URBAN_ATLAS_ORDER = np.array(sorted(URBAN_ATLAS_CODES))
"""The UrbanAtlas codes in subclass order."""
CODE_TO_CLASS = np.array([URBAN_ATLAS_CODES[code][1] for code in URBAN_ATLAS_ORDER])
"""Merged class of each UrbanAtlas subclass."""


@dataclass(frozen=True)
class PixelSet:
    """Per-pixel features and targets of a set of tiles.

    Attributes:
        features: modality -> ``[N, F]`` continuous features or ``[N]`` class ids.
        subclasses: ``[N]`` fine labels (UrbanAtlas code order, or the target class itself).
    """

    features: dict[str, np.ndarray]
    subclasses: np.ndarray


@dataclass(frozen=True)
class SubsetScore:
    """Scores of one modality subset on the evaluation pixels.

    Attributes:
        modalities: the subset.
        accuracy: overall pixel accuracy.
        miou: mean intersection over union over the classes present.
        iou: ``[K]`` per-class IoU.
    """

    modalities: tuple[str, ...]
    accuracy: float
    miou: float
    iou: np.ndarray


def modality_subsets(modalities: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Every non-empty subset, smallest first, in the order of ``modalities``."""
    for size in range(1, len(modalities) + 1):
        yield from combinations(modalities, size)


def quadruplet_pixels(dataset_dir: Path, splits: Sequence[str], stride: int = 4) -> PixelSet:
    """Read every ``stride``-th pixel (in rows and columns) of the tiles of some splits.

    Args:
        dataset_dir: the ``quadruplets`` folder.
        splits: split names whose regions are read (see ``splits.json``).
        stride: subsampling step.

    Returns:
        Features of the four modalities and the UrbanAtlas code (as an index into
        `URBAN_ATLAS_ORDER`) of the pixels with a label and valid Sentinel-2 data.
    """
    regions = json.loads((dataset_dir / "splits.json").read_text())
    groups: dict[str, list[np.ndarray]] = {name: [] for name in QUADRUPLET_MODALITIES}
    labels = []
    for split in splits:
        for region in regions[split]:
            for tile in sorted((dataset_dir / region / "label").glob("*.tif")):
                rasters = {
                    m: _read(dataset_dir / region / m / tile.name)
                    for m in (*QUADRUPLET_MODALITIES, "label")
                }
                tile_features = _quadruplet_features(rasters)
                codes = rasters["label"][0]
                keep = np.isin(codes, URBAN_ATLAS_ORDER) & (rasters["s2"] > 0).all(axis=0)
                sample = np.zeros_like(keep)
                sample[::stride, ::stride] = True
                keep &= sample
                for name, values in tile_features.items():
                    groups[name].append(values[keep])
                labels.append(np.searchsorted(URBAN_ATLAS_ORDER, codes[keep]))
    features = {name: np.concatenate(parts) for name, parts in groups.items()}
    return PixelSet(features, np.concatenate(labels))


def _quadruplet_features(rasters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-pixel features ``[H, W, F]`` (``[H, W]`` for Dynamic World) of one quadruplet tile."""
    s1 = np.stack([cv2.blur(band, (3, 3)) for band in rasters["s1"].astype(np.float32)], axis=-1)
    s2 = rasters["s2"].astype(np.float32).transpose(1, 2, 0) / 10000
    ndvi = (s2[..., 3] - s2[..., 2]) / np.maximum(s2[..., 3] + s2[..., 2], 1e-3)
    elevation = rasters["dem"][0].astype(np.float32)
    d_row, d_col = np.gradient(elevation, 10.0)
    slope = np.degrees(np.arctan(np.hypot(d_row, d_col)))
    return {
        "s1": s1,
        "s2": np.concatenate([s2, ndvi[..., None]], axis=-1),
        "dem": np.stack(
            [
                (elevation - np.median(elevation)) / (elevation.std() + 5),
                slope / (slope.mean() + 1),
            ],
            axis=-1,
        ),
        "dnw": rasters["dnw"][0],
    }


def dfc2023_pixels(dataset_dir: Path, splits: Sequence[str], stride: int = 4) -> PixelSet:
    """Read every ``stride``-th pixel of the DFC2023 tiles of some splits.

    Args:
        dataset_dir: the ``dfc2023`` folder.
        splits: split names.
        stride: subsampling step.

    Returns:
        Features of RGB, SAR and nDSM, and building (1) / background (0) targets.
    """
    groups: dict[str, list[np.ndarray]] = {name: [] for name in DFC2023_MODALITIES}
    labels = []
    for split in splits:
        coco = json.loads(
            (dataset_dir / "annotations" / f"buildings_only_{split}.json").read_text()
        )
        polygons: dict[int, list[np.ndarray]] = {}
        for annotation in coco["annotations"]:
            polygon = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
            polygons.setdefault(annotation["image_id"], []).append(polygon)
        for image in coco["images"]:
            rasters = {
                m: _read(dataset_dir / split / m / image["file_name"]) for m in DFC2023_MODALITIES
            }
            shape = (image["height"], image["width"])
            building = np.zeros(shape, dtype=bool)
            for polygon in polygons.get(image["id"], []):
                building |= polygon_mask(polygon, shape)
            sar_db = 10 * np.log10(np.clip(rasters["sar"][0], 10**-2.5, 1.0))
            tile_features = {
                "rgb": rasters["rgb"].astype(np.float32).transpose(1, 2, 0),
                "sar": cv2.blur(sar_db, (5, 5))[..., None],
                "height": rasters["height"][0][..., None],
            }
            for name, values in tile_features.items():
                groups[name].append(values[::stride, ::stride].reshape(-1, values.shape[-1]))
            labels.append(building[::stride, ::stride].ravel().astype(np.int64))
    features = {name: np.concatenate(parts) for name, parts in groups.items()}
    return PixelSet(features, np.concatenate(labels))


def score_subsets(
    train: PixelSet,
    evaluation: PixelSet,
    modalities: Sequence[str],
    subclass_to_class: np.ndarray,
    categories: dict[str, int] | None = None,
) -> list[SubsetScore]:
    """Fit the classifier on ``train`` once and score every modality subset on ``evaluation``.

    Args:
        train: training pixels.
        evaluation: evaluation pixels.
        modalities: modality names (feature groups).
        subclass_to_class: ``[S]`` target class of each subclass.
        categories: number of categories of the categorical modalities.

    Returns:
        One score per non-empty subset, smallest subsets first.
    """
    model = GaussianBayes(subclass_to_class, categories or {}).fit(train.features, train.subclasses)
    truth = subclass_to_class[evaluation.subclasses]
    num_classes = int(subclass_to_class.max()) + 1
    scores = []
    for subset in modality_subsets(modalities):
        predicted = model.predict(evaluation.features, subset)
        result = confusion_scores(predicted, truth, num_classes)
        scores.append(SubsetScore(subset, result["accuracy"], result["miou"], result["iou"]))
    return scores


def quadruplet_table(dataset_dir: Path, stride: int = 4) -> list[SubsetScore]:
    """Scores of the 15 modality subsets of the quadruplets (train -> val + test regions)."""
    return score_subsets(
        quadruplet_pixels(dataset_dir, ["train"], stride),
        quadruplet_pixels(dataset_dir, ["val", "test"], stride),
        QUADRUPLET_MODALITIES,
        CODE_TO_CLASS,
        {"dnw": len(DYNAMIC_WORLD_CLASSES)},
    )


def dfc2023_table(dataset_dir: Path, stride: int = 4) -> list[SubsetScore]:
    """Scores of the 7 modality subsets of DFC2023 (train -> val + test tiles)."""
    return score_subsets(
        dfc2023_pixels(dataset_dir, ["train"], stride),
        dfc2023_pixels(dataset_dir, ["val", "test"], stride),
        DFC2023_MODALITIES,
        np.array([0, 1]),
    )


def format_table(scores: Sequence[SubsetScore], class_names: Sequence[str]) -> str:
    """A Markdown table: subset, accuracy, mean IoU and per-class IoU."""
    header = ["modalities", "pixel acc.", "mIoU", *class_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for score in scores:
        cells = [" + ".join(score.modalities), f"{score.accuracy:.3f}", f"{score.miou:.3f}"]
        cells += [f"{value:.2f}" for value in score.iou]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _read(path: Path) -> np.ndarray:
    """All bands of a raster."""
    with rasterio.open(path) as source:
        return source.read()


def main(argv: list[str] | None = None) -> None:
    """Print the tables for the datasets found under ``--root``.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"))
    parser.add_argument("--dataset", choices=["quadruplets", "dfc2023", "all"], default="all")
    parser.add_argument("--stride", type=int, default=4, help="pixel subsampling step")
    args = parser.parse_args(argv)
    if args.dataset in ("quadruplets", "all"):
        print("quadruplets: per-pixel Gaussian Bayes, train regions -> val + test regions")
        print(
            format_table(
                quadruplet_table(args.root / "quadruplets", args.stride), LANDCOVER_CLASSES
            )
        )
    if args.dataset in ("dfc2023", "all"):
        print("dfc2023: per-pixel Gaussian Bayes, train tiles -> val + test tiles")
        print(
            format_table(
                dfc2023_table(args.root / "dfc2023", args.stride), ("background", "building")
            )
        )


if __name__ == "__main__":
    main()
