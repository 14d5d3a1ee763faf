"""MultiMAE token masking (paper Sec. II-B, III-D): which modality tokens the encoder sees.

Each sample shows a fixed number of visible tokens, ``round(visible_fraction * N)`` with ``N``
the sample's available tokens: ``M_present * L`` when every patch holds data (the paper: half of
all modality tokens). The share of each present modality is drawn from a symmetric Dirichlet
distribution with concentration ``alpha`` (1 in the paper); within a modality the visible patch
positions are uniform at random among its available ones. Absent modalities, and patches without
data (``available`` False, see ``fusion.tasks.batches.token_availability``), get no visible
tokens. Shares are turned into whole token counts by largest remainders, and a modality whose
share exceeds its available tokens passes the surplus to the modalities that still have room, so
the visible count is exact.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Gamma


def split_token_count(total: int, shares: Tensor, capacity: int | Tensor) -> Tensor:
    """Split ``total`` tokens among modalities in proportion to ``shares``, ``capacity`` at most.

    Args:
        total: number of tokens to hand out; at most the summed capacity of the modalities
            with a positive share.
        shares: non-negative weights ``[M]``; a zero share (absent modality) gets nothing.
        capacity: tokens a modality has: ``L`` for all, or ``int64 [M]`` per modality.

    Returns:
        ``int64 [M]`` counts summing to ``total``.

    Raises:
        ValueError: if ``total`` does not fit.
    """
    capacity = torch.as_tensor(capacity, dtype=torch.int64).expand(shares.shape)
    can_take = (shares > 0) & (capacity > 0)
    room = int(capacity[can_take].sum())
    if total > room:
        raise ValueError(f"{total} tokens do not fit in the {room} tokens of the modalities")
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
    available: Tensor | None = None,
) -> Tensor:
    """Draw MultiMAE visibility for a batch, from torch's global random generator.

    Args:
        present: ``bool [B, M]``, which modalities each sample has.
        num_positions: patch positions per modality, ``L``.
        visible_fraction: visible share of the sample's available modality tokens.
        alpha: concentration of the symmetric Dirichlet over modality shares.
        available: optional ``bool [B, M, L]``, False for tokens without data, which are never
            visible (default: every token of a present modality).

    Returns:
        ``bool [B, M, L]``, True where the encoder sees the token.
    """
    if not 0.0 < visible_fraction <= 1.0:
        raise ValueError(f"visible_fraction must be in (0, 1], got {visible_fraction}")
    batch, modalities = present.shape
    usable = present.cpu()[..., None].expand(batch, modalities, num_positions)
    if available is not None:
        usable = usable & available.cpu()
    capacity = usable.sum(dim=-1)  # [B, M]
    # Normalized Gamma(alpha, 1) draws over the modalities with data are Dirichlet(alpha); the
    # normalization happens in split_token_count.
    gamma = Gamma(torch.tensor(float(alpha), dtype=torch.float64), 1.0).sample((batch, modalities))
    shares = torch.where(capacity > 0, gamma, 0.0)
    counts = torch.stack(
        [
            split_token_count(round(visible_fraction * int(room.sum())), s, room)
            for room, s in zip(capacity, shares, strict=True)
        ]
    )
    # Unavailable tokens rank after every available one, so they are never picked.
    noise = torch.rand(batch, modalities, num_positions).masked_fill(~usable, 2.0)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return (ranks < counts[..., None]).to(present.device)
