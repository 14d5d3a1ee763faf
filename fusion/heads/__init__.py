"""Segmentation heads on the fusion backbone: feature pyramid and Mask2Former (paper IV-B-3/4)."""

from fusion.heads.inference import (
    InstancePrediction,
    instance_inference,
    semantic_inference,
    semantic_scores,
)
from fusion.heads.mask2former import Mask2FormerHead, MaskPredictions
from fusion.heads.pyramid import SimpleFeaturePyramid
from fusion.heads.targets import MaskTargets, instance_targets, semantic_targets

__all__ = [
    "InstancePrediction",
    "Mask2FormerHead",
    "MaskPredictions",
    "MaskTargets",
    "SimpleFeaturePyramid",
    "instance_inference",
    "instance_targets",
    "semantic_inference",
    "semantic_scores",
    "semantic_targets",
]
