"""Incomplete multimodal learning for remote-sensing data fusion (Chen, Zhao, Bruzzone, 2024).

The backbone (`fusion.backbone`) and its modality specs come with the package; the tasks
(`fusion.tasks`, LightningModules) are imported on first use, so that ``import fusion`` does not
load Lightning and the segmentation heads.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fusion.backbone import FusionOutput, MaskedFusionViT
from fusion.modality import ModalitySpec

__all__ = [
    "FusionOutput",
    "MaskedFusionViT",
    "ModalitySpec",
    "PretrainTask",
    "SegmentationTask",
    "ThresholdTask",
]

_TASKS = ("PretrainTask", "SegmentationTask", "ThresholdTask")
"""Names imported from `fusion.tasks` on first access."""


def __getattr__(name: str) -> Any:
    """Import a task from `fusion.tasks` on first access."""
    if name in _TASKS:
        return getattr(importlib.import_module("fusion.tasks"), name)
    raise AttributeError(f"module 'fusion' has no attribute {name!r}")


if TYPE_CHECKING:
    from fusion.tasks import PretrainTask, SegmentationTask, ThresholdTask
