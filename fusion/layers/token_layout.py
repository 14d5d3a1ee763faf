"""Where the modality tokens sit in memory, and who may attend to whom.

The backbone keeps the fusion tokens as [B, L, D] (one per patch position) and the modality
tokens as a block [B, G, T, D] whose shape depends on the layout:

* `GridLayout` (G = M present modalities, T = L positions): every modality keeps its full patch
  grid. Attention within a modality is then one batched call over B*M sequences. Tokens that
  are not visible (a modality absent for some samples) stay in place and are masked out.
* `PackedLayout` (G = 1, T = the most visible tokens of any sample): only visible tokens are
  kept, packed per sample into one sequence padded with zeros to the batch maximum, with
  per-token modality ids and positions. Hidden tokens cost no compute, as MultiMAE pretraining
  needs: the backbone embeds only the visible patches (`visible_patches`, `arrange_parts`),
  and the token-wise layers (norms, projections, MLPs) run on the real tokens only
  (`tokenwise`), so the padding of samples that show fewer tokens costs no compute either.
  The visible tokens of one (sample, modality) are contiguous: a segment. Attention within a
  modality runs over these segments (`Segments`), never over a dense per-sample [T, T] mask.

Both answer the same questions: `arrange` and `scatter` move tokens between the [B, M, L] grid
and the block, `per_token` gives each token the value of its patch position, and the
attention masks say which keys each query may use (True = may attend, as in
`torch.nn.functional.scaled_dot_product_attention`). Keys are ordered as the fusion tokens (L)
followed by the modality block flattened group-major (G*T).
"""

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Protocol

import torch
from torch import Tensor

from fusion.layers.segments import ATTENTION_CALL_COST, Segments, packed_segments


class TokenLayout(Protocol):
    """What the attention layers need to know about the modality-token block [B, G, T, D]."""

    @property
    def visible(self) -> Tensor:
        """Token visibility on the grid, [B, M, L] bool."""
        ...

    def arrange(self, grid_tokens: Tensor) -> Tensor:
        """Grid tokens [B, M, L, C] -> layout tokens [B, G, T, C]."""
        ...

    def scatter(self, tokens: Tensor, fill: Tensor) -> Tensor:
        """Layout tokens [B, G, T, C] -> grid [B, M, L, C], ``fill`` [C] where not visible."""
        ...

    def per_token(self, values: Tensor) -> Tensor:
        """Per-position values [B, L, C] -> the value at each token's position, [B, G, T, C]."""
        ...

    def sum_per_position(self, tokens: Tensor) -> Tensor:
        """Layout tokens [B, G, T, C] -> the sum of the visible ones at each position, [B, L, C]."""
        ...

    def tokenwise(self, function: Callable[[Tensor], Tensor], tokens: Tensor) -> Tensor:
        """Applies a token-wise ``function`` ([N, C] -> [N, C']) to the block [B, G, T, C].

        Returns [B, G, T, C']; only the real tokens need be computed (padding gets zeros).
        """
        ...

    @property
    def key_mask(self) -> Tensor | None:
        """Keys any query may attend, [B, 1, 1, L + G*T], or None if all may."""
        ...

    @property
    def modality_mask(self) -> Tensor | None:
        """Visible keys of each of the B*G sequences, [B*G, 1, 1, T], or None if all are.

        Used for attention within a modality when `segments` is None.
        """
        ...

    @property
    def segments(self) -> Segments | None:
        """The runs of the block that attend only among themselves, or None.

        None: each of the B*G sequences of the block holds one modality (masked by
        `modality_mask`).
        """
        ...


