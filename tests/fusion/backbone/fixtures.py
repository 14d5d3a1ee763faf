"""Tiny backbones and inputs shared by the backbone tests."""

import torch

from fusion import MaskedFusionViT

MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}
CHANNELS = {"s1": 2, "s2": 4, "dem": 1}


TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
"""Sizes of the tiny test backbone: 32 x 32 images, 8-pixel patches (a 4 x 4 grid), width 32."""


def tiny_model(**kwargs) -> MaskedFusionViT:
    """The tiny backbone over the 4 modalities, 2 blocks, in eval mode (``kwargs`` override)."""
    model = MaskedFusionViT(MODALITIES, **{**TINY, **kwargs})
    return model.eval()


def make_inputs(
    batch: int = 3, height: int = 32, width: int = 32, names=tuple(MODALITIES)
) -> dict[str, torch.Tensor]:
    """Random rasters: float for the continuous modalities, class ids [B, H, W] for dnw."""
    inputs = {}
    for name in names:
        if name == "dnw":
            inputs[name] = torch.randint(0, 9, (batch, height, width))
        else:
            inputs[name] = torch.randn(batch, CHANNELS[name], height, width)
    return inputs


def random_visible(batch: int = 3, positions: int = 16, names=tuple(MODALITIES), p: float = 0.5):
    """Random token visibility per modality, [B, L] bool."""
    return {name: torch.rand(batch, positions) < p for name in names}
