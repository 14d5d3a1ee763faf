"""Token masking: which modality tokens the encoder sees.

Two draws share this module. `sample_visible_tokens` is MultiMAE's masking (paper Sec.
II-B, III-D), used by pretraining and, as the spatial random mask of supervised training
(IV-B-5, with the share to hide given by PatchDropout, III-F), by segmentation.
`sample_patch_dropout` is plain PatchDropout, the same share hidden in every modality.

Each sample shows a fixed number of visible tokens, ``round(visible_fraction * N)`` (at least
one) with ``N``
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

from typing import Literal

import torch
from torch import Tensor
from torch.distributions import Gamma

ModalityShares = Literal["dirichlet", "equal"]
"""How a masked share of a sample's tokens is split among its modalities: proportions drawn
from a symmetric Dirichlet (MultiMAE, the paper's spatial random mask), or the same share of
every modality (plain PatchDropout)."""


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
        [  # at least one visible token where the sample has any
            split_token_count(
                min(int(room.sum()), max(1, round(visible_fraction * int(room.sum())))), s, room
            )
            for room, s in zip(capacity, shares, strict=True)
        ]
    )
    # Unavailable tokens rank after every available one, so they are never picked.
    noise = torch.rand(batch, modalities, num_positions).masked_fill(~usable, 2.0)
    ranks = noise.argsort(dim=-1).argsort(dim=-1)
    return (ranks < counts[..., None]).to(present.device)


def sample_patch_dropout(
    present: Tensor,
    num_positions: int,
    drop_fraction: float,
    shares: ModalityShares = "dirichlet",
    alpha: float = 1.0,
    available: Tensor | None = None,
) -> Tensor:
    """Tokens kept by the spatial random mask of supervised training, from torch's generator.

    ``"dirichlet"`` (the paper's IV-B-5): each sample keeps ``round((1 - drop_fraction) * N)``
    of its ``N`` available modality tokens, split among its present modalities by proportions
    from a symmetric Dirichlet(``alpha``) (`sample_visible_tokens`): the count is the same
    for samples that show as much, so a batch sharing one modality subset needs no padding.
    ``"equal"``: every present modality keeps ``L - round(drop_fraction * L)`` (at least one) of
    its ``L`` positions, at random (PatchDropout applied per modality); unavailable tokens drawn
    there stay hidden.

    Args:
        present: ``bool [B, M]``, which modalities each sample shows.
        num_positions: patch positions per modality, ``L``.
        drop_fraction: share of the tokens to hide, in [0, 1).
        shares: ``"dirichlet"`` or ``"equal"``.
        alpha: Dirichlet concentration (``"dirichlet"`` only).
        available: optional ``bool [B, M, L]``, False for tokens without data.

    Returns:
        ``bool [B, M, L]``, True where the token is kept (never where it is absent or
        unavailable).

    Raises:
        ValueError: for a fraction outside [0, 1) or unknown ``shares``.
    """
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"patch_dropout must be in [0, 1), got {drop_fraction}")
    if shares == "dirichlet":
        return sample_visible_tokens(present, num_positions, 1.0 - drop_fraction, alpha, available)
    if shares != "equal":
        raise ValueError(f"shares must be 'dirichlet' or 'equal', got {shares!r}")
    batch, modalities = present.shape
    keep = max(1, num_positions - round(drop_fraction * num_positions))
    noise = torch.rand(batch, modalities, num_positions, device=present.device)
    kept = noise.argsort(dim=-1).argsort(dim=-1) < keep  # a random permutation per row
    kept &= present[..., None]
    if available is not None:
        kept &= available.to(present.device)
    return kept
