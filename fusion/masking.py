"""MultiMAE token masking (paper Sec. II-B, III-D): which modality tokens the encoder sees.

Each sample shows a fixed number of visible tokens, ``round(visible_fraction * M_present * L)``
(the paper: half of all modality tokens). The share of each present modality is drawn from a
symmetric Dirichlet distribution with concentration ``alpha`` (1 in the paper); within a
modality the visible patch positions are uniform at random. Absent modalities get no visible
tokens. Shares are turned into whole token counts by largest remainders, and a modality whose
share exceeds its ``L`` tokens passes the surplus to the modalities that still have room, so the
visible count is exact.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Gamma


def split_token_count(total: int, shares: Tensor, capacity: int) -> Tensor:
    """Split ``total`` tokens among modalities in proportion to ``shares``, ``capacity`` at most.

    Args:
        total: number of tokens to hand out; at most ``capacity`` times the number of
            modalities with a positive share.
        shares: non-negative weights ``[M]``; a zero share (absent modality) gets nothing.
        capacity: tokens a modality has (``L``).

    Returns:
        ``int64 [M]`` counts summing to ``total``.

    Raises:
        ValueError: if ``total`` does not fit.
    """
    can_take = shares > 0
    if total > capacity * int(can_take.sum()):
        raise ValueError(f"{total} tokens do not fit in {int(can_take.sum())} x {capacity}")
    counts = torch.zeros_like(shares, dtype=torch.int64)
    remaining = total
    while remaining > 0:
        open_ = can_take & (counts < capacity)
        weights = torch.where(open_, shares.double().clamp_min(1e-12), 0.0)
        ideal = weights / weights.sum() * remaining
        added = ideal.floor().long()
        leftover = remaining - int(added.sum())
        fraction = torch.where(open_, ideal - added, -1.0)
        added[fraction.argsort(descending=True)[:leftover]] += 1
        counts += added
        surplus = (counts - capacity).clamp_min(0)
        counts -= surplus
        remaining = int(surplus.sum())
    return counts


def sample_visible_tokens(
    present: Tensor,
    num_positions: int,
    visible_fraction: float = 0.5,
    alpha: float = 1.0,
) -> Tensor:
    """Draw MultiMAE visibility for a batch, from torch's global random generator.

    Args:
        present: ``bool [B, M]``, which modalities each sample has.
        num_positions: patch positions per modality, ``L``.
        visible_fraction: visible share of the sample's present modality tokens.
        alpha: concentration of the symmetric Dirichlet over modality shares.

    Returns:
        ``bool [B, M, L]``, True where the encoder sees the token.
    """
    if not 0.0 < visible_fraction <= 1.0:
        raise ValueError(f"visible_fraction must be in (0, 1], got {visible_fraction}")
    batch, modalities = present.shape
    # Normalized Gamma(alpha, 1) draws over the present modalities are Dirichlet(alpha); the
    # normalization happens in split_token_count.
    gamma = Gamma(torch.tensor(float(alpha), dtype=torch.float64), 1.0).sample((batch, modalities))
    shares = torch.where(present.cpu(), gamma, 0.0)
    counts = torch.stack(
        [
            split_token_count(
                round(visible_fraction * int(row.sum()) * num_positions), s, num_positions
            )
            for row, s in zip(present.cpu(), shares, strict=True)
        ]
    )
    noise = torch.rand(batch, modalities, num_positions)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return (ranks < counts[..., None]).to(present.device)
