"""Stochastic depth over token tensors that belong to the same residual branch."""

import torch
from torch import Tensor, nn


class SampleDropPath(nn.Module):
    """Drops a residual branch for whole samples (stochastic depth).

    The fusion tokens and the modality tokens of a sample are two tensors but one residual
    branch, so one keep/drop draw per sample scales both.

    Args:
        drop_prob: Probability of dropping the branch for a sample.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, *branches: Tensor) -> tuple[Tensor, ...]:
        """Scales each branch [B, ...] by 0 (dropped) or 1/(1-p) (kept), per sample."""
        if not self.training or self.drop_prob == 0.0:
            return branches
        keep_prob = 1.0 - self.drop_prob
        first = branches[0]
        scale = torch.empty(first.shape[0], device=first.device, dtype=first.dtype)
        scale = scale.bernoulli_(keep_prob) / keep_prob  # [B]
        return tuple(
            branch * scale.view(-1, *([1] * (branch.ndim - 1))).to(branch.dtype)
            for branch in branches
        )

    def extra_repr(self) -> str:
        """Shown by ``repr``."""
        return f"drop_prob={self.drop_prob}"
