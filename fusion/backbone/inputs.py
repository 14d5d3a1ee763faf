"""Checks of the backbone's inputs, and their presence and visibility masks."""

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from fusion.modality import ModalitySpec


def check_inputs(
    inputs: Mapping[str, Tensor], specs: Mapping[str, ModalitySpec], patch_size: int
) -> tuple[int, int, int]:
    """Checks the modality names and the shared batch and image size of an input dict.

    Channel counts, dtypes and class ids are checked by each modality's patch projection.

    Args:
        inputs: Modality name -> raster ([B, C, H, W], or [B, H, W] class ids).
        specs: The modalities the model knows, by name.
        patch_size: Patch side P in pixels.

    Returns:
        Batch size B, height H and width W.

    Raises:
        ValueError: If ``inputs`` is empty, names an unknown modality, or its rasters differ in
            batch size or H, W, or H, W are not divisible by P.
    """
    known = list(specs)
    if not inputs:
        raise ValueError(f"the input dict is empty; give at least one of the modalities {known}")
    for name, raster in inputs.items():
        if name not in specs:
            raise ValueError(f"unknown modality {name!r}; the model knows {known}")
        if not isinstance(raster, Tensor) or raster.ndim < 3:
            shape = list(raster.shape) if isinstance(raster, Tensor) else type(raster).__name__
            raise ValueError(f"modality {name!r} must be a [B, C, H, W] tensor, got {shape}")
    sizes = {name: (raster.shape[0], *raster.shape[-2:]) for name, raster in inputs.items()}
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{name}: B={b}, H={h}, W={w}" for name, (b, h, w) in sizes.items())
        raise ValueError(f"all modalities must share batch size, H and W; got {listed}")
    batch, height, width = next(iter(sizes.values()))
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"H and W must be divisible by the patch size {patch_size}, got H={height}, W={width}"
        )
    return batch, height, width


def _check_mask(kind: str, name: str, mask: Tensor, shape: tuple[int, ...], meaning: str) -> Tensor:
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        dtype = mask.dtype if isinstance(mask, Tensor) else type(mask).__name__
        raise TypeError(f"{kind}[{name!r}] must be a bool tensor, got {dtype}")
    if tuple(mask.shape) != shape:
        raise ValueError(
            f"{kind}[{name!r}] must be {meaning} {list(shape)}, got {list(mask.shape)}"
        )
    return mask


def token_visibility(
    names: Sequence[str],
    known: Sequence[str],
    present: Mapping[str, Tensor] | None,
    visible: Mapping[str, Tensor] | None,
    batch_size: int,
    num_positions: int,
    device: torch.device,
) -> Tensor | None:
    """Combines per-sample presence and per-token visibility into one mask.

    Modalities without an entry are present and fully visible. Entries for known modalities
    that are not in the input are ignored (those modalities are absent anyway).

    Args:
        names: The M modalities in the input, in the order of the token block.
        known: All modalities the model knows.
        present: Optional modality name -> [B] bool, False where the sample lacks the modality.
        visible: Optional modality name -> [B, L] bool, False for hidden tokens.
        batch_size: B.
        num_positions: L.
        device: Device of the result.

    Returns:
        [B, M, L] bool, True where a token is visible, or None if neither mask is given.

    Raises:
        ValueError: If a mask names an unknown modality or has the wrong shape.
        TypeError: If a mask is not a bool tensor.
    """
    if present is None and visible is None:
        return None
    for kind, masks in (("present", present), ("visible", visible)):
        for name in masks or {}:
            if name not in known:
                raise ValueError(
                    f"{kind} names unknown modality {name!r}; the model knows {list(known)}"
                )
    rows = []
    for name in names:
        row = torch.ones(batch_size, num_positions, dtype=torch.bool, device=device)
        if visible is not None and name in visible:
            shape = (batch_size, num_positions)
            row = _check_mask("visible", name, visible[name], shape, "[B, L] =").to(device)
        if present is not None and name in present:
            shape = (batch_size,)
            row = (
                row
                & _check_mask("present", name, present[name], shape, "[B] =").to(device)[:, None]
            )
        rows.append(row)
    return torch.stack(rows, dim=1)
