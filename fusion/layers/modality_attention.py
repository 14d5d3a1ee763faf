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
        fusion_normed = self.norm(fusion)
        # One sequence per (sample, position): the fusion token's query against its M+1 keys.
        query = self.q(fusion_normed).view(batch, length, 1, heads, head_dim)
        mask_kv = self.kv(self.norm(mask_token))  # [2D]
        present_kv = layout.scatter(self.kv(self.norm(modality)), fill=mask_kv)  # [B, M', L, 2D]
        absent = self.num_modalities - present_kv.shape[1]
        key_values = [self.kv(fusion_normed)[:, :, None], present_kv.transpose(1, 2)]
        if absent:  # modalities missing from the whole batch: mask tokens as well
            key_values.append(mask_kv.expand(batch, length, absent, 2 * dim))
        key_values = torch.cat(key_values, dim=2).view(batch, length, -1, 2, heads, head_dim)
        keys, values = key_values.unbind(3)  # [B, L, 1+M, H, hd] each
        # One query against M+1 keys: elementwise products beat a batched attention kernel.
        logits = (query * keys).sum(dim=-1) * head_dim**-0.5  # [B, L, 1+M, H]
        weights = logits.softmax(dim=2).to(values.dtype)
        gathered = (weights[..., None] * values).sum(dim=2).view(batch, length, dim)
        fusion = fusion + self.drop_path(self.proj(gathered))
        return fusion + self.drop_path(self.mlp(self.norm_mlp(fusion)))
