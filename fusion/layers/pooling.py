"""Class-token pooling (paper III-E): global vectors for the contrastive loss.

One learned query per modality and one global fusion query cross attend, in a single layer, to
the encoder's output tokens. For modality m this gives

* the modality vector z_m = CA(q_m, o_m) over modality m's visible output tokens, and
* the fusion vector z_{f_m} = CA(q_f, o_{f_m}) over the fusion output tokens at the positions
  where modality m is visible,

so that eq. (5) can contrast z_m with z_{f_m}. A pair is valid for a sample when modality m has
at least one visible token there; invalid vectors are zero and never NaN.
"""

import torch
from timm.layers import trunc_normal_
from torch import Tensor, nn


def masked_softmax(logits: Tensor, mask: Tensor, dim: int = -1) -> Tensor:
    """Softmax over the entries where ``mask`` is True.

    A row without any allowed entry falls back to the plain softmax, so that nothing is NaN;
    callers discard such rows.

    Args:
        logits: Scores, any shape.
        mask: Bool, broadcastable to ``logits``.
        dim: Dimension to normalize.

    Returns:
        Weights of ``logits``' shape; finite everywhere.
    """
    mask = mask | ~mask.any(dim=dim, keepdim=True)
    return logits.masked_fill(~mask, float("-inf")).softmax(dim=dim)


class ClassTokenPooling(nn.Module):
    """Single cross-attention layer with per-modality and global fusion class tokens.

    Args:
        dim: Token width D.
        num_heads: Number of heads H (D divisible by H).
        num_modalities: Number of modalities the model knows (one class token each).
    """

    def __init__(self, dim: int, num_heads: int, num_modalities: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.modality_queries = nn.Parameter(torch.zeros(num_modalities, dim))
        self.fusion_query = nn.Parameter(torch.zeros(dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        trunc_normal_(self.modality_queries, std=0.02)
        trunc_normal_(self.fusion_query, std=0.02)

    def forward(
        self, fusion: Tensor, modality: Tensor, visible: Tensor, modality_ids: list[int]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Pools.

        Args:
            fusion: Normalized fusion output tokens [B, L, D].
            modality: Normalized modality output tokens on the grid [B, M, L, D].
            visible: Which modality tokens are visible, [B, M, L] bool.
            modality_ids: Index of each of the M modalities among the model's modalities.

        Returns:
            Modality vectors z_m [B, M, D], fusion vectors z_{f_m} [B, M, D] and their validity
            [B, M] bool.
        """
        batch, modalities, length, dim = modality.shape
        heads = self.num_heads
        head_dim = dim // heads
        scale = head_dim**-0.5
        valid = visible.any(dim=-1)  # [B, M]
        keys_m, values_m = (
            self.kv(modality).view(batch, modalities, length, 2, heads, head_dim).unbind(3)
        )
        keys_f, values_f = self.kv(fusion).view(batch, length, 2, heads, head_dim).unbind(2)
        query_m = self.q(self.modality_queries[modality_ids]).view(modalities, heads, head_dim)
        query_f = self.q(self.fusion_query).view(heads, head_dim)
        key_mask = visible[:, :, None, :]  # [B, M, 1, L]

        logits_m = torch.einsum("mhd,bmlhd->bmhl", query_m, keys_m) * scale
        weights_m = masked_softmax(logits_m, key_mask).to(values_m.dtype)
        pooled_m = torch.einsum("bmhl,bmlhd->bmhd", weights_m, values_m)

        logits_f = torch.einsum("hd,blhd->bhl", query_f, keys_f) * scale  # same for every m
        weights_f = masked_softmax(logits_f[:, None], key_mask).to(values_f.dtype)  # [B, M, H, L]
        pooled_f = torch.einsum("bmhl,blhd->bmhd", weights_f, values_f)

        zero_invalid = valid[..., None].to(pooled_m.dtype)
        vectors_m = self.proj(pooled_m.reshape(batch, modalities, dim)) * zero_invalid
        vectors_f = self.proj(pooled_f.reshape(batch, modalities, dim)) * zero_invalid
        return vectors_m, vectors_f, valid
