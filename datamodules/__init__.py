"""TorchGeo datasets and DataModules for missing-modality remote-sensing fusion.

Every dataset returns the sample contract of :mod:`datamodules.dataset`; every DataModule draws a
random modality subset per training sample (:mod:`datamodules.modality_sampling`).
"""

from datamodules.datamodule import MultimodalDataModule, collate_samples
from datamodules.dataset import Modality, MultimodalDataset
from datamodules.dfc2023 import DFC2023, CocoError, DFC2023DataModule
from datamodules.landcover import IGNORE_INDEX
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

DATASETS: dict[str, type[MultimodalDataset]] = {
    "dfc2023": DFC2023,
    "quadruplets": Quadruplets,
    "sen1floods11": Sen1Floods11Chip,
}
"""Dataset classes by the short names the command-line tools use."""

__all__ = [
    "DATASETS",
    "DFC2023",
    "IGNORE_INDEX",
    "CocoError",
    "DFC2023DataModule",
    "FixedSubset",
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
    "UniformSubsets",
    "all_subsets",
    "collate_samples",
    "make_modality_sampler",
]
