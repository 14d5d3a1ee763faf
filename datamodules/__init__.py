"""TorchGeo datasets and DataModules for missing-modality remote-sensing fusion.

Every dataset returns the sample contract of `datamodules.dataset`; every DataModule draws a
random modality subset per training sample (`datamodules.modality_sampling`).

Names are imported on first use, so that light submodules (the class tables, the synthetic-data
generator) load without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "MultimodalDataModule": "datamodules.datamodule",
    "collate_samples": "datamodules.datamodule",
    "Modality": "datamodules.modality",
    "MultimodalDataset": "datamodules.dataset",
    "DFC2023": "datamodules.dfc2023",
    "CocoError": "datamodules.dfc2023",
    "DFC2023DataModule": "datamodules.dfc2023",
    "IGNORE_INDEX": "datamodules.landcover",
    "FixedSubset": "datamodules.modality_sampling",
    "IndependentDrop": "datamodules.modality_sampling",
    "ModalitySampler": "datamodules.modality_sampling",
    "UniformSubsets": "datamodules.modality_sampling",
    "all_subsets": "datamodules.modality_sampling",
    "make_modality_sampler": "datamodules.modality_sampling",
    "Quadruplets": "datamodules.quadruplets",
    "QuadrupletsDataModule": "datamodules.quadruplets",
    "RasterError": "datamodules.rasters",
    "Sen1Floods11Chip": "datamodules.sen1floods11",
    "Sen1Floods11DataModule": "datamodules.sen1floods11",
    "Sen1Floods11Chips": "datamodules.sen1floods11_chips",
    "Sen1Floods11ChipsDataModule": "datamodules.sen1floods11_chips",
}

__all__ = [
    "DATASETS",
    "CocoError",
    "DFC2023",
    "DFC2023DataModule",
    "FixedSubset",
    "IGNORE_INDEX",
    "IndependentDrop",
    "Modality",
    "ModalitySampler",
    "MultimodalDataModule",
    "MultimodalDataset",
    "Quadruplets",
    "QuadrupletsDataModule",
    "RasterError",
    "Sen1Floods11Chip",
    "Sen1Floods11DataModule",
    "Sen1Floods11Chips",
    "Sen1Floods11ChipsDataModule",
    "UniformSubsets",
    "all_subsets",
    "collate_samples",
    "make_modality_sampler",
]


def __getattr__(name: str) -> Any:
    """Import an exported name from its submodule on first access."""
    if name == "DATASETS":
        return {
            "dfc2023": __getattr__("DFC2023"),
            "quadruplets": __getattr__("Quadruplets"),
            "sen1floods11": __getattr__("Sen1Floods11Chip"),
            "sen1floods11_chips": __getattr__("Sen1Floods11Chips"),
        }
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'datamodules' has no attribute {name!r}")


if TYPE_CHECKING:
    from datamodules.datamodule import MultimodalDataModule, collate_samples
    from datamodules.dataset import MultimodalDataset
    from datamodules.dfc2023 import DFC2023, CocoError, DFC2023DataModule
    from datamodules.landcover import IGNORE_INDEX
    from datamodules.modality import Modality
    from datamodules.modality_sampling import (
        FixedSubset,
        IndependentDrop,
        ModalitySampler,
        UniformSubsets,
        all_subsets,
        make_modality_sampler,
    )
    from datamodules.quadruplets import Quadruplets, QuadrupletsDataModule
    from datamodules.rasters import RasterError
    from datamodules.sen1floods11 import Sen1Floods11Chip, Sen1Floods11DataModule
    from datamodules.sen1floods11_chips import Sen1Floods11Chips, Sen1Floods11ChipsDataModule
