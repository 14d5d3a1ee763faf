"""Picture one tile of each synthetic dataset as a PNG, to eyeball what the generators make.

Usage::

    python -m datamodules.synthetic.preview --root data [--quad-tile NAME] [--dfc-tile P0001.tif]

writes ``synthetic_quad.png`` (Sentinel-1, Sentinel-2 true and false colour, DEM, Dynamic World,
UrbanAtlas merged classes) and ``synthetic_dfc.png`` (RGB, SAR in dB, nDSM, building masks) to
``--out`` (default ``/tmp``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402

from datamodules.landcover import (  # noqa: E402
    DYNAMIC_WORLD_CLASSES,
    IGNORE_INDEX,
    LANDCOVER_CLASSES,
    urban_atlas_to_classes,
)
from datamodules.synthetic.raster_ops import polygon_mask  # noqa: E402

DYNAMIC_WORLD_COLOURS = (
    "#419bdf", "#397d49", "#88b053", "#7a87c6", "#e49635", "#dfc35a", "#c4281b", "#a59b8f",
    "#b39fe1",
)  # fmt: skip
"""The official Dynamic World palette, in class order."""

LANDCOVER_COLOURS = ("#e6004d", "#cc4df2", "#8cdc00", "#ffe6a6", "#008c00", "#ccf24d", "#00ccf2")
"""UrbanAtlas-like colours of the seven merged classes."""


def render_quadruplet_tile(dataset_dir: Path, tile: str | None, out_path: Path) -> Path:
    """Draw every modality and the label of one quadruplet tile.

    Args:
        dataset_dir: the ``quadruplets`` folder.
        tile: tile name (``<region>_rRR_cCC``), or None for the first tile of the first
            training region.
        out_path: PNG file to write.

    Returns:
        ``out_path``.
    """
    if tile is None:
        region = json.loads((dataset_dir / "splits.json").read_text())["train"][0]
        tile = sorted((dataset_dir / region / "s2").glob("*.tif"))[0].stem
    region_dir = dataset_dir / tile.rsplit("_r", 1)[0]
    s1, s2, dem, dnw, label = (
        _read(region_dir / folder / f"{tile}.tif") for folder in ("s1", "s2", "dem", "dnw", "label")
    )
    classes = urban_atlas_to_classes(label[0]).astype(float)
    classes[classes == IGNORE_INDEX] = np.nan
    panels = [
        ("Sentinel-1 VV, VH, VV-VH (dB)", _stack_stretch([s1[0], s1[1], s1[0] - s1[1]])),
        ("Sentinel-2 B4, B3, B2", _stack_stretch([s2[2], s2[1], s2[0]])),
        ("Sentinel-2 B8, B4, B3", _stack_stretch([s2[3], s2[2], s2[1]])),
        ("DEM (m)", dem[0]),
        ("Dynamic World", dnw[0]),
        ("UrbanAtlas, merged classes", classes),
    ]
    figure, axes = plt.subplots(2, 3, figsize=(15, 10))
    for axis, (title, image) in zip(axes.ravel(), panels, strict=True):
        if title == "Dynamic World":
            axis.imshow(
                image,
                cmap=ListedColormap(DYNAMIC_WORLD_COLOURS),
                vmin=-0.5,
                vmax=8.5,
                interpolation="nearest",
            )
        elif title.startswith("UrbanAtlas"):
            axis.imshow(
                image,
                cmap=ListedColormap(LANDCOVER_COLOURS),
                vmin=-0.5,
                vmax=6.5,
                interpolation="nearest",
            )
        elif title.startswith("DEM"):
            shown = axis.imshow(image, cmap="terrain")
            figure.colorbar(shown, ax=axis, fraction=0.046)
        else:
            axis.imshow(image)
        axis.set_title(title)
        axis.set_axis_off()
    _legend(figure, DYNAMIC_WORLD_CLASSES, DYNAMIC_WORLD_COLOURS, 0.02)
    _legend(figure, LANDCOVER_CLASSES, LANDCOVER_COLOURS, 0.52)
    figure.suptitle(f"{tile} (synthetic)")
    return _save(figure, out_path)


def render_dfc2023_tile(dataset_dir: Path, tile: str | None, out_path: Path) -> Path:
    """Draw RGB, SAR (dB), nDSM and the building polygons of one DFC2023 training tile.

    Args:
        dataset_dir: the ``dfc2023`` folder.
        tile: file name (``P0001.tif``), or None for the training tile with most buildings.
        out_path: PNG file to write.

    Returns:
        ``out_path``.
    """
    coco = json.loads((dataset_dir / "annotations" / "buildings_only_train.json").read_text())
    counts: dict[int, int] = {}
    for annotation in coco["annotations"]:
        counts[annotation["image_id"]] = counts.get(annotation["image_id"], 0) + 1
    images = {image["file_name"]: image for image in coco["images"]}
    if tile is None:
        tile = max(images, key=lambda name: counts.get(images[name]["id"], 0))
    image = images[tile]
    rgb, sar, height = (
        _read(dataset_dir / "train" / kind / tile) for kind in ("rgb", "sar", "height")
    )
    instances = np.zeros((image["height"], image["width"]), dtype=np.int32)
    for annotation in coco["annotations"]:
        if annotation["image_id"] == image["id"]:
            polygon = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
            instances[polygon_mask(polygon, instances.shape)] = annotation["id"]
    sar_db = np.clip(10 * np.log10(np.maximum(sar[0], 1e-6)), -25, 0)
    colours = np.random.default_rng(0).uniform(0.3, 1, (instances.max() + 1, 3))
    colours[0] = 0
    figure, axes = plt.subplots(1, 4, figsize=(20, 5.4))
    axes[0].imshow(rgb.transpose(1, 2, 0))
    axes[0].set_title("RGB")
    axes[1].imshow(sar_db, cmap="gray")
    axes[1].set_title("SAR, 10 log10, clipped to [-25, 0] dB")
    shown = axes[2].imshow(height[0], cmap="viridis")
    figure.colorbar(shown, ax=axes[2], fraction=0.046)
    axes[2].set_title("nDSM (m)")
    axes[3].imshow(colours[instances])
    axes[3].set_title(f"building instances ({counts.get(image['id'], 0)})")
    for axis in axes:
        axis.set_axis_off()
    figure.suptitle(f"{tile} (synthetic DFC2023 track 2)")
    return _save(figure, out_path)


def _read(path: Path) -> np.ndarray:
    """All bands of a raster."""
    with rasterio.open(path) as source:
        return source.read()


def _stack_stretch(channels: list[np.ndarray]) -> np.ndarray:
    """``[H, W, 3]`` image with each channel stretched between its 2nd and 98th percentiles."""
    stretched = []
    for channel in channels:
        valid = channel[channel != 0] if channel.dtype.kind == "u" else channel.ravel()
        low, high = np.percentile(valid, (2, 98)) if valid.size else (0, 1)
        stretched.append(np.clip((channel - low) / max(high - low, 1e-6), 0, 1))
    return np.stack(stretched, axis=-1)


def _legend(figure: plt.Figure, names: tuple[str, ...], colours: tuple[str, ...], x: float) -> None:
    """A row of coloured class names under the panels."""
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour) for colour in colours]
    figure.legend(handles, names, loc="lower left", bbox_to_anchor=(x, 0.0), ncol=5, fontsize=8)


def _save(figure: plt.Figure, out_path: Path) -> Path:
    """Write and close the figure."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout(rect=(0, 0.05, 1, 0.97))
    figure.savefig(out_path, dpi=80)
    plt.close(figure)
    return out_path


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: render both previews from an existing data folder.

    Args:
        argv: arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("/tmp"))
    parser.add_argument("--quad-tile", default=None)
    parser.add_argument("--dfc-tile", default=None)
    args = parser.parse_args(argv)
    if (args.root / "quadruplets").is_dir():
        path = render_quadruplet_tile(
            args.root / "quadruplets", args.quad_tile, args.out / "synthetic_quad.png"
        )
        print(f"wrote {path}")
    if (args.root / "dfc2023").is_dir():
        path = render_dfc2023_tile(
            args.root / "dfc2023", args.dfc_tile, args.out / "synthetic_dfc.png"
        )
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
