"""From a DataModule batch to the backbone's inputs: modalities, presence and token availability.

Token availability (local absence, paper III-F): a patch of ``P x P`` pixels whose pixels are all
no data in a modality (``batch["valid"]`` False everywhere in it: a cloud, a swath edge) carries
nothing of that modality, so its token is hidden from the backbone (``visible`` False): modality
attention sees the mask token there and nothing attends to it. A patch with at least one valid
pixel stays visible; its no-data pixels hold the loader's fill value (the modality mean, or the
no-data class id) and are left out of the losses through ``valid``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor


def split_batch(
    batch: Mapping[str, Any], modality_names: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Inputs and per-sample presence of the modalities present in at least one sample.

    A modality absent from the whole batch is left out, so the backbone spends nothing on it.

    Args:
        batch: a batch of the sample contract (``datamodules.dataset``): one ``[B, C, H, W]``
            tensor per modality and ``present`` ``bool [B, M]`` in ``modality_names`` order.
        modality_names: the model's modalities, in the DataModule's order.

    Returns:
        ``inputs`` name -> ``[B, C, H, W]`` and ``present`` name -> ``bool [B]``.

    Raises:
        ValueError: if ``present`` does not have one column per modality, or no sample of the
            batch has any modality (a fixed evaluation subset without data on any of its tiles:
            such samples are to be left out of that subset's score).
    """
    present_matrix = batch["present"]
    if present_matrix.shape[1] != len(modality_names):
        raise ValueError(
            f"batch['present'] has {present_matrix.shape[1]} columns but the model has the "
            f"modalities {list(modality_names)}"
        )
    inputs, present = {}, {}
    for column, name in enumerate(modality_names):
        flags = present_matrix[:, column]
        if flags.any():
            inputs[name] = batch[name]
            present[name] = flags
    if not inputs:
        raise ValueError("no sample of the batch has any modality present")
    return inputs, present


def token_availability(
    batch: Mapping[str, Any], modality_names: Sequence[str], names: Sequence[str], patch_size: int
) -> dict[str, Tensor] | None:
    """Which patch tokens of each modality hold data: the backbone's ``visible``.

    Args:
        batch: a batch of the sample contract, with ``valid`` ``bool [B, M, H, W]`` in
            ``modality_names`` order.
        modality_names: the model's modalities, in the DataModule's order.
        names: the modalities wanted (e.g. the inputs of `split_batch`).
        patch_size: patch side ``P``; H and W must be divisible by it.

    Returns:
        name -> ``bool [B, L]`` (``L = (H / P) * (W / P)``, row-major), True where at least
        one pixel of the patch holds data; None when the batch has no ``valid``.

    Raises:
        ValueError: if ``valid`` does not have one channel per modality, or H or W is not
            divisible by ``patch_size``.
    """
    valid = batch.get("valid")
    if valid is None:
        return None
    batch_size, modalities, height, width = valid.shape
    if modalities != len(modality_names):
        raise ValueError(
            f"batch['valid'] has {modalities} channels but the model has the modalities "
            f"{list(modality_names)}"
        )
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"valid's H={height}, W={width} are not divisible by the patch size {patch_size}"
        )
    rows, cols = height // patch_size, width // patch_size
    patches = valid.reshape(batch_size, modalities, rows, patch_size, cols, patch_size)
    available = patches.any(dim=5).any(dim=3).flatten(2)  # [B, M, L]
    return {name: available[:, modality_names.index(name)] for name in names}


def drop_empty_samples(batch: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """Leaves out the samples that show no modality at all.

    A fixed evaluation subset that holds no data on a tile yields a sample whose ``present``
    row is all False (``datamodules.dataset``): it cannot be predicted from that subset, so it
    is excluded from the subset's score, and counted.

    Args:
        batch: a batch of the sample contract; tensors have the batch first, and per-sample
            lists (names, instances) have one entry per sample.

    Returns:
        A shallow copy of the batch without those samples, and how many were left out.
    """
    keep = batch["present"].any(dim=1)  # [B]
    dropped = int((~keep).sum())
    if not dropped:
        return dict(batch), 0
    rows = keep.nonzero().flatten().tolist()
    kept = {}
    for key, value in batch.items():
        if isinstance(value, Tensor) and value.ndim and value.shape[0] == len(keep):
            kept[key] = value[keep]
        elif isinstance(value, list) and len(value) == len(keep):
            kept[key] = [value[row] for row in rows]
        else:
            kept[key] = value
    return kept, dropped
