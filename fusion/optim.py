"""Optimizer pieces of the paper's recipe: AdamW groups, scaled learning rate, warm-up + cosine."""

from __future__ import annotations

import math

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
