"""Quick-looks of one chip: its modalities, label and each modality subset's prediction.

A quick-look stitches the chip's tiles back into the chip by the offsets in their names
(`fusion.evaluation.chips.parse_tile_name`): the modalities in physical units (read again without
normalization, at the native resolution), the label, and the prediction of each modality subset
that scores the chip (kept by `fusion.evaluation.chips.evaluate_chips`), resized back to the
tile's native size (nearest neighbour) where the DataModule resizes tiles.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from torch import Tensor
from torch.nn import functional as F

from datamodules.landcover import IGNORE_INDEX
from fusion.evaluation.chips import ChipEvaluation, chip_tiles, parse_tile_name
from fusion.evaluation.subsets import SubsetResult

S1_DB_RANGES = ((-25.0, 0.0), (-30.0, -5.0), (0.0, 15.0))
"""Display ranges of the Sentinel-1 false colour, dB: red VV, green VH, blue VV - VH."""

LABEL_COLOURS = ("#d8c8a0", "#1f5fbf", "#bdbdbd", "#ffffff")
"""Colours of dry (0), water (1), no label (2) and not predicted (3) in the quick-looks."""


@dataclass
class ChipImagery:
    """One chip stitched from its tiles, in physical units at the native resolution.

    Attributes:
        chip: The chip name.
        modalities: Modality -> ``float32 [C, H, W]``, NaN where it holds no data; only the
            modalities with data somewhere on the chip.
        label: ``int64 [H, W]`` classes, 255 where unlabelled or not covered by a tile.
        covered: ``bool [H, W]``, the pixels some tile covers.
        places: Tile name -> ``(row, col, height, width)`` of the tile in the chip.
    """

    chip: str
    modalities: dict[str, np.ndarray]
    label: np.ndarray
    covered: np.ndarray
    places: dict[str, tuple[int, int, int, int]]


def chip_imagery(dataset: Any, chip: str) -> ChipImagery:
    """Reads one chip's tiles without normalization or resizing, and stitches them.

    The tiles are read through a shallow copy of the dataset that shows every modality, at the
    native size and in physical units (dB for Sentinel-1, reflectance for Sentinel-2);
    pixels without data (``valid`` False) become NaN.

    Args:
        dataset: A `datamodules.dataset.MultimodalDataset` whose tiles are named
            ``<chip>_r<row>_c<col>``.
        chip: The chip.

    Returns:
        The stitched chip.

    Raises:
        ValueError: If the dataset has no tile of ``chip``.
    """
    indices = chip_tiles(dataset).get(chip)
    if not indices:
        raise ValueError(f"the dataset has no tile of chip {chip!r}")
    view = copy.copy(dataset)
    view.image_size, view.normalize, view.augmentation = None, False, None
    view.modality_sampling = "all"
    samples = [view[index] for index in indices]
    places = {}
    for sample in samples:
        _, row, col = parse_tile_name(sample["name"])
        places[sample["name"]] = (row, col, *sample["mask"].shape)
    height = max(row + h for row, _, h, _ in places.values())
    width = max(col + w for _, col, _, w in places.values())
    label = np.full((height, width), IGNORE_INDEX, dtype=np.int64)
    covered = np.zeros((height, width), dtype=bool)
    modalities = {
        name: np.full((samples[0][name].shape[0], height, width), np.nan, dtype=np.float32)
        for name in dataset.modalities
    }
    seen: set[str] = set()
    for sample in samples:
        row, col, h, w = places[sample["name"]]
        window = (slice(row, row + h), slice(col, col + w))
        label[window] = sample["mask"].numpy()
        covered[window] = True
        for column, name in enumerate(dataset.modalities):
            valid = sample["valid"][column].numpy()
            if not bool(sample["present"][column]) or not valid.any():
                continue
            seen.add(name)
            data = sample[name].float().numpy()  # [C, h, w]
            modalities[name][(slice(None), *window)] = np.where(valid, data, np.nan)
    kept = {name: modalities[name] for name in dataset.modalities if name in seen}
    return ChipImagery(chip, kept, label, covered, places)


def stitch_predictions(
    imagery: ChipImagery, predictions: Mapping[str, Tensor], fill: int = -1
) -> np.ndarray:
    """One subset's tile predictions placed in the chip.

    Args:
        imagery: The chip (`chip_imagery`): where each tile lies and its native size.
        predictions: Tile name -> ``int64 [H', W']`` class map; resized to the tile's native
            size by nearest neighbour where ``H', W'`` differ from it.
        fill: Value of the pixels no prediction covers (tiles the subset has no data on).

    Returns:
        ``int64 [H, W]`` class map of the chip.
    """
    canvas = np.full(imagery.label.shape, fill, dtype=np.int64)
    for name, classes in predictions.items():
        if name not in imagery.places:
            continue
        row, col, height, width = imagery.places[name]
        if tuple(classes.shape[-2:]) != (height, width):
            resized = F.interpolate(classes[None, None].float(), (height, width), mode="nearest")
            classes = resized[0, 0].long()
        canvas[row : row + height, col : col + width] = classes.cpu().numpy()
    return canvas


def _stretch(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``values`` scaled from ``[low, high]`` to ``[0, 1]``, clipped (NaN stays NaN)."""
    return np.clip((values - low) / max(high - low, 1e-6), 0, 1)


