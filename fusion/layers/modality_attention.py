"""Modality attention, eq. (2): each fusion token gathers the modalities at its position.

At patch position l the fusion token z_f is the query of a multi-head cross attention whose
keys and values are ``LN([z_f, z_1, ..., z_M])`` as eq. (2) writes them: the fusion token
itself and the token of every modality the model knows at that position. Wherever a modality's
token is missing, because the modality is absent from the batch or the sample or the token is
hidden by pretraining masking, the learned mask token z_mask takes its place, so the fusion
token always sees M+1 keys and can tell "missing" from any real content.

    z_f = MCA(LN([z_f, z])) + z_f
    z_f = MLP(LN(z_f)) + z_f
"""

import torch
from timm.layers import DropPath, Mlp
from torch import Tensor, nn

from fusion.layers.token_layout import TokenLayout


class ModalityAttention(nn.Module):
    """Per-position cross attention from fusion tokens to modality tokens (eq. 2).

    Args:
        dim: Token width D.
        num_heads: Number of heads H (D divisible by H).
        num_modalities: Number of modalities the model knows (keys per position, besides the
            fusion token itself).
        mlp_ratio: MLP hidden width as a multiple of D.
        qkv_bias: Whether the query and key/value projections have a bias.
        drop_path: Stochastic depth rate of both residual branches.
        norm_layer: Normalization layer, called with D.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_modalities: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
        norm_layer: type[nn.Module] = nn.LayerNorm,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.num_modalities = num_modalities
        self.norm = norm_layer(dim)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(
        self, fusion: Tensor, modality: Tensor, layout: TokenLayout, mask_token: Tensor
    ) -> Tensor:
        """Updates the fusion tokens.

        Args:
            fusion: Fusion tokens [B, L, D].
            modality: Modality-token block [B, G, T, D] laid out by ``layout``.
            layout: Maps the block to grid positions and tells which tokens are visible.
            mask_token: The learned mask token z_mask [D].

        Returns:
            Updated fusion tokens [B, L, D].
        """
        batch, length, dim = fusion.shape
        heads = self.num_heads
        head_dim = dim // heads
        scale = head_dim**-0.5
        fusion_normed = self.norm(fusion)
        query = self.q(fusion_normed).view(batch, length, heads, head_dim)
        key_f, value_f = self.kv(fusion_normed).view(batch, length, 2, heads, head_dim).unbind(2)
        key_mask, value_mask = self.kv(self.norm(mask_token)).view(2, heads, head_dim)
        groups, group_length = modality.shape[1:3]
        key_m, value_m = (  # [B, G, T, H, hd] each
            layout.tokenwise(lambda tokens: self.kv(self.norm(tokens)), modality)
            .view(batch, groups, group_length, 2, heads, head_dim)
            .unbind(3)
        )
        # Logits of the M+1 keys at each position, [B, 2 + M', L, H]: the fusion token, the
        # mask token once for all k missing modalities (+ log k: the same as k equal keys), and
        # the visible modality tokens, computed only where they are (-inf elsewhere).
        query_m = layout.per_token(query.flatten(2)).unflatten(-1, (heads, head_dim))
        no_key = query.new_full((heads,), float("-inf"))
        logits_m = layout.scatter((query_m * key_m).sum(dim=-1) * scale, fill=no_key)
        missing = self.num_modalities - layout.visible.sum(dim=1)  # [B, L]
        logits_f = (query * key_f).sum(dim=-1) * scale  # [B, L, H]
        logits_mask = (query * key_mask).sum(dim=-1) * scale + missing[..., None].float().log()
        logits = torch.cat(
            [logits_f[:, None], logits_mask[:, None].to(logits_f.dtype), logits_m], 1
        )
        weights = logits.softmax(dim=1).to(value_m.dtype)
        # Values: the visible tokens' go back to their positions and sum there.
        weights_m = layout.arrange(weights[:, 2:])  # [B, G, T, H]
        gathered_m = layout.sum_per_position((weights_m[..., None] * value_m).flatten(3))
        gathered = weights[:, 0, ..., None] * value_f + weights[:, 1, ..., None] * value_mask
        gathered = gathered.flatten(2) + gathered_m
        fusion = fusion + self.drop_path(self.proj(gathered))
        return fusion + self.drop_path(self.mlp(self.norm_mlp(fusion)))
