"""Two CPU processes (gloo) split a batch: their mean loss is the loss of the whole batch.

DDP averages the processes' gradients, so the mean over the processes of their losses must be
the loss one process would compute on the union of their batches. The mask and dice terms are
sums over matched masks divided by the number of target masks; with that count all-reduced
and divided by the world size (`Mask2FormerHead.mask_count`) the mean is exact however the
masks are spread over the processes. Here rank 0 holds 3 masks and rank 1 holds 7.

The class term is the library's cross-entropy averaged over the local queries, weighted by the
no-object weight: with equal batch sizes the mean of the processes' means is the union's mean
only without that weighting (``no_object_weight=1``); with 0.1 each process's weighted mean has
its own denominator, as in Mask2Former, and is not compared.

Point draws are made alike for every mask wherever it lies: the mask losses read a fixed grid
of points (importance sampling off), and the matcher, which draws its points once per image,
gets the same generator state for every image.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from fusion.heads import Mask2FormerHead, MaskTargets
from tests.fusion.heads.fixtures import tiny_head

WORLD_SIZE = 2
IMAGES_PER_PROCESS = 2
MASKS_PER_IMAGE = (1, 2, 4, 3)  # rank 0: 3 masks, rank 1: 7
SIDE = 16  # feature side of the finest level; images and targets are 4 * SIDE
GRID = 16  # GRID**2 points = the tiny head's train_num_points
NO_OBJECT_WEIGHTS = (0.1, 1.0)
TIMEOUT_S = 120.0
# Forked processes start at once with the modules loaded (spawned ones import them again, for
# seconds); each keeps to one thread, as DataLoader workers do, to be safe to fork.
START_METHOD = "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def deterministic_head(no_object_weight: float) -> Mask2FormerHead:
    """The tiny head with seeded weights whose point draws do not depend on a mask's place.

    The mask losses read a fixed ``GRID x GRID`` grid of points for every mask; the matcher
    runs image by image from the same generator state.
    """
    torch.manual_seed(0)
    head = tiny_head(
        no_object_weight=no_object_weight, importance_sample_ratio=0.0, oversample_ratio=1.0
    )
    centres = (torch.arange(GRID) + 0.5) / GRID
    grid = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).reshape(1, -1, 2)
    assert grid.shape[1] == head.criterion.num_points

    def grid_points(logits: Tensor, *args: object) -> Tensor:
        return grid.expand(len(logits), -1, -1)  # [R, P, 2]

    match = head.match

    def match_each_image_alike(
        class_logits: Tensor, mask_logits: Tensor, targets: list[MaskTargets]
    ) -> list[tuple[Tensor, Tensor]]:
        indices = []
        for i, target in enumerate(targets):
            torch.manual_seed(1)
            indices += match(class_logits[i : i + 1], mask_logits[i : i + 1], [target])
        return indices

    head.criterion.sample_points_using_uncertainty = grid_points
    head.match = match_each_image_alike
    return head


def batch() -> tuple[list[Tensor], list[MaskTargets]]:
    """Features ``[4, 32, SIDE / 2**i, SIDE / 2**i]`` and 4 targets of rectangle instances."""
    generator = torch.Generator().manual_seed(2)
    features = [
        torch.randn(4, 32, SIDE // 2**i, SIDE // 2**i, generator=generator) for i in range(4)
    ]
    side = 4 * SIDE
    targets = []
    for count in MASKS_PER_IMAGE:
        masks = torch.zeros(count, side, side)
        for mask in masks:
            top, left = torch.randint(0, side // 2, (2,), generator=generator).tolist()
            height, width = torch.randint(8, side // 2, (2,), generator=generator).tolist()
            mask[top : top + height, left : left + width] = 1
        labels = torch.randint(0, 3, (count,), generator=generator)
        valid = torch.ones(side, side, dtype=torch.bool)
        valid[:4] = False  # an ignored strip
        targets.append(MaskTargets(masks, labels, valid))
    return features, targets


def losses(head: Mask2FormerHead, images: slice) -> dict[str, float]:
    """The head's weighted loss parts on some images of `batch`."""
    features, targets = batch()
    parts = head.loss(head([level[images] for level in features]), targets[images])
    return {name: float(value.detach()) for name, value in parts.items()}


def process_share(rank: int) -> slice:
    """The images a process holds."""
    return slice(rank * IMAGES_PER_PROCESS, (rank + 1) * IMAGES_PER_PROCESS)


def worker(rank: int, rendezvous: str, out: str) -> None:
    """One process: its share's losses, in training and in evaluation mode, per weight."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=rendezvous, rank=rank, world_size=WORLD_SIZE)
    try:
        record = {}
        for weight in NO_OBJECT_WEIGHTS:
            head = deterministic_head(weight)
            record[weight, "train"] = losses(head, process_share(rank))
            head.eval()  # evaluation: local count, no collective
            record[weight, "eval"] = losses(head, process_share(rank))
        torch.save(record, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_processes(tmp_path: Path) -> list[dict]:
    """Run `worker` in two spawned processes; their records, by rank."""
    context = mp.start_processes(
        worker,
        args=(f"file://{tmp_path / 'rendezvous'}", str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=False,
        start_method=START_METHOD,
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not context.join(timeout=1.0):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"the two processes did not finish in {TIMEOUT_S} s (a hang?)")
    return [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(WORLD_SIZE)]


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return run_processes(tmp_path_factory.mktemp("ddp_loss"))


@pytest.mark.parametrize("weight", NO_OBJECT_WEIGHTS)
def test_mean_of_the_processes_losses_is_the_union_loss(records: list[dict], weight: float) -> None:
    union = losses(deterministic_head(weight), slice(None))
    assert not dist.is_initialized()
    compared = ("mask", "dice", "class", "loss") if weight == 1.0 else ("mask", "dice")
    for name in compared:
        mean = sum(record[weight, "train"][name] for record in records) / WORLD_SIZE
        assert mean == pytest.approx(union[name], rel=1e-5), name
    # Each process divides by the mean count over the processes (5), not by its own (3 or 7).
    mean_count = sum(MASKS_PER_IMAGE) / WORLD_SIZE
    for rank, record in enumerate(records):
        count = sum(MASKS_PER_IMAGE[process_share(rank)])
        for name in ("mask", "dice"):
            local = record[weight, "eval"][name]  # the same images, divided by their count
            expected = local * count / mean_count
            assert record[weight, "train"][name] == pytest.approx(expected, rel=1e-5), name


@pytest.mark.parametrize("weight", NO_OBJECT_WEIGHTS)
def test_evaluation_losses_stay_local(records: list[dict], weight: float) -> None:
    for rank, record in enumerate(records):
        alone = losses(deterministic_head(weight), process_share(rank))  # no process group
        for name, value in alone.items():
            assert record[weight, "eval"][name] == pytest.approx(value, rel=1e-5), name
