"""From a DataModule batch to the backbone's inputs."""

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
            batch has any modality.
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
