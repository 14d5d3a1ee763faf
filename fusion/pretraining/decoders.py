"""Shallow per-modality decoders that reconstruct patches from the fusion tokens (Sec. III-D).

As in MultiMAE, but without positional embeddings or a cross-attention layer (paper IV-B-4): the
fusion tokens (which cover every patch position) are projected to the decoder width, a learned
modality embedding is added, two Transformer blocks follow, and a linear head predicts the
patch's pixels (or class logits for a categorical map).
"""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn


class PatchDecoder(nn.Module):
    """Reconstructs one modality's patches from fusion tokens.

    Args:
        embed_dim: width ``D`` of the fusion tokens.
        patch_size: patch side ``P``.
        channels: channels of a continuous modality (ignored when ``num_classes`` is set).
        num_classes: classes of a categorical modality, None for continuous data.
        decoder_dim: decoder width (MultiMAE: 256).
        depth: Transformer blocks (the paper: 2).
        num_heads: attention heads of the blocks.
    """

    def __init__(
        self,
        embed_dim: int,
        patch_size: int,
        channels: int = 1,
        num_classes: int | None = None,
        decoder_dim: int = 256,
        depth: int = 2,
        num_heads: int = 8,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.num_classes = num_classes
        self.projection = nn.Linear(embed_dim, decoder_dim)
        self.modality_embedding = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.blocks = nn.Sequential(*(Block(decoder_dim, num_heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(decoder_dim)
        outputs = patch_size**2 * (num_classes if num_classes is not None else channels)
        self.head = nn.Linear(decoder_dim, outputs)
        nn.init.trunc_normal_(self.modality_embedding, std=0.02)

    def no_weight_decay(self) -> set[str]:
        """The learned modality embedding is not weight-decayed."""
        return {"modality_embedding"}

    def forward(self, fusion_tokens: Tensor) -> Tensor:
        """Predict every patch.

        Args:
            fusion_tokens: ``[B, L, D]``.

        Returns:
            ``[B, L, P * P * C]`` pixel values (the order of
            `fusion.pretraining.losses.patchify`), or ``[B, L, P * P, K]`` logits for a
            categorical modality.
        """
        if self.num_classes is None:
            return self._decode(fusion_tokens)
        with torch.autocast(fusion_tokens.device.type, enabled=False):
            out = self._decode(fusion_tokens.float())
        return out.unflatten(-1, (self.patch_size**2, self.num_classes))

    def _decode(self, fusion_tokens: Tensor) -> Tensor:
        tokens = self.projection(fusion_tokens) + self.modality_embedding
        return self.head(self.norm(self.blocks(tokens)))
