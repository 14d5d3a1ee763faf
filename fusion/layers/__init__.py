"""Reusable layers of the fusion backbone, one concept per module."""

from fusion.layers.masked_attention import MaskedAttention, MaskedBlock
from fusion.layers.modality_attention import ModalityAttention
from fusion.layers.patch_embed import CategoricalPatchEmbed, PatchEmbed, build_patch_embed
from fusion.layers.pooling import ClassTokenPooling
from fusion.layers.pos_embed import SinCosPosEmbed2d, sincos_pos_embed_2d
from fusion.layers.token_layout import GridLayout, PackedLayout, TokenLayout

__all__ = [
    "CategoricalPatchEmbed",
    "ClassTokenPooling",
    "GridLayout",
    "MaskedAttention",
    "MaskedBlock",
    "ModalityAttention",
    "PackedLayout",
    "PatchEmbed",
    "SinCosPosEmbed2d",
    "TokenLayout",
    "build_patch_embed",
    "sincos_pos_embed_2d",
]
