"""The masked-fusion ViT backbone (paper III-A to III-C and III-E).

Every modality present in the input is cut into P x P patches by its own projection, and a
learned fusion token sits at every patch position. All of them get the 2-D sine-cosine
positional embedding of eq. (1); there is no modality embedding. Before each Transformer block,
modality attention (eq. 2) lets each fusion token gather the modality tokens at its position;
the blocks then run masked self-attention (eq. 3), in which modality tokens see only their own
modality and fusion tokens see everything. A last cross-attention layer pools class tokens into
the global vectors of the contrastive loss (III-E).

How the tokens are laid out (grid, or packed when token-level visibility is given) is
`fusion.backbone.tokens`; what the model returns is `fusion.backbone.output`.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch
from timm.layers import resample_abs_pos_embed, trunc_normal_
from torch import Tensor, nn

from fusion.backbone.inputs import check_inputs, token_visibility
from fusion.backbone.output import FusionOutput, tokens_to_map
from fusion.backbone.tokens import FusionTokens, embed_modality_tokens
from fusion.backbone.variants import VARIANTS, BackboneVariant, variant_options
from fusion.layers.masked_attention import AttentionKind, MaskedBlock
from fusion.layers.modality_attention import ModalityAttention
from fusion.layers.patch_embed import build_patch_embed
from fusion.layers.pooling import ClassTokenPooling
from fusion.layers.pos_embed import SinCosPosEmbed2d
from fusion.modality import ModalityConfig, ModalitySpec, parse_modalities

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)
"""The default normalization layer: LayerNorm with eps 1e-6, as timm's ViTs."""