class GridLayout:
    """Modality tokens on their full patch grid: the block is [B, M, L, D].

    Args:
        visible: Which tokens are visible, [B, M, L] bool, or None when all are.
        batch_size: B.
        num_modalities: M, the modalities present in the batch.
        num_positions: L, patch positions per modality.
        device: Device of the tokens.
    """

    def __init__(
        self,
        visible: Tensor | None,
        batch_size: int,
        num_modalities: int,
        num_positions: int,
        device: torch.device,
    ) -> None:
        self._visible = visible
        self.shape = (batch_size, num_modalities, num_positions)
        self.device = device

    @property
    def visible(self) -> Tensor:
        """Token visibility, [B, M, L] bool."""
        if self._visible is None:
            return torch.ones(self.shape, dtype=torch.bool, device=self.device)
        return self._visible

    def arrange(self, grid_tokens: Tensor) -> Tensor:
        """The grid is the layout: returns ``grid_tokens`` [B, M, L, C] unchanged."""
        return grid_tokens

    def scatter(self, tokens: Tensor, fill: Tensor) -> Tensor:
        """Replaces hidden tokens of [B, M, L, C] by ``fill`` [C]."""
        if self._visible is None:
            return tokens
        return torch.where(self._visible[..., None], tokens, fill.to(tokens.dtype))

    def per_token(self, values: Tensor) -> Tensor:
        """Values per position [B, L, C] for every modality: [B, M, L, C] (a broadcast view)."""
        batch, modalities, positions = self.shape
        return values[:, None].expand(batch, modalities, positions, values.shape[-1])

    def sum_per_position(self, tokens: Tensor) -> Tensor:
        """Sums the visible tokens of [B, M, L, C] over the modalities: [B, L, C]."""
        if self._visible is None:
            return tokens.sum(dim=1)
        return torch.where(self._visible[..., None], tokens, 0.0).sum(dim=1)

    def tokenwise(self, function: Callable[[Tensor], Tensor], tokens: Tensor) -> Tensor:
        """``function`` over every token of the grid [B, M, L, C] (the grid has no padding)."""
        return function(tokens)

    @cached_property
    def key_mask(self) -> Tensor | None:
        """Fusion keys always, modality keys where visible: [B, 1, 1, L + M*L] or None."""
        if self._visible is None:
            return None
        batch, _, positions = self.shape
        fusion_keys = self._visible.new_ones(batch, positions)
        return torch.cat([fusion_keys, self._visible.flatten(1)], dim=1)[:, None, None, :]

    @cached_property
    def modality_mask(self) -> Tensor | None:
        """Visible keys of each (sample, modality) sequence: [B*M, 1, 1, L] or None.

        A sequence with no visible token (a modality absent for that sample) may attend all of
        its own keys: its outputs are never used, but must stay finite. A modality only ever
        sees itself, so when whole sequences are either visible or absent no mask is needed.
        """
        if self._visible is None:
            return None
        keys = self._visible | ~self._visible.any(dim=-1, keepdim=True)
        if bool(keys.all()):
            return None
        return keys.flatten(0, 1)[:, None, None, :]

    @property
    def segments(self) -> None:
        """None: each of the B*M sequences is one modality of one sample."""
        return None


