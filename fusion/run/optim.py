"""Optimizer pieces of the paper's recipe: AdamW groups, scaled learning rate, schedules.

Schedules are callables ``step -> factor`` for `torch.optim.lr_scheduler.LambdaLR`, stepped per
optimizer step, whose length can be changed while training runs (`LearningRateSchedule.fit_to`):
`fusion.run.budget.TimeBudget` fits them to the number of steps that a time budget allows.
"""

from __future__ import annotations

import math
from typing import Protocol

import lightning as L
from torch import nn


def scaled_learning_rate(base_lr: float, batch_size: int) -> float:
    """The paper's (and MAE's) rule ``lr = base_lr * batch_size / 256``."""
    return base_lr * batch_size / 256


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Full names of the parameters that submodules exempt from weight decay.

    Follows timm's convention: a module may define ``no_weight_decay()`` returning names of
    its own parameters (learned tokens, embeddings); they are collected with their prefixes.
    """
    names: set[str] = set()
    for prefix, module in model.named_modules():
        if hasattr(module, "no_weight_decay"):
            names |= {f"{prefix}.{n}" if prefix else n for n in module.no_weight_decay()}
    return names


def weight_decay_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Two AdamW parameter groups: with weight decay, and without it.

    No decay on norms and biases (parameters of fewer than two dimensions) nor on the learned
    tokens and embeddings that modules name in ``no_weight_decay()``.

    Args:
        model: the module whose trainable parameters are optimized.
        weight_decay: decay of the first group.

    Returns:
        ``[{"params": ..., "weight_decay": weight_decay}, {"params": ..., "weight_decay": 0}]``.
    """
    exempt = no_weight_decay_names(model)
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim < 2 or name in exempt else decay).append(parameter)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> float:
    """Learning-rate factor: linear warm-up from 0 to 1, then cosine decay to ``min_factor``.

    Args:
        step: optimizer step (0-based).
        warmup_steps: steps of linear warm-up.
        total_steps: steps of the whole run.
        min_factor: factor reached at the last step.

    Returns:
        The multiplier of the peak learning rate.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(progress, 1.0)
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


class LearningRateSchedule(Protocol):
    """A per-step learning-rate factor whose run length can be changed."""

    total_steps: int

    def __call__(self, step: int) -> float:
        """The factor at optimizer step ``step`` (0-based)."""
        ...

    def fit_to(self, total_steps: int) -> None:
        """Stretch or shrink the schedule to a run of ``total_steps`` steps."""
        ...


class WarmupCosineSchedule:
    """Linear warm-up then cosine decay (`warmup_cosine`), refittable to a new length.

    Args:
        warmup_steps: steps of linear warm-up.
        total_steps: steps of the whole run.
        min_factor: factor reached at the last step.
    """

    def __init__(self, warmup_steps: int, total_steps: int, min_factor: float = 0.0) -> None:
        self.warmup_steps = max(1, warmup_steps)
        self.total_steps = max(1, total_steps)
        self.min_factor = min_factor

    def __call__(self, step: int) -> float:
        """The factor at optimizer step ``step`` (0-based)."""
        return warmup_cosine(step, self.warmup_steps, self.total_steps, self.min_factor)

    def fit_to(self, total_steps: int) -> None:
        """New run length; warm-up keeps its share of the run."""
        share = self.warmup_steps / self.total_steps
        self.total_steps = max(1, total_steps)
        self.warmup_steps = max(1, round(share * self.total_steps))


class StepDecaySchedule:
    """Constant, then multiplied by ``factor`` at each milestone (given as shares of the run).

    The paper's fine-tuning schedule: x0.1 at 0.9 and at 0.95 of the steps.

    Args:
        total_steps: steps of the whole run.
        milestones: shares of the run at which the factor drops.
        factor: multiplier applied at each milestone.
    """

    def __init__(
        self, total_steps: int, milestones: tuple[float, ...] = (0.9, 0.95), factor: float = 0.1
    ) -> None:
        self.total_steps = max(1, total_steps)
        self.milestones = tuple(milestones)
        self.factor = factor

    def __call__(self, step: int) -> float:
        """The factor at optimizer step ``step`` (0-based)."""
        passed = sum(step >= round(share * self.total_steps) for share in self.milestones)
        return self.factor**passed

    def fit_to(self, total_steps: int) -> None:
        """New run length; the milestones keep their shares."""
        self.total_steps = max(1, total_steps)


def training_steps(trainer: L.Trainer) -> tuple[int, int]:
    """Optimizer steps per epoch and in the whole run, as the trainer will run them.

    Counts the training batches the loader really yields per epoch (``limit_train_batches``
    and distributed sampling included) and gradient accumulation, and honours ``max_steps``
    and ``max_epochs`` whichever ends the run first (Lightning's ``max_epochs=-1`` when only
    ``max_steps`` is set included).

    Args:
        trainer: a trainer attached to the module, inside ``configure_optimizers``.

    Returns:
        ``(steps_per_epoch, total_steps)``.
    """
    total_steps = int(trainer.estimated_stepping_batches)
    trainer.fit_loop.setup_data()  # sets num_training_batches (a no-op when already set)
    batches = trainer.num_training_batches
    if not math.isfinite(batches):  # an iterable loader of unknown length
        return total_steps, total_steps
    steps_per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches))
    return steps_per_epoch, max(1, total_steps)
