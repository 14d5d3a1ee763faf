"""What the backbone returns: fusion and modality tokens, pooled vectors and pyramid features."""

from dataclasses import dataclass

from torch import Tensor


def tokens_to_map(tokens: Tensor, grid_size: tuple[int, int]) -> Tensor:
    """Reshapes row-major patch tokens [B, L, D] to a feature map [B, D, h, w]."""
    batch, _, dim = tokens.shape
    return tokens.transpose(1, 2).reshape(batch, dim, *grid_size)


@dataclass
class FusionOutput:
    """What `fusion.MaskedFusionViT` returns.

    Attributes:
        fusion: Fusion tokens after the final LayerNorm, [B, L, D], row-major over the
            (h, w) patch grid.
        modality_tokens: For each input modality, its output tokens after the final LayerNorm,
            [B, L, D], zero where the token was not visible.
        modality_vectors: For each input modality m, the pooled modality vector z_m, [B, D].
        fusion_vectors: For each input modality m, the pooled fusion vector z_{f_m} over the
            fusion tokens at m's visible positions, [B, D].
        vectors_valid: For each input modality, [B] bool: True where the modality is present
            with at least one visible token, i.e. where its two vectors mean something (they
            are zero elsewhere).
        visible: For each input modality, the visibility used, [B, L] bool (presence and
            token visibility combined).
        intermediates: Fusion tokens [B, L, D] right after each of the blocks named by the
            model's ``intermediate_blocks`` (1-based), before any final norm.
        grid_size: Patch grid (h, w); L = h * w.
    """

    fusion: Tensor
    modality_tokens: dict[str, Tensor]
    modality_vectors: dict[str, Tensor]
    fusion_vectors: dict[str, Tensor]
    vectors_valid: dict[str, Tensor]
    visible: dict[str, Tensor]
    intermediates: list[Tensor]
    grid_size: tuple[int, int]

    def intermediate_maps(self) -> list[Tensor]:
        """The intermediate fusion tokens as feature maps [B, D, h, w]."""
        return [tokens_to_map(tokens, self.grid_size) for tokens in self.intermediates]
