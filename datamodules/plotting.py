"""Figures of multimodal samples: one panel per modality, the mask and an optional prediction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from datamodules.landcover import IGNORE_INDEX
from datamodules.modality import Modality


def stretch(image: np.ndarray, low: float = 2, high: float = 98) -> np.ndarray:
    """Scale each channel of ``[H, W, C]`` to [0, 1] between two percentiles.

    Args:
        image: ``[H, W, C]`` or ``[H, W]`` array.
        low: lower percentile.
        high: upper percentile.

    Returns:
        Float array of the same shape with values in [0, 1].
    """
    image = image.astype(np.float32)
    flat = image.reshape(-1, image.shape[-1]) if image.ndim == 3 else image.reshape(-1, 1)
    lo, hi = np.percentile(flat, [low, high], axis=0)
    scaled = (flat - lo) / np.maximum(hi - lo, 1e-6)
    return np.clip(scaled, 0, 1).reshape(image.shape)


def modality_image(data: torch.Tensor, info: Modality) -> tuple[np.ndarray, dict[str, Any]]:
    """Displayable array and ``imshow`` keywords for one modality tensor ``[C, H, W]``."""
    if info.categorical:
        cmap = colormaps["tab10"].resampled(info.classes)
        ids = np.ma.masked_equal(data[0].numpy(), info.nodata_id)  # no data stays blank
        return ids, {"cmap": cmap, "vmin": 0, "vmax": info.classes - 1}
    channels = data[list(info.rgb)].permute(1, 2, 0).numpy()
    image = stretch(channels)
    if image.shape[2] == 1:
        return image[..., 0], {"cmap": "gray"}
    return image, {}


def class_colormap(n_classes: int) -> ListedColormap:
    """Distinct colours for ``n_classes`` labels."""
    return ListedColormap(colormaps["tab10"].resampled(max(n_classes, 2)).colors[:n_classes])


def plot_sample(
    modality_info: Mapping[str, Modality],
    classes: Sequence[str],
    sample: Mapping[str, Any],
    show_titles: bool = True,
    suptitle: str | None = None,
) -> Figure:
    """Plot a sample: every modality, the mask and ``prediction`` if present.

    Absent modalities are drawn as empty panels marked "absent". Instance outlines are drawn on
    the mask when the sample has ``instance_masks``.

    Args:
        modality_info: the dataset's modalities, in the order of ``sample["present"]``.
        classes: the dataset's class names.
        sample: one sample (see `datamodules.dataset`).
        show_titles: write the panel titles.
        suptitle: figure title.

    Returns:
        The figure.
    """
    modalities = list(modality_info)
    panels = modalities + ["mask"] + (["prediction"] if "prediction" in sample else [])
    figure = Figure(figsize=(3 * len(panels), 3.3), layout="constrained")
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    n_classes = len(classes)
    for axis, key in zip(axes, panels, strict=True):
        axis.set_axis_off()
        if key in modality_info:
            present = bool(sample["present"][modalities.index(key)])
            if present:
                image, kwargs = modality_image(sample[key], modality_info[key])
                axis.imshow(image, interpolation="nearest", **kwargs)
            else:
                axis.text(0.5, 0.5, "absent", ha="center", va="center", transform=axis.transAxes)
        else:
            labels = np.ma.masked_equal(np.asarray(sample[key]), IGNORE_INDEX)
            axis.imshow(labels, cmap=class_colormap(n_classes), vmin=0, vmax=n_classes - 1)
            if key == "mask" and "instance_masks" in sample:
                for instance in sample["instance_masks"]:
                    axis.contour(np.asarray(instance, dtype=float), levels=[0.5], linewidths=0.6)
        if show_titles:
            axis.set_title(key)
    if suptitle is not None:
        figure.suptitle(suptitle)
    return figure
