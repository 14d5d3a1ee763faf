"""Figures of masked reconstructions: input, what the encoder saw, and what the decoders made."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from torch import Tensor


def _display(image: Tensor, channels: Sequence[int], low: Tensor, high: Tensor) -> np.ndarray:
    """``[C, H, W]`` -> ``[H, W, 3]`` or ``[H, W]`` in [0, 1] with the given stretch."""
    picked = image[list(channels)].float()
    scaled = ((picked - low[:, None, None]) / (high - low).clamp_min(1e-6)[:, None, None]).clamp(
        0, 1
    )
    array = scaled.permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def _visibility_map(visible: Tensor, grid_size: tuple[int, int], patch_size: int) -> Tensor:
    """``bool [L]`` patch visibility -> ``bool [H, W]`` pixel visibility."""
    grid = visible.view(*grid_size)
    return grid.repeat_interleave(patch_size, 0).repeat_interleave(patch_size, 1)


def reconstruction_figure(
    inputs: Mapping[str, Tensor],
    reconstructions: Mapping[str, Tensor],
    visible: Mapping[str, Tensor],
    present: Mapping[str, Tensor],
    patch_size: int,
    categorical: Mapping[str, int],
    display_channels: Mapping[str, Sequence[int]] | None = None,
    num_samples: int = 2,
    title: str | None = None,
) -> Figure:
    """One row per modality; per sample three panels: input, masked input, reconstruction.

    The reconstruction panel shows the decoder output on masked patches and the input on
    visible ones (as in MAE), so the two are told apart by the masked-input panel.

    Args:
        inputs: name -> ``[B, C, H, W]`` inputs (class ids ``[B, 1, H, W]`` for categorical).
        reconstructions: name -> ``[B, C, H, W]`` predictions (class ids for categorical).
        visible: name -> ``bool [B, L]`` token visibility.
        present: name -> ``bool [B]``.
        patch_size: patch side.
        categorical: name -> number of classes, for categorical modalities.
        display_channels: name -> channels to show as RGB (default: the first, in grey).
        num_samples: samples (columns of three panels) to show.
        title: figure title.

    Returns:
        The figure.
    """
    names = list(inputs)
    samples = min(num_samples, next(iter(inputs.values())).shape[0])
    figure = Figure(figsize=(2.2 * 3 * samples, 2.3 * len(names)), layout="constrained")
    axes = figure.subplots(len(names), 3 * samples, squeeze=False)
    for row, name in enumerate(names):
        height, width = inputs[name].shape[-2:]
        grid_size = (height // patch_size, width // patch_size)
        channels = (display_channels or {}).get(name, (0,))
        for sample in range(samples):
            panels = axes[row, 3 * sample : 3 * sample + 3]
            for axis in panels:
                axis.set_axis_off()
            if not bool(present[name][sample]):
                panels[0].text(
                    0.5, 0.5, f"{name}: absent", ha="center", transform=panels[0].transAxes
                )
                continue
            seen = _visibility_map(visible[name][sample].cpu(), grid_size, patch_size)
            original = inputs[name][sample].cpu()
            rebuilt = torch.where(seen, original, reconstructions[name][sample].cpu())
            masked = torch.where(seen, original.float(), torch.nan)  # NaN: not shown
            if name in categorical:
                kwargs = {"cmap": colormaps["tab10"], "vmin": 0, "vmax": max(categorical[name], 10)}
                # the no-data id (= number of classes) is left blank, like hidden patches
                nodata = original[0] == categorical[name]
                images = [
                    torch.where(nodata, torch.nan, image[0].float()).numpy()
                    for image in (original, masked, rebuilt)
                ]
            else:
                flat = original[list(channels)].flatten(1).float()
                low, high = flat.quantile(0.02, dim=1), flat.quantile(0.98, dim=1)
                kwargs = {"cmap": "gray"} if len(channels) == 1 else {}
                images = [_display(x, channels, low, high) for x in (original, masked, rebuilt)]
            labels = ("input", "visible", "reconstruction")
            for axis, image, label in zip(panels, images, labels, strict=True):
                axis.imshow(image, interpolation="nearest", **kwargs)
                axis.set_title(f"{name} {label}" if sample == 0 else label, fontsize=8)
    if title is not None:
        figure.suptitle(title)
    return figure
