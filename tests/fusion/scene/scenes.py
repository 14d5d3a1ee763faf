"""Tiny segmentation checkpoints and generated scenes in two CRSs for the scene tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml
from rasterio.transform import Affine, from_origin
from rasterio.warp import transform, transform_bounds

from fusion.tasks import SegmentationTask
from tests.data.geotiff import write_tif

UTM = "EPSG:32633"
ORIGIN = (500000.0, 5000000.0)  # x, y of the reference's upper-left corner, metres
PIXEL = 10.0
TINY = dict(
    img_size=32,
    patch_size=8,
    embed_dim=32,
    depth=2,
    num_heads=2,
    hidden_dim=32,
    decoder_layers=2,
    decoder_heads=4,
    encoder_feedforward_dim=64,
    decoder_feedforward_dim=64,
    train_num_points=256,
)
"""A model of 32 x 32 tiles: 32 reference pixels per tile at scale 1."""


def tiny_task(task: str = "semantic", seed: int = 0, **kwargs) -> SegmentationTask:
    """A random model whose class head is sharpened, so that its inputs matter visibly."""
    torch.manual_seed(seed)
    classes = 2 if task == "semantic" else 1
    settings = dict(num_classes=classes, num_queries=3, task=task, top_k=3)
    model = SegmentationTask({"s1": 2, "s2": 4}, **{**settings, **TINY, **kwargs}).eval()
    with torch.no_grad():
        model.head.class_head.weight.mul_(20)
        if task == "instance":  # buildings rather than "no object"
            model.head.class_head.bias.copy_(torch.tensor([1.0, -1.0]))
    return model


def save_checkpoint(
    task: SegmentationTask, path: Path, datamodule: str = "Sen1Floods11DataModule"
) -> Path:
    """A Lightning-style checkpoint of ``task``; the DataModule is named as Lightning does."""
    hparams = {**task.hparams, "_class_path": "fusion.tasks.SegmentationTask"}
    checkpoint = {"state_dict": task.state_dict(), "hyper_parameters": hparams}
    if datamodule:
        checkpoint[datamodule] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def write_run_config(run: Path, **init_args) -> Path:
    """The ``config.yaml`` that ``fusion fit`` writes beside ``checkpoints/``."""
    config = {"data": {"class_path": "datamodules.Sen1Floods11DataModule", "init_args": init_args}}
    path = run / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def pattern(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth field of map coordinates (metres in the reference CRS), in [0, 1]."""
    return 0.5 + 0.25 * np.sin(x / 170.0) + 0.25 * np.cos(y / 230.0 + x / 400.0)


def write_s1(path: Path, width: int, height: int, constant: float | None = None) -> Path:
    """Sentinel-1-like dB (2 bands, float32, NaN no data) on the UTM reference grid."""
    cols, rows = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    x, y = ORIGIN[0] + cols * PIXEL, ORIGIN[1] - rows * PIXEL
    field = pattern(x, y) if constant is None else np.full(x.shape, constant)
    data = np.stack([-20 + 15 * field, -25 + 12 * field[::-1]]).astype(np.float32)
    return write(path, data, UTM, from_origin(*ORIGIN, PIXEL, PIXEL), nodata=np.nan)


def write_s2(
    path: Path,
    width: int,
    height: int,
    constant: float | None = None,
    keep: slice | None = None,
) -> Path:
    """Sentinel-2-like L1C (13 bands, uint16, 0 no data) in EPSG:4326, over the UTM scene.

    Its own grid (about 8 x 11 m pixels) covers the reference area with a margin; ``keep``
    keeps only those of its columns (the rest is no data).
    """
    left, top = ORIGIN
    right, bottom = left + width * PIXEL, top - height * PIXEL
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", left, bottom, right, top)
    step = 1e-4
    west, north = west - 5 * step, north + 5 * step
    columns = int(np.ceil((east - west) / step)) + 10
    lines = int(np.ceil((north - south) / step)) + 10
    lon, lat = np.meshgrid(
        west + (np.arange(columns) + 0.5) * step, north - (np.arange(lines) + 0.5) * step
    )
    x, y = transform("EPSG:4326", UTM, lon.ravel(), lat.ravel())
    field = pattern(np.reshape(x, lon.shape), np.reshape(y, lon.shape))
    if constant is not None:
        field = np.full(lon.shape, constant)
    bands = np.stack([300 + 3000 * (field if b % 2 else 1 - field) for b in range(13)])
    data = bands.astype(np.uint16)
    if keep is not None:
        mask = np.ones(columns, dtype=bool)
        mask[keep] = False
        data[:, :, mask] = 0
    return write(path, data, "EPSG:4326", from_origin(west, north, step, step), nodata=0)


def write(path: Path, data: np.ndarray, crs: str, affine: Affine, nodata: float | None) -> Path:
    """Writes ``data`` [C, H, W] as a GeoTIFF in ``crs`` with the ``affine`` transform."""
    return write_tif(path, data, crs=crs, nodata=nodata, transform=affine)
