"""LightningModules of the paper's training paradigms."""

from fusion.tasks.pretrain import PretrainTask
from fusion.tasks.segmentation import SegmentationTask

__all__ = ["PretrainTask", "SegmentationTask"]
