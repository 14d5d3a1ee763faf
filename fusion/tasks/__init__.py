"""LightningModules of the paper's training paradigms."""

from fusion.tasks.pretrain import PretrainTask

__all__ = ["PretrainTask"]
