"""Samplers of the evaluation loaders in a distributed (DDP) run.

Lightning gives every loader of a distributed run a ``DistributedSampler``, which pads a split
whose length the number of processes does not divide with repeated tiles, so that every process
runs as many batches. In validation and test a repeated tile would be scored twice by the
metrics, which torchmetrics gathers over all processes. `evaluation_sampler` splits the tiles
among the processes without padding instead: each tile is seen by exactly one process, once,
and the synchronised metrics are those of the split. The processes may then run one batch more
or less than each other, which the evaluation loop allows (metrics and the epoch-level logs are
reduced once, at the end of the epoch).
"""

from __future__ import annotations

from collections.abc import Sized

import torch.distributed as dist
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler


def evaluation_sampler(dataset: Sized) -> UnrepeatedDistributedSampler | None:
    """This process's share of an evaluation split, or None outside a distributed run.

    Lightning keeps a loader's sampler when it already is a ``DistributedSampler`` (the
    ``isinstance`` test of ``DataConnector._requires_distributed_sampler`` in
    ``lightning/pytorch/trainer/connectors/data_connector.py``), so the sampler returned here
    is the one the evaluation loop uses; otherwise Lightning would put its padding
    ``DistributedSampler`` in.

    Args:
        dataset: the split's dataset, of N tiles.

    Returns:
        None when ``torch.distributed`` is not initialised or has one process; else a sampler
        over the tiles ``rank, rank + W, rank + 2 W, ...`` (W processes) in order, unshuffled
        and unpadded: the processes' shares are disjoint and together hold every tile once.

    Raises:
        ValueError: if the split holds fewer tiles than there are processes: a process without
            a batch would skip the evaluation loop and its collective calls.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return None
    world_size = dist.get_world_size()
    if world_size < 2:
        return None
    if len(dataset) < world_size:
        raise ValueError(
            f"an evaluation split of {len(dataset)} tiles cannot give each of the "
            f"{world_size} processes a tile"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=world_size, rank=dist.get_rank(), shuffle=False
    )
