"""2-D sine-cosine positional embeddings, eq. (1) of the paper."""

import torch
from torch import Tensor, nn


def sincos_embed_1d(positions: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Eq. (1) along one axis, with sine and cosine interleaved.

    ``embed[k, 2i] = sin(k / temperature^(2i/dim))`` and
    ``embed[k, 2i+1] = cos(k / temperature^(2i/dim))`` for ``i = 0 .. dim/2 - 1``.

    Args:
        positions: Patch indices k along the axis, [K].
        dim: Number of embedding dimensions for this axis (even).
        temperature: The constant Omega of eq. (1).

    Returns:
        Embedding [K, dim], float32.
    """
    if dim % 2:
        raise ValueError(f"the per-axis embedding dimension must be even, got {dim}")
    exponents = torch.arange(0, dim, 2, dtype=torch.float64) / dim  # 2i/d, [dim/2]
    angles = positions.double()[:, None] / temperature ** exponents[None, :]  # [K, dim/2]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1).float()


def sincos_pos_embed_2d(
    grid_size: tuple[int, int], dim: int, temperature: float = 10000.0
) -> Tensor:
    """2-D sine-cosine positional embedding of a patch grid.

    The first ``dim/2`` dimensions encode the row (y) index of the patch and the last ``dim/2``
    the column (x) index, each with `sincos_embed_1d`. Patches are numbered row-major, as a
    flattened [h, w] grid: token ``l`` sits at row ``l // w`` and column ``l % w``.

    Args:
        grid_size: Patch grid (h, w).
        dim: Token width D, divisible by 4.
        temperature: The constant Omega of eq. (1).

    Returns:
        Embedding [h * w, D], float32.
    """
    if dim % 4:
        raise ValueError(f"2-D sine-cosine embeddings need a width divisible by 4, got {dim}")
    height, width = grid_size
    rows = sincos_embed_1d(torch.arange(height), dim // 2, temperature)  # [h, D/2]
    cols = sincos_embed_1d(torch.arange(width), dim // 2, temperature)  # [w, D/2]
    return torch.cat(
        [
            rows[:, None, :].expand(height, width, dim // 2),
            cols[None, :, :].expand(height, width, dim // 2),
        ],
        dim=-1,
    ).reshape(height * width, dim)


class SinCosPosEmbed2d(nn.Module):
    """Fixed 2-D sine-cosine positional embedding, computed per grid size and cached.

    Args:
        dim: Token width D, divisible by 4.
        temperature: The constant Omega of eq. (1).
    """

    def __init__(self, dim: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if dim % 4:
            raise ValueError(f"2-D sine-cosine embeddings need a width divisible by 4, got {dim}")
        self.dim = dim
        self.temperature = temperature
        self._cache: dict[tuple[int, int, torch.device], Tensor] = {}

    def forward(self, grid_size: tuple[int, int], device: torch.device) -> Tensor:
        """Returns the embedding [h * w, D] of a (h, w) patch grid on ``device``."""
        key = (grid_size[0], grid_size[1], torch.device(device))
        if key not in self._cache:
            embed = sincos_pos_embed_2d(grid_size, self.dim, self.temperature)
            self._cache[key] = embed.to(device)
        return self._cache[key]

    def extra_repr(self) -> str:
        """Shown by ``repr``."""
        return f"dim={self.dim}, temperature={self.temperature}"