def modality_rgba(name: str, data: np.ndarray, rgb: Sequence[int]) -> np.ndarray:
    """Displayable ``float [H, W, 4]`` of one stitched modality, transparent where no data.

    A two-channel ``s1`` (VV, VH dB) is shown in false colour on fixed dB ranges
    (`S1_DB_RANGES`: red VV, green VH, blue VV - VH); other modalities show the channels
    ``rgb`` (one: grey), each stretched between its 2nd and 98th percentile on the chip.

    Args:
        name: The modality.
        data: ``float [C, H, W]``, physical units, NaN where no data.
        rgb: Channels shown as red, green, blue (or grey).

    Returns:
        RGBA in ``[0, 1]``.
    """
    valid = ~np.isnan(data).any(axis=0)  # [H, W]
    if name == "s1" and data.shape[0] == 2:
        vv, vh = data
        layers = [vv, vh, vv - vh]
        planes = [_stretch(layer, *span) for layer, span in zip(layers, S1_DB_RANGES, strict=True)]
    else:
        planes = []
        for channel in rgb:
            values = data[channel]
            low, high = np.nanpercentile(values, [2, 98]) if valid.any() else (0.0, 1.0)
            planes.append(_stretch(values, float(low), float(high)))
        planes = planes * 3 if len(planes) == 1 else planes
    image = np.nan_to_num(np.stack([*planes[:3], valid.astype(np.float64)], axis=-1))
    return image.astype(np.float32)


def _titles(name: str, data: np.ndarray) -> str:
    """Panel title of a modality."""
    display = SubsetResult((name,)).label
    if name == "s1" and data.shape[0] == 2:
        return f"{display}: VV, VH, VV-VH dB"
    return f"{display}: true colour" if name == "s2" else display


def quicklook_figure(
    imagery: ChipImagery,
    evaluation: ChipEvaluation,
    display_channels: Mapping[str, Sequence[int]] | None = None,
) -> Figure:
    """One row of panels: the chip's modalities, its label, and each scoring subset's prediction.

    Args:
        imagery: The chip (`chip_imagery`).
        evaluation: Per-chip scores with the chip's predictions kept (`evaluate_chips` with
            ``keep`` naming it).
        display_channels: Modality -> channels shown as RGB (default the first, in grey).

    Returns:
        The figure: one panel per modality with data on the chip, the label, and one per
        subset that scores the chip, titled with its IoU of class 1 (and mIoU).
    """
    chip = imagery.chip
    scored = [s for s in evaluation.subsets if evaluation.scores[s][chip].scored]
    count = len(imagery.modalities) + 1 + len(scored)
    figure = Figure(figsize=(3 * count, 3.6), layout="constrained")
    axes = figure.subplots(1, count, squeeze=False)[0]
    for axis in axes:
        axis.set_axis_off()
    colours = ListedColormap(LABEL_COLOURS)
    panels = iter(axes)
    for name, data in imagery.modalities.items():
        axis = next(panels)
        channels = (display_channels or {}).get(name, (0,))
        axis.imshow(modality_rgba(name, data, channels), interpolation="nearest")
        axis.set_title(_titles(name, data), fontsize=9)
    label = np.where(imagery.label == IGNORE_INDEX, 2, imagery.label)
    label = np.where(imagery.covered, label, 3)
    axis = next(panels)
    axis.imshow(label, cmap=colours, vmin=0, vmax=3, interpolation="nearest")
    axis.set_title("label", fontsize=9)
    present = set(imagery.modalities)
    for subset in scored:
        score = evaluation.scores[subset][chip]
        classes = stitch_predictions(imagery, evaluation.predictions.get(subset, {}))
        shown = np.where(classes < 0, 3, np.clip(classes, 0, 1))
        axis = next(panels)
        axis.imshow(shown, cmap=colours, vmin=0, vmax=3, interpolation="nearest")
        iou = "-" if score.iou_1 is None else f"{score.iou_1:.3f}"
        title = f"{SubsetResult(subset).label}: IoU {evaluation.class_name} {iou}"
        title += f"\nmIoU {score.miou:.3f}"
        missing = [SubsetResult((m,)).label for m in subset if m not in present]
        if missing:
            title += f" (no {'/'.join(missing)} here)"
        axis.set_title(title, fontsize=9)
    names = ("not " + evaluation.class_name, evaluation.class_name, "no label", "no prediction")
    handles = [
        Patch(color=colour, label=name) for colour, name in zip(LABEL_COLOURS, names, strict=True)
    ]
    handles[-1].set_edgecolor("black")
    figure.legend(handles=handles, loc="outside lower center", ncols=4, fontsize=8)
    figure.suptitle(f"{chip}: {len(imagery.places)} tiles")
    return figure


def write_quicklook(
    dataset: Any,
    evaluation: ChipEvaluation,
    chip: str,
    out_dir: str | Path,
    display_channels: Mapping[str, Sequence[int]] | None = None,
) -> Path:
    """Draws `quicklook_figure` of one chip and saves it as ``quicklook_<chip>.png``.

    Args:
        dataset: The evaluated split's dataset.
        evaluation: `evaluate_chips` output with the chip's predictions kept.
        chip: The chip.
        out_dir: Where to write.
        display_channels: Modality -> channels shown as RGB.

    Returns:
        The PNG's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure = quicklook_figure(chip_imagery(dataset, chip), evaluation, display_channels)
    path = out / f"quicklook_{chip}.png"
    figure.savefig(path, dpi=100)
    return path
