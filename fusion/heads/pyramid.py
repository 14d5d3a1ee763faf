"""Simple feature pyramid: four single-scale ViT maps to strides 4, 8, 16 and 32 (ViTDet style).

A plain ViT keeps one resolution, the patch grid (stride P = 16). Mask2Former wants a pyramid.
As the authors do (following ViT-Adapter / BEiT / MultiMAE), the fusion tokens after blocks 3,
6, 9 and 12 (`fusion.MaskedFusionViT.forward_intermediates`) each become one level: the first is
upsampled 4x by two transposed convolutions, the second 2x by one, the third is kept, the fourth
is max-pooled 2x. With P = 16 that gives strides 4, 8, 16 and 32.
"""

from __future__ import annotations

from collections.abc import Sequence

from timm.layers import LayerNorm2d
from torch import Tensor, nn

PYRAMID_SCALES = (4.0, 2.0, 1.0, 0.5)
"""Resize factor of each level relative to the patch grid, from high to low resolution."""


def upsample_2x(channels: int) -> nn.ConvTranspose2d:
    """A learned 2x upsampling: transposed convolution with kernel and stride 2."""
    return nn.ConvTranspose2d(channels, channels, kernel_size=2, stride=2)


class SimpleFeaturePyramid(nn.Module):
    """Four maps on the patch grid to four resolutions, channels unchanged.

    Args:
        channels: width D of the backbone's maps (kept at every level; the pixel decoder
            projects them).

    Attributes:
        scales: resize factor of each level relative to the patch grid (`PYRAMID_SCALES`).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.scales = PYRAMID_SCALES
        self.levels = nn.ModuleList(
            [
                nn.Sequential(
                    upsample_2x(channels), LayerNorm2d(channels), nn.GELU(), upsample_2x(channels)
                ),
                upsample_2x(channels),
                nn.Identity(),
                nn.MaxPool2d(kernel_size=2, stride=2),
            ]
        )

    def forward(self, maps: Sequence[Tensor]) -> list[Tensor]:
        """Resize each map to its level.

        Args:
            maps: four ``[B, D, h, w]`` maps, from the earliest block to the last.

        Returns:
            ``[B, D, 4h, 4w]``, ``[B, D, 2h, 2w]``, ``[B, D, h, w]``, ``[B, D, h/2, w/2]``
            (strides P/4, P/2, P, 2P: 4, 8, 16, 32 for P = 16).

        Raises:
            ValueError: unless there are four maps of width D.
        """
        if len(maps) != len(self.levels):
            raise ValueError(f"the pyramid takes {len(self.levels)} maps, got {len(maps)}")
        for feature_map in maps:
            if feature_map.ndim != 4 or feature_map.shape[1] != self.channels:
                shape = tuple(feature_map.shape)
                raise ValueError(f"pyramid maps must be [B, {self.channels}, h, w], got {shape}")
        return [level(feature_map) for level, feature_map in zip(self.levels, maps, strict=True)]
