"""Masked self-attention (eq. 3) and the Transformer block built on it.

With ``attention="masked"`` a modality token attends only to the tokens of its own modality,
and a fusion token attends to every visible token (fusion and all modalities). Because of this
block structure the attention runs as two calls of `attend`: one batched over the B*G modality
sequences of the layout (on the grid layout without a mask, unless a modality is missing for
some samples), one for the fusion queries over all keys. With ``attention="full"`` (the
MultiViT baseline) every token attends to every visible token.

Measured alternatives: a whole MaskedFusionViT-T training step (batch 8, 4 x 256 modality and
256 fusion tokens, 2-core CPU, torch 2.14) against 12 timm ViT-T blocks over the same 1280
tokens, fp32 / bf16 speed-up: one SDPA call with a [N, N] block mask 0.77x / 0.78x; one SDPA
call per modality 1.01x / 0.94x; the batched split 1.07x / 1.02x; the batched split with the
explicit bf16 path of `attend` 1.07x / 1.17x (kept).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from fusion.layers.drop_path import SampleDropPath
from fusion.layers.token_layout import TokenLayout

AttentionKind = Literal["masked", "full"]

# Longest query block for which `attend` trains faster with explicit matmuls (see there).
EXPLICIT_ATTENTION_MAX_QUERIES = 256


def attend(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
    """Multi-head attention ``softmax(q k^T / sqrt(d)) v``.

    Runs `torch.nn.functional.scaled_dot_product_attention`, except in one case measured on a
    2-core CPU with AMX (torch 2.14): training in bf16/fp16 on the CPU with short unmasked query
    blocks, the B*M per-modality sequences and the fusion queries of the grid layout. There the
    fused kernel's backward pass is slow, and explicit matmul-softmax-matmul makes a whole
    MaskedFusionViT-T training step about 14% faster (modality block, 32 x 256 tokens: 35 ms
    instead of 60 ms forward + backward; fusion queries, 256 over 1280 keys: 47 instead of 62).

    Args:
        query: [..., H, Lq, hd].
        key: [..., H, Lk, hd].
        value: [..., H, Lk, hd].
        mask: Optional bool, broadcastable to [..., H, Lq, Lk]; True = may attend.

    Returns:
        [..., H, Lq, hd].
    """
    if (
        mask is None
        and query.device.type == "cpu"
        and query.dtype in (torch.bfloat16, torch.float16)
        and query.shape[-2] <= EXPLICIT_ATTENTION_MAX_QUERIES
        and torch.is_grad_enabled()
    ):
        scores = (query @ key.transpose(-1, -2)) * query.shape[-1] ** -0.5
        return scores.softmax(dim=-1) @ value
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask)


class MaskedAttention(nn.Module):
    """Multi-head self-attention over fusion tokens and a modality-token block.

    Args:
        dim: Token width D.
        num_heads: Number of heads H (D divisible by H).
        qkv_bias: Whether the query/key/value projection has a bias.
        attention: ``"masked"`` (eq. 3) or ``"full"``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        attention: AttentionKind = "masked",
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        if attention not in ("masked", "full"):
            raise ValueError(f"attention must be 'masked' or 'full', got {attention!r}")
        self.num_heads = num_heads
        self.attention = attention
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self, fusion: Tensor, modality: Tensor, layout: TokenLayout
    ) -> tuple[Tensor, Tensor]:
        """Attends.

        Args:
            fusion: Normalized fusion tokens [B, L, D].
            modality: Normalized modality-token block [B, G, T, D] laid out by ``layout``.
            layout: Says which keys each query may attend.

        Returns:
            Attention outputs for the fusion tokens [B, L, D] and the modality block
            [B, G, T, D].
        """
        batch, length, dim = fusion.shape
        _, groups, group_length, _ = modality.shape
        heads = self.num_heads
        head_dim = dim // heads
        # [B, H, L, hd] each
        q_f, k_f, v_f = (
            self.qkv(fusion).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        )
        # [B, G, H, T, hd] each
        q_m, k_m, v_m = (
            self.qkv(modality)
            .view(batch, groups, group_length, 3, heads, head_dim)
            .permute(3, 0, 1, 4, 2, 5)
        )

        def flat(tokens: Tensor) -> Tensor:  # [B, G, H, T, hd] -> [B, H, G*T, hd]
            return tokens.transpose(1, 2).reshape(batch, heads, groups * group_length, head_dim)

        keys = torch.cat([k_f, flat(k_m)], dim=2)  # [B, H, L + G*T, hd]
        values = torch.cat([v_f, flat(v_m)], dim=2)
        if self.attention == "full":
            queries = torch.cat([q_f, flat(q_m)], dim=2)
            out = attend(queries, keys, values, layout.key_mask)
            out_f, out_m = out.split([length, groups * group_length], dim=2)
            out_m = out_m.view(batch, heads, groups, group_length, head_dim).transpose(1, 2)
        else:
            out_f = attend(q_f, keys, values, layout.key_mask)
            out_m = attend(
                q_m.flatten(0, 1), k_m.flatten(0, 1), v_m.flatten(0, 1), layout.modality_mask
            ).view(batch, groups, heads, group_length, head_dim)
        fusion_out = self.proj(out_f.transpose(1, 2).reshape(batch, length, dim))
        modality_out = self.proj(out_m.transpose(2, 3).reshape(batch, groups, group_length, dim))
        return fusion_out, modality_out


class MaskedBlock(nn.Module):
    """Pre-LN Transformer block over fusion tokens and a modality-token block.

    ``x = x + attn(norm1(x)); x = x + mlp(norm2(x))`` with `MaskedAttention`; norms and MLP are
    shared by all tokens, as in one ViT block over the concatenated sequence.

    Args:
        dim: Token width D.
        num_heads: Number of attention heads.
        mlp_ratio: MLP hidden width as a multiple of D.
        qkv_bias: Whether the query/key/value projection has a bias.
        drop_path: Stochastic depth rate of both residual branches.
        attention: ``"masked"`` (eq. 3) or ``"full"``.
        norm_layer: Normalization layer, called with D.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        attention: AttentionKind = "masked",
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = MaskedAttention(dim, num_heads, qkv_bias=qkv_bias, attention=attention)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = SampleDropPath(drop_path)

    def forward(
        self, fusion: Tensor, modality: Tensor, layout: TokenLayout
    ) -> tuple[Tensor, Tensor]:
        """Applies the block to fusion tokens [B, L, D] and modality block [B, G, T, D]."""
        attn_f, attn_m = self.drop_path(
            *self.attn(self.norm1(fusion), self.norm1(modality), layout)
        )
        fusion, modality = fusion + attn_f, modality + attn_m
        mlp_f, mlp_m = self.drop_path(self.mlp(self.norm2(fusion)), self.mlp(self.norm2(modality)))
        return fusion + mlp_f, modality + mlp_m
