"""The masked-fusion ViT backbone (paper III-A to III-C and III-E), one concept per module.

* `fusion.backbone.model`: `MaskedFusionViT`, its parameters and its named forward steps;
* `fusion.backbone.variants`: the paper's backbones (proposed, MultiViT, ablations) as presets;
* `fusion.backbone.inputs`: checks of the input dict, and the presence and visibility masks;
* `fusion.backbone.tokens`: the modality tokens embedded and laid out, on the grid or packed;
* `fusion.backbone.output`: what the backbone returns (`FusionOutput`).
"""

from fusion.backbone.model import MaskedFusionViT
from fusion.backbone.output import FusionOutput
from fusion.backbone.variants import VARIANTS, BackboneVariant, variant_options

__all__ = ["VARIANTS", "BackboneVariant", "FusionOutput", "MaskedFusionViT", "variant_options"]
