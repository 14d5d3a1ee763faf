"""The backbone variants compared in the paper's Tables I to IV, as presets of one class.

Each variant is a setting of the two switches of `fusion.MaskedFusionViT`:

| variant | self-attention | modality attention (eq. 2) | in the paper |
|---|---|---|---|
| ``"proposed"`` | masked (eq. 3) | before every block | the method |
| ``"multivit"`` | full | off | MultiViT baseline (below) |
| ``"no_masked_attention"`` | full | before every block | ablation "w/o mask" (Tables III/IV) |
| ``"no_modality_attention"`` | masked (eq. 3) | off | ablation "w/o attention" (Tables III/IV) |

MultiViT is the paper's baseline: "origin self-attention and the same number of learnable fusion
tokens", i.e. ordinary self-attention over all tokens and no modality attention.

The "w/o random combination" ablation is the proposed backbone trained on complete inputs: a
setting of the DataModule (``train_modalities: all``), not of the backbone.
"""

from typing import Any, Literal

BackboneVariant = Literal["proposed", "multivit", "no_masked_attention", "no_modality_attention"]
"""Names of the backbone presets."""

VARIANTS: dict[str, dict[str, Any]] = {
    "proposed": {"attention": "masked", "modality_attention": True},
    "multivit": {"attention": "full", "modality_attention": False},
    "no_masked_attention": {"attention": "full", "modality_attention": True},
    "no_modality_attention": {"attention": "masked", "modality_attention": False},
}


def variant_options(variant: BackboneVariant) -> dict[str, Any]:
    """The `fusion.MaskedFusionViT` keyword arguments of a named variant.

    Args:
        variant: One of ``"proposed"``, ``"multivit"``, ``"no_masked_attention"``,
            ``"no_modality_attention"``.

    Returns:
        ``{"attention": ..., "modality_attention": ...}``.

    Raises:
        ValueError: For an unknown name, listing the known ones.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown backbone variant {variant!r}; choose one of {list(VARIANTS)}")
    return dict(VARIANTS[variant])
