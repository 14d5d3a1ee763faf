"""LightningModules of the paper's training paradigms."""

from fusion.tasks.pretrain import PretrainTask
from fusion.tasks.segmentation import SegmentationTask
from fusion.tasks.threshold import ThresholdTask

__all__ = ["PretrainTask", "SegmentationTask", "ThresholdTask"]
