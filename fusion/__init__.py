"""Incomplete multimodal learning for remote-sensing data fusion (Chen, Zhao, Bruzzone, 2024)."""

from fusion.backbone import FusionOutput, MaskedFusionViT
from fusion.modality import ModalitySpec

__all__ = ["FusionOutput", "MaskedFusionViT", "ModalitySpec"]
