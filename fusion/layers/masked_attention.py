"""Masked self-attention (eq. 3) and the Transformer block built on it.

With ``attention="masked"`` a modality token attends only to the tokens of its own modality,
and a fusion token attends to every visible token (fusion and all modalities). Because of this
block structure the attention runs as separate calls of `attend`: one for the fusion queries
over all keys, and for the modality queries either one call batched over the B*M sequences of
the grid layout (without a mask, unless a modality is missing for some samples) or, on the
packed layout, one call per group of (sample, modality) segments of similar length (see
`fusion.layers.token_layout.Segments`). With ``attention="full"`` (the MultiViT baseline and
the "w/o mask" ablation) every token attends to every visible token.

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

    Runs `torch.nn.functional.scaled_dot_product_attention`, except in one case measured on
    2-core CPUs (torch 2.14): training in bf16/fp16 on the CPU with short query blocks, the
    per-modality sequences or segments and the fusion queries. There the fused kernel's backward
    pass is slow, and explicit matmul-softmax-matmul makes a whole MaskedFusionViT-T training
    step about 14% faster with AMX (modality block, 32 x 256 tokens: 35 ms instead of 60 ms
    forward + backward; fusion queries, 256 over 1280 keys: 47 instead of 62). With AVX512-BF16
    and no AMX it is two to three times as fast on the segments of pretraining (8 x 160 tokens
    with a key-padding mask: 6 ms instead of 15 ms).

    Args:
        query: [..., H, Lq, hd].
        key: [..., H, Lk, hd].
        value: [..., H, Lk, hd].
        mask: Optional bool, broadcastable to [..., H, Lq, Lk]; True = may attend.

    Returns:
        [..., H, Lq, hd].
    """
    if (
        query.device.type == "cpu"
        and query.dtype in (torch.bfloat16, torch.float16)
        and query.shape[-2] <= EXPLICIT_ATTENTION_MAX_QUERIES
        and torch.is_grad_enabled()
    ):
        scores = (query * query.shape[-1] ** -0.5) @ key.transpose(-1, -2)
        if mask is not None:  # an additive bias is cheaper than masked_fill on the scores
            scores = scores + torch.zeros_like(mask, dtype=scores.dtype).masked_fill_(
                ~mask, float("-inf")
            )
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
        tokens = groups * group_length
        # [B, H, L, hd] each
        q_f, k_f, v_f = (
            self.qkv(fusion).view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        )
        qkv_m = layout.tokenwise(self.qkv, modality)  # [B, G, T, 3D]
        # [B, H, G*T, hd] each
        q_m, k_m, v_m = qkv_m.view(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
        keys = torch.cat([k_f, k_m], dim=2)  # [B, H, L + G*T, hd]
        values = torch.cat([v_f, v_m], dim=2)
        if self.attention == "full":
            queries = torch.cat([q_f, q_m], dim=2)
            out = attend(queries, keys, values, layout.key_mask).transpose(1, 2)
            out_f, out_m = out.reshape(batch, length + tokens, dim).split([length, tokens], 1)
        else:
            out_f = attend(q_f, keys, values, layout.key_mask).transpose(1, 2)
            out_f = out_f.reshape(batch, length, dim)
            out_m = self.attend_within_modalities(qkv_m, layout)
        fusion_out = self.proj(out_f)
        modality_out = layout.tokenwise(self.proj, out_m.reshape(batch, groups, group_length, dim))
        return fusion_out, modality_out

    def attend_within_modalities(self, qkv: Tensor, layout: TokenLayout) -> Tensor:
        """Modality queries over the keys of their own modality (the modality rows of eq. 3).

        Args:
            qkv: Projected modality block [B, G, T, 3D] (queries, keys, values).
            layout: Gives the sequences, or the segments, that attend among themselves.

        Returns:
            Attention outputs [B, G, T, D] (zero at padding tokens of a packed block).
        """
        batch, groups, group_length, width = qkv.shape
        dim, heads = width // 3, self.num_heads
        head_dim = dim // heads
        segments = layout.segments
        if segments is None:
            q, k, v = qkv.view(batch * groups, group_length, 3, heads, head_dim).permute(
                2, 0, 3, 1, 4
            )  # [B*G, H, T, hd] each
            out = attend(q, k, v, layout.modality_mask)
            return out.transpose(1, 2).reshape(batch, groups, group_length, dim)
        gathered = qkv.reshape(-1, width).index_select(0, segments.rows)  # [sum N*S, 3D]
        sizes = [group.count * group.length for group in segments.groups]
        outputs = []
        for group, part in zip(segments.groups, gathered.split(sizes), strict=True):
            q, k, v = part.view(group.count, group.length, 3, heads, head_dim).permute(
                2, 0, 3, 1, 4
            )  # [N, H, S, hd] each
            out = attend(q, k, v, group.key_mask)
            outputs.append(out.transpose(1, 2).reshape(-1, dim))
        outputs.append(qkv.new_zeros(1, dim))  # the slot of padding tokens
        out = torch.cat(outputs).index_select(0, segments.inverse)
        return out.view(batch, groups, group_length, dim)


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
        normed_m = layout.tokenwise(self.norm1, modality)
        attn_f, attn_m = self.drop_path(*self.attn(self.norm1(fusion), normed_m, layout))
        fusion, modality = fusion + attn_f, modality + attn_m
        mlp_m = layout.tokenwise(lambda tokens: self.mlp(self.norm2(tokens)), modality)
        mlp_f, mlp_m = self.drop_path(self.mlp(self.norm2(fusion)), mlp_m)
        return fusion + mlp_f, modality + mlp_m