class PackedLayout:
    """Visible modality tokens packed per sample: the block is [B, 1, T, D].

    Each sample's visible tokens keep their grid order (modality, then row-major position) and
    are padded with zeros to T, the largest visible count in the batch. With a fixed number of
    visible tokens per sample (MultiMAE masking) there is no padding.

    Args:
        visible: Which tokens are visible, [B, M, L] bool.
        call_cost: Cost of one more attention call when grouping segments by length (see
            `ATTENTION_CALL_COST`).
    """

    def __init__(self, visible: Tensor, call_cost: float = ATTENTION_CALL_COST) -> None:
        self._visible = visible
        self.call_cost = call_cost
        batch, modalities, positions = visible.shape
        self.shape = (batch, modalities, positions)
        flat = visible.flatten(1)  # [B, M*L]
        counts = flat.sum(dim=1)  # [B]
        length = int(counts.max())
        # Stable sort puts visible tokens first, in grid order.
        order = torch.argsort((~flat).to(torch.uint8), dim=1, stable=True)[:, :length]
        self.token_valid = torch.arange(length, device=visible.device) < counts[:, None]  # [B, T]
        self.modality_ids = torch.where(self.token_valid, order // positions, -1)  # [B, T]
        self.positions = order % positions  # [B, T], row-major patch index
        # Row indices for whole-token copies (index_select / index_copy beat per-element
        # gather / scatter): into the flattened [B * M * L] grid, and into a [B * (M*L + 1)]
        # grid whose extra row per sample collects the padding.
        samples = torch.arange(batch, device=visible.device)[:, None]
        slots = modalities * positions
        self._grid_rows = (samples * slots + order).flatten()
        padded_target = torch.where(self.token_valid, order, slots)
        self._scatter_rows = (samples * (slots + 1) + padded_target).flatten()
        self._position_rows = (samples * positions + self.positions).flatten()
        # For embedding only the visible patches: each modality's visible patches as flat
        # indices b * L + l (sample-major), and for every packed token its row among the
        # modalities' patches stacked in order (padding: one extra zero row after them).
        by_modality = visible.transpose(0, 1).reshape(modalities, batch * positions)
        self._visible_patches = [flags.nonzero().squeeze(1) for flags in by_modality]
        totals = by_modality.sum(dim=1)  # [M]
        ranks = by_modality.cumsum(dim=1) - 1 + (totals.cumsum(dim=0) - totals)[:, None]
        ranks = ranks.view(modalities, batch, positions).transpose(0, 1).flatten(1)  # [B, M*L]
        padded_rank = torch.where(self.token_valid, ranks.gather(1, order), int(totals.sum()))
        self._part_rows = padded_rank.flatten()
        # Into a [B * L + 1] grid of positions whose extra row collects the padding.
        self._sum_rows = torch.where(
            self.token_valid.flatten(), self._position_rows, batch * positions
        )
        # The real (not padding) tokens among the B * T of the block; None without padding.
        self.real_rows = (
            None
            if bool(self.token_valid.all())
            else self.token_valid.flatten().nonzero().squeeze(1)
        )

    @property
    def visible(self) -> Tensor:
        """Token visibility, [B, M, L] bool."""
        return self._visible

    def arrange(self, grid_tokens: Tensor) -> Tensor:
        """Packs the visible tokens of [B, M, L, C] into [B, 1, T, C], zeros as padding."""
        batch, channels = grid_tokens.shape[0], grid_tokens.shape[-1]
        packed = grid_tokens.reshape(-1, channels).index_select(0, self._grid_rows)
        packed = packed.view(batch, 1, -1, channels)
        if bool(self.token_valid.all()):
            return packed
        return torch.where(self.token_valid[:, None, :, None], packed, 0.0)

    def visible_patches(self, modality: int) -> Tensor:
        """The visible patches of one of the M modalities, flat b * L + l in order: [N_m]."""
        return self._visible_patches[modality]

    def arrange_parts(self, parts: Sequence[Tensor]) -> Tensor:
        """Packs per-modality tokens into [B, 1, T, C], zeros as padding.

        Args:
            parts: For each of the M modalities, the tokens of its `visible_patches`,
                [N_m, C].
        """
        batch, channels = self.shape[0], parts[0].shape[-1]
        rows = torch.cat([*parts, parts[0].new_zeros(1, channels)])
        return rows.index_select(0, self._part_rows).view(batch, 1, -1, channels)

    def scatter(self, tokens: Tensor, fill: Tensor) -> Tensor:
        """Unpacks [B, 1, T, C] onto the grid [B, M, L, C], ``fill`` [C] where not visible."""
        batch, modalities, positions = self.shape
        channels = tokens.shape[-1]
        slots = modalities * positions
        grid = fill.to(tokens.dtype).expand(batch * (slots + 1), channels)
        grid = grid.index_copy(0, self._scatter_rows, tokens.reshape(-1, channels))
        return grid.view(batch, slots + 1, channels)[:, :slots].view(
            batch, modalities, positions, channels
        )

    def per_token(self, values: Tensor) -> Tensor:
        """Values per position [B, L, C] at each packed token's position: [B, 1, T, C]."""
        batch, _, positions = self.shape
        channels = values.shape[-1]
        packed = values.reshape(-1, channels).index_select(0, self._position_rows)
        return packed.view(batch, 1, -1, channels)

    def sum_per_position(self, tokens: Tensor) -> Tensor:
        """Sums the packed tokens [B, 1, T, C] of each position: [B, L, C] (no full grid)."""
        batch, _, positions = self.shape
        channels = tokens.shape[-1]
        sums = tokens.new_zeros(batch * positions + 1, channels)
        sums = sums.index_add(0, self._sum_rows, tokens.reshape(-1, channels))
        return sums[:-1].view(batch, positions, channels)

    def tokenwise(self, function: Callable[[Tensor], Tensor], tokens: Tensor) -> Tensor:
        """``function`` over the real tokens of [B, 1, T, C] only; zeros at the padding.

        The padding of a sample with fewer visible tokens than the batch's most would otherwise
        cost as much as real tokens in every norm, projection and MLP.
        """
        if self.real_rows is None:
            return function(tokens)
        flat = tokens.reshape(-1, tokens.shape[-1])
        out = function(flat.index_select(0, self.real_rows))
        full = out.new_zeros(flat.shape[0], out.shape[-1]).index_copy(0, self.real_rows, out)
        return full.view(*tokens.shape[:-1], out.shape[-1])

    @cached_property
    def key_mask(self) -> Tensor | None:
        """Fusion keys always, packed keys unless padding: [B, 1, 1, L + T] or None."""
        if bool(self.token_valid.all()):
            return None
        batch, _, positions = self.shape
        fusion_keys = self.token_valid.new_ones(batch, positions)
        return torch.cat([fusion_keys, self.token_valid], dim=1)[:, None, None, :]

    @property
    def modality_mask(self) -> None:
        """None: attention within a modality runs over `segments`."""
        return None

    @cached_property
    def segments(self) -> Segments:
        """The visible tokens of each (sample, modality): contiguous runs of each sequence."""
        counts = self._visible.sum(dim=-1)  # [B, M]
        return packed_segments(counts, self.token_valid.shape[1], self.call_cost)
