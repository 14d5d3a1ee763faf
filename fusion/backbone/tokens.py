"""The encoder's tokens: each present modality patch-embedded and laid out as one block.

Fusion tokens are [B, L, D]; the modality tokens form one block [B, G, T, D], either the full grid
of the M present modalities (`GridLayout`: G = M, T = L) or the visible tokens of each sample
packed into one sequence (`PackedLayout`: G = 1), so that hidden tokens cost nothing; see
`fusion.layers.token_layout`.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fusion.layers.token_layout import GridLayout, PackedLayout, TokenLayout


@dataclass
class FusionTokens:
    """Tokens inside the encoder.

    Attributes:
        fusion: Fusion tokens [B, L, D].
        modality: Modality-token block [B, G, T, D], laid out by ``layout``.
        layout: Where the modality tokens sit and which are visible.
        names: The M modalities in the input, in the model's order.
        grid_size: Patch grid (h, w).
    """

    fusion: Tensor
    modality: Tensor
    layout: TokenLayout
    names: tuple[str, ...]
    grid_size: tuple[int, int]


def zero_hidden_pixels(raster: Tensor, visible: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Zeros the pixels of a float raster under the tokens that are not visible.

    Absent and hidden tokens are masked out of every attention, but a masked key still
    multiplies its value by a zero weight, and 0 * NaN is NaN: no-data values such as NaN or
    inf there would reach the visible tokens in the forward pass, and the patch projection's
    weights in the backward pass. Zeroed, they cannot.

    Args:
        raster: [B, C, H, W] float values.
        visible: [B, L] bool, L = h * w row-major over the patch grid.
        grid_size: Patch grid (h, w); H and W are multiples of it.

    Returns:
        ``raster`` with zeros under hidden tokens (itself if every token is visible).
    """
    if bool(visible.all()):
        return raster
    batch, _, height, width = raster.shape
    rows, cols = grid_size
    pixels = visible.view(batch, 1, rows, 1, cols, 1)
    pixels = pixels.expand(batch, 1, rows, height // rows, cols, width // cols)
    return torch.where(pixels.reshape(batch, 1, height, width), raster, 0.0)


def embed_modality_tokens(
    patch_embeds: Mapping[str, nn.Module],
    inputs: Mapping[str, Tensor],
    names: Sequence[str],
    visibility: Tensor | None,
    pos_embed: Tensor,
    batch_size: int,
    grid_size: tuple[int, int],
    pack: bool,
) -> tuple[Tensor, TokenLayout]:
    """Patch-embeds the present modalities, adds positions and lays the tokens out.

    Args:
        patch_embeds: Modality name -> patch projection (`fusion.layers.patch_embed`), called
            with the raster and, when packing, the visible patches (``b * L + l``).
        inputs: Modality name -> raster, as `fusion.MaskedFusionViT.forward` takes it.
        names: The M modalities in the input, in the model's order.
        visibility: [B, M, L] bool, True where a token is visible; None when all are.
        pos_embed: [L, D] positional embedding of the grid.
        batch_size: B.
        grid_size: Patch grid (h, w); L = h * w.
        pack: Embed only the visible patches and pack them per sample (`PackedLayout`);
            otherwise embed the whole grid (`GridLayout`), with the pixels under hidden
            tokens zeroed.

    Returns:
        The modality-token block [B, G, T, D] and its layout.
    """
    length = grid_size[0] * grid_size[1]
    device = pos_embed.device
    if pack:  # only the visible patches are embedded: hidden ones cost nothing
        if visibility is None:
            visibility = torch.ones(batch_size, len(names), length, dtype=torch.bool, device=device)
        packed = PackedLayout(visibility)
        parts = []
        for i, name in enumerate(names):
            patches = packed.visible_patches(i)  # [N_i], b * L + l
            tokens = patch_embeds[name](inputs[name], patches)
            parts.append(tokens + pos_embed[patches % length])
        return packed.arrange_parts(parts), packed
    if visibility is not None:  # no-data values under hidden tokens must not leak
        inputs = {
            name: (
                zero_hidden_pixels(inputs[name], visibility[:, i], grid_size)
                if inputs[name].is_floating_point() and inputs[name].ndim == 4
                else inputs[name]
            )
            for i, name in enumerate(names)
        }
    modality = torch.stack([patch_embeds[name](inputs[name]) for name in names], dim=1)
    modality = modality + pos_embed  # [B, M, L, D]
    return modality, GridLayout(visibility, batch_size, len(names), length, device)