def default_intermediate_blocks(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the depth, 1-based: (3, 6, 9, 12) for depth 12."""
    return tuple(-(-depth * quarter // 4) for quarter in range(1, 5))


class MaskedFusionViT(nn.Module):
    """Multimodal ViT with fusion tokens, modality attention and masked self-attention.

    The backbones compared in the paper are settings of two switches, named as presets in
    `fusion.backbone.variants` and built with `from_variant` (or the ``variant`` argument of `tiny`,
    `small`, `base`): ``"proposed"`` (masked attention and modality attention, the default),
    ``"multivit"`` (the MultiViT baseline: ``attention="full"`` over all visible tokens, the
    same fusion tokens, no modality attention), ``"no_masked_attention"`` (``attention="full"``
    with modality attention, "w/o mask") and ``"no_modality_attention"`` (masked attention,
    ``modality_attention=False``, "w/o attention").

    Missing data: a modality left out of the input dict adds no tokens, so compute scales with
    the modalities present. ``present`` drops a modality for some samples and ``visible`` hides
    single tokens; hidden tokens are never seen by fusion tokens or pooling, and modality
    attention sees the learned mask token in their place.

    Args:
        modalities: Modality name -> channel count, ``("categorical", num_classes)`` or
            `ModalitySpec` (or a sequence of `ModalitySpec`).
        img_size: Default image size (H, W) or side; sets the grid of the learned fusion tokens,
            which are resampled for other sizes.
        patch_size: Patch side P in pixels.
        embed_dim: Token width D (divisible by 4 and by ``num_heads``).
        depth: Number of Transformer blocks.
        num_heads: Attention heads.
        mlp_ratio: MLP hidden width as a multiple of D.
        qkv_bias: Whether query/key/value projections have a bias.
        drop_path_rate: Stochastic depth rate of the last block (linear from 0).
        attention: ``"masked"`` (eq. 3) or ``"full"`` (ordinary self-attention over all
            visible tokens).
        modality_attention: Whether to run modality attention (eq. 2). As in the authors' code
            it runs before every Transformer block.
        intermediate_blocks: 1-based numbers of the blocks after which the fusion tokens are
            kept for a segmentation pyramid: ``k`` means the output of the k-th block. Default:
            the last block of each quarter of the depth, (3, 6, 9, 12) for depth 12.
        class_embed_dim: Width of the class embedding of categorical modalities.
        norm_layer: Normalization layer, called with D.

    Attributes:
        fusion_tokens: Learned fusion tokens [1, h*w, D], one per patch position of the default
            grid (resampled for other grids).
        mask_token: The mask token z_mask of eq. 2, [D]: one learned vector shared by all
            modalities, positions and blocks. Modality attention uses it as the key/value
            input wherever a modality's token is missing, so it only learns when something is
            missing (always in pretraining). None without modality attention.
        pooling: Class tokens (one per modality, one global fusion token) and the final
            cross-attention layer of III-E.
    """

    def __init__(
        self,
        modalities: Mapping[str, ModalityConfig] | Sequence[ModalitySpec],
        img_size: int | tuple[int, int] = 256,
        patch_size: int = 16,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path_rate: float = 0.0,
        attention: AttentionKind = "masked",
        modality_attention: bool = True,
        intermediate_blocks: Sequence[int] | None = None,
        class_embed_dim: int = 64,
        norm_layer: Callable[[int], nn.Module] = LayerNorm6,
    ) -> None:
        super().__init__()
        specs = parse_modalities(modalities)
        self.specs = {spec.name: spec for spec in specs}
        self.modality_names = tuple(self.specs)
        height, width = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if height % patch_size or width % patch_size:
            raise ValueError(f"img_size {img_size} is not divisible by the patch size {patch_size}")
        self.patch_size = patch_size
        self.grid_size = (height // patch_size, width // patch_size)
        self.embed_dim = embed_dim
        self.attention = attention
        self.intermediate_blocks = tuple(
            default_intermediate_blocks(depth)
            if intermediate_blocks is None
            else intermediate_blocks
        )
        if not all(1 <= block <= depth for block in self.intermediate_blocks):
            raise ValueError(
                f"intermediate_blocks are 1-based block numbers in [1, {depth}], "
                f"got {self.intermediate_blocks}"
            )

        self.patch_embeds = nn.ModuleDict(
            {
                spec.name: build_patch_embed(spec, embed_dim, patch_size, class_embed_dim)
                for spec in specs
            }
        )
        self.pos_embed = SinCosPosEmbed2d(embed_dim)
        self.fusion_tokens = nn.Parameter(
            torch.zeros(1, self.grid_size[0] * self.grid_size[1], embed_dim)
        )
        self.mask_token = nn.Parameter(torch.zeros(embed_dim)) if modality_attention else None
        drop_rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.modality_attention = (
            nn.ModuleList(
                ModalityAttention(
                    embed_dim,
                    num_heads,
                    len(specs),
                    mlp_ratio=mlp_ratio,
                    qkv_bias=qkv_bias,
                    drop_path=rate,
                    norm_layer=norm_layer,
                )
                for rate in drop_rates
            )
            if modality_attention
            else None
        )
        self.blocks = nn.ModuleList(
            MaskedBlock(
                embed_dim,
                num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                drop_path=rate,
                attention=attention,
                norm_layer=norm_layer,
            )
            for rate in drop_rates
        )
        self.norm = norm_layer(embed_dim)
        self.pooling = ClassTokenPooling(embed_dim, num_heads, len(specs))
        self.init_weights()

    @classmethod
    def from_variant(
        cls,
        modalities: Mapping[str, ModalityConfig] | Sequence[ModalitySpec],
        variant: BackboneVariant = "proposed",
        **kwargs: Any,
    ) -> "MaskedFusionViT":
        """A backbone of one of the paper's variants (see `fusion.backbone.variants`).

        Args:
            modalities: As in the constructor.
            variant: ``"proposed"``, ``"multivit"``, ``"no_masked_attention"`` or
                ``"no_modality_attention"``.
            **kwargs: Other constructor arguments.

        Raises:
            ValueError: For an unknown variant, or if ``kwargs`` also set a switch that the
                variant sets (``attention``, ``modality_attention``).
        """
        options = variant_options(variant)
        clash = sorted(options.keys() & kwargs.keys())
        if clash:
            raise ValueError(
                f"variant {variant!r} sets {clash}; give either the variant or the switches"
            )
        return cls(modalities, **options, **kwargs)

    @classmethod
    def tiny(
        cls,
        modalities: Mapping[str, ModalityConfig],
        variant: BackboneVariant | None = None,
        **kwargs: Any,
    ) -> "MaskedFusionViT":
        """ViT-Tiny as in the paper: D=192, 12 blocks, 3 heads (``kwargs`` override).

        ``variant`` names a preset of `fusion.backbone.variants`; without it the switches are the
        constructor's (default: the proposed backbone).
        """
        sizes = {"embed_dim": 192, "depth": 12, "num_heads": 3}
        return cls._sized(modalities, variant, {**sizes, **kwargs})

    @classmethod
    def small(
        cls,
        modalities: Mapping[str, ModalityConfig],
        variant: BackboneVariant | None = None,
        **kwargs: Any,
    ) -> "MaskedFusionViT":
        """ViT-Small: D=384, 12 blocks, 6 heads; arguments as in `tiny`."""
        sizes = {"embed_dim": 384, "depth": 12, "num_heads": 6}
        return cls._sized(modalities, variant, {**sizes, **kwargs})

    @classmethod
    def base(
        cls,
        modalities: Mapping[str, ModalityConfig],
        variant: BackboneVariant | None = None,
        **kwargs: Any,
    ) -> "MaskedFusionViT":
        """ViT-Base: D=768, 12 blocks, 12 heads; arguments as in `tiny`."""
        sizes = {"embed_dim": 768, "depth": 12, "num_heads": 12}
        return cls._sized(modalities, variant, {**sizes, **kwargs})

    @classmethod
    def _sized(
        cls,
        modalities: Mapping[str, ModalityConfig],
        variant: BackboneVariant | None,
        kwargs: dict[str, Any],
    ) -> "MaskedFusionViT":
        if variant is None:
            return cls(modalities, **kwargs)
        return cls.from_variant(modalities, variant, **kwargs)

    @property
    def variant(self) -> str | None:
        """The name of the preset that this backbone's switches match, or None."""
        switches = {
            "attention": self.attention,
            "modality_attention": self.modality_attention is not None,
        }
        return next((name for name, options in VARIANTS.items() if options == switches), None)

    def init_weights(self) -> None:
        """ViT-style initialization; patch projections like linear layers (as in MAE)."""
        trunc_normal_(self.fusion_tokens, std=0.02)
        if self.mask_token is not None:
            trunc_normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for embed in self.patch_embeds.values():
            nn.init.xavier_uniform_(embed.proj.weight.view(self.embed_dim, -1))
            nn.init.zeros_(embed.proj.bias)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not be weight-decayed (learned tokens and queries)."""
        return {"fusion_tokens", "mask_token", "pooling.modality_queries", "pooling.fusion_query"}

    def fusion_tokens_for(self, grid_size: tuple[int, int]) -> Tensor:
        """The learned fusion tokens [1, L, D] for a patch grid, resampled if not the default."""
        if grid_size == self.grid_size:
            return self.fusion_tokens
        return resample_abs_pos_embed(
            self.fusion_tokens, list(grid_size), list(self.grid_size), num_prefix_tokens=0
        )

    def embed(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        visible: Mapping[str, Tensor] | None = None,
        pack: bool | None = None,
    ) -> FusionTokens:
        """Patch projections, positional embeddings and token layout.

        Args:
            inputs: Modality name -> float raster [B, C, H, W], or class ids [B, H, W] /
                [B, 1, H, W] for a categorical modality. Modalities left out are absent.
            present: Optional name -> [B] bool; False drops the modality for that sample.
            visible: Optional name -> [B, L] bool; False hides the token (pretraining masking).
            pack: Pack the visible modality tokens per sample (see `embed_modality_tokens`) so
                that hidden tokens cost nothing. Default: pack exactly when ``visible`` is given.

        Returns:
            The encoder's input tokens.
        """
        batch, height, width = check_inputs(inputs, self.specs, self.patch_size)
        names = tuple(name for name in self.modality_names if name in inputs)
        grid_size = (height // self.patch_size, width // self.patch_size)
        length = grid_size[0] * grid_size[1]
        device = self.fusion_tokens.device
        pos_embed = self.pos_embed(grid_size, device)  # [L, D]
        visibility = token_visibility(
            names, self.modality_names, present, visible, batch, length, device
        )
        fusion = (self.fusion_tokens_for(grid_size) + pos_embed).expand(batch, -1, -1)
        modality, layout = embed_modality_tokens(
            self.patch_embeds,
            inputs,
            names,
            visibility,
            pos_embed,
            batch,
            grid_size,
            pack=visible is not None if pack is None else pack,
        )
        return FusionTokens(fusion, modality, layout, names, grid_size)

    def forward_blocks(
        self, tokens: FusionTokens, num_blocks: int | None = None
    ) -> tuple[FusionTokens, dict[int, Tensor]]:
        """Modality attention and Transformer blocks.

        Args:
            tokens: Output of `embed`.
            num_blocks: Stop after this many blocks (default: all).

        Returns:
            The tokens after the last block run (no final norm), and the fusion tokens [B, L, D]
            after each block in ``intermediate_blocks``, by 1-based block number.
        """
        fusion, modality, layout = tokens.fusion, tokens.modality, tokens.layout
        intermediates = {}
        for number, block in enumerate(self.blocks[:num_blocks], start=1):
            if self.modality_attention is not None:
                fusion = self.modality_attention[number - 1](
                    fusion, modality, layout, self.mask_token
                )
            fusion, modality = block(fusion, modality, layout)
            if number in self.intermediate_blocks:
                intermediates[number] = fusion
        return replace(tokens, fusion=fusion, modality=modality), intermediates

    def forward_features(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        visible: Mapping[str, Tensor] | None = None,
        pack: bool | None = None,
    ) -> tuple[FusionTokens, list[Tensor]]:
        """Embedding, all blocks and the final norm; arguments as in `forward`.

        Returns:
            The normalized output tokens, and the intermediate fusion tokens [B, L, D] in the
            order of ``intermediate_blocks``.
        """
        tokens, intermediates = self.forward_blocks(self.embed(inputs, present, visible, pack))
        tokens = replace(
            tokens,
            fusion=self.norm(tokens.fusion),
            modality=tokens.layout.tokenwise(self.norm, tokens.modality),
        )
        return tokens, [intermediates[number] for number in self.intermediate_blocks]

    def forward_head(self, tokens: FusionTokens, intermediates: list[Tensor]) -> FusionOutput:
        """Puts modality tokens back on the grid and pools the class tokens (III-E)."""
        grid_tokens = tokens.layout.scatter(tokens.modality, fill=tokens.modality.new_zeros(()))
        visible = tokens.layout.visible  # [B, M, L]
        modality_ids = [self.modality_names.index(name) for name in tokens.names]
        vectors_m, vectors_f, valid = self.pooling(
            tokens.fusion, grid_tokens, visible, modality_ids
        )
        return FusionOutput(
            fusion=tokens.fusion,
            modality_tokens={name: grid_tokens[:, i] for i, name in enumerate(tokens.names)},
            modality_vectors={name: vectors_m[:, i] for i, name in enumerate(tokens.names)},
            fusion_vectors={name: vectors_f[:, i] for i, name in enumerate(tokens.names)},
            vectors_valid={name: valid[:, i] for i, name in enumerate(tokens.names)},
            visible={name: visible[:, i] for i, name in enumerate(tokens.names)},
            intermediates=intermediates,
            grid_size=tokens.grid_size,
        )

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        visible: Mapping[str, Tensor] | None = None,
        pack: bool | None = None,
    ) -> FusionOutput:
        """Encodes a (possibly incomplete) set of modalities.

        Args:
            inputs: Modality name -> float raster [B, C, H, W], or class ids [B, H, W] /
                [B, 1, H, W] for a categorical modality. Modalities left out are absent and
                cost nothing. H and W are shared and divisible by the patch size.
            present: Optional name -> [B] bool; False drops the modality for that sample.
            visible: Optional name -> [B, L] bool, L = (H/P) * (W/P) row-major; False hides a
                token (pretraining masking). Missing entries mean fully visible.
            pack: Pack the visible modality tokens per sample so that hidden tokens cost
                nothing. Default: pack exactly when ``visible`` is given. Both layouts compute
                the same function.

        Returns:
            Fusion tokens, modality tokens, pooled vectors and intermediates; see
            `FusionOutput`.

        Raises:
            ValueError: For an empty input, an unknown modality, mismatched or indivisible
                sizes, wrong channel counts or out-of-range class ids.
            TypeError: For a categorical input that is not integer, or a float mask.
        """
        return self.forward_head(*self.forward_features(inputs, present, visible, pack))

    def forward_intermediates(
        self,
        inputs: Mapping[str, Tensor],
        present: Mapping[str, Tensor] | None = None,
        visible: Mapping[str, Tensor] | None = None,
        pack: bool | None = None,
    ) -> list[Tensor]:
        """Fusion feature maps for a segmentation pyramid; arguments as in `forward`.

        Runs only up to the last of ``intermediate_blocks`` and skips norm and pooling.

        Returns:
            One map [B, D, h, w] per entry of ``intermediate_blocks`` (the raw fusion tokens
            after that block), in that order.
        """
        tokens = self.embed(inputs, present, visible, pack)
        tokens, intermediates = self.forward_blocks(tokens, max(self.intermediate_blocks))
        return [
            tokens_to_map(intermediates[number], tokens.grid_size)
            for number in self.intermediate_blocks
        ]
