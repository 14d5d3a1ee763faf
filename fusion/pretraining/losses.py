"""Pretraining losses: masked-patch reconstruction (eq. 4) and fusion contrast (eq. 5).

All losses are computed in float32, whatever the autocast precision of the forward pass.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

ReconstructionLoss = Literal["mse", "l1", "ce"]
"""MSE for optical and SAR, L1 for heights (DEM/DSM), cross-entropy for class maps (eq. 4)."""


def patchify(images: Tensor, patch_size: int) -> Tensor:
    """Cut images into patch vectors in the backbone's token order (row-major positions).

    Args:
        images: ``[B, C, H, W]``.
        patch_size: patch side ``P``.

    Returns:
        ``[B, L, P * P * C]`` with ``L = (H / P) * (W / P)``; each vector lists the patch's
        pixels row by row, channels last.
    """
    return rearrange(images, "b c (h p) (w q) -> b (h w) (p q c)", p=patch_size, q=patch_size)


def unpatchify(patches: Tensor, patch_size: int, grid_size: tuple[int, int]) -> Tensor:
    """Inverse of `patchify`: ``[B, L, P * P * C]`` -> ``[B, C, H, W]``."""
    height, width = grid_size
    return rearrange(
        patches, "b (h w) (p q c) -> b c (h p) (w q)", h=height, w=width, p=patch_size, q=patch_size
    )


def normalize_patches(patches: Tensor, eps: float = 1e-6) -> Tensor:
    """Standardize every patch vector ``[B, L, N]`` by its own mean and variance (MAE option)."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


def masked_patch_loss(
    prediction: Tensor,
    target: Tensor,
    weight: Tensor,
    kind: ReconstructionLoss,
    valid: Tensor | None = None,
) -> Tensor:
    """Mean reconstruction loss over the patches selected by ``weight``.

    Args:
        prediction: ``[B, L, N]`` pixel values, or ``[B, L, N, K]`` class logits for ``"ce"``,
            with ``N`` the pixels (times channels) of a patch.
        target: ``[B, L, N]`` pixel values, or ``[B, L, N]`` integer class ids for ``"ce"``.
        weight: ``[B, L]``, 1 for patches that count (masked-out tokens of present
            modalities), 0 elsewhere.
        kind: ``"mse"``, ``"l1"`` or ``"ce"``.
        valid: optional ``bool [B, L, N]``, False for target values without data; a patch's
            loss is the mean over its valid values, and a patch without any does not count.

    Returns:
        Scalar loss: the per-patch mean loss averaged over the counted patches (0 when none
        counts, keeping the graph).
    """
    prediction = prediction.float()
    if kind == "ce":
        per_value = F.cross_entropy(prediction.flatten(0, 2), target.flatten(), reduction="none")
        per_value = per_value.view(target.shape)
    elif kind == "mse":
        per_value = (prediction - target.float()).pow(2)
    elif kind == "l1":
        per_value = (prediction - target.float()).abs()
    else:
        raise ValueError(f"Unknown reconstruction loss {kind!r}; use 'mse', 'l1' or 'ce'")
    weight = weight.float()
    if valid is None:
        per_patch = per_value.mean(dim=-1)
    else:
        counts = valid.sum(dim=-1)
        per_patch = (per_value * valid).sum(dim=-1) / counts.clamp_min(1)
        weight = weight * (counts > 0)
    return (per_patch * weight).sum() / weight.sum().clamp_min(1.0)


def info_nce(queries: Tensor, keys: Tensor, temperature: float) -> Tensor:
    """Symmetric InfoNCE with cosine similarity (eq. 5): row i of both is a positive pair.

    Every other row of the batch is a negative. The loss is the mean of the
    query-to-key and key-to-query cross-entropies.

    Args:
        queries: ``[N, D]`` (e.g. modality vectors z_m).
        keys: ``[N, D]`` (e.g. the matching fusion vectors z_{f_m}).
        temperature: softmax temperature ``tau``.

    Returns:
        Scalar loss.
    """
    queries = F.normalize(queries.float(), dim=-1)
    keys = F.normalize(keys.float(), dim=-1)
    logits = queries @ keys.T / temperature
    labels = torch.arange(len(queries), device=queries.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
