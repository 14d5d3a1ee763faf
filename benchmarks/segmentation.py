"""Segmentation training cost with random modality subsets against complete inputs.

The paper trains with a uniform random modality subset per sample (III-F). A modality absent
from a sample is left out of the token layout (packed), so it costs nothing: with four
modalities the expected share of modality tokens is E[present] / M = (32 / 15) / 4 = 0.53.
This times, side by side and interleaved, a training step (forward, backward, AdamW) of
`fusion.tasks.SegmentationTask` (ViT-T, Mask2Former with 9 queries, 7 land-cover classes, four
quadruplet modalities, batch 8, 128 x 128) with every modality present and with a uniform
random subset per sample, in the precision training uses on this CPU (`benchmarks.machine`).
The fusion tokens, the pyramid and the head run in full in both, so the whole step saves less
than the modality-token share.

    python -m benchmarks.segmentation [--repeats 3] [--warmup 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable, Sequence

import torch

from benchmarks.backbone import measure, paired_ratio
from benchmarks.machine import autocast_for, training_precision
from fusion.tasks import SegmentationTask

MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}
BATCH, SIZE, CLASSES = 8, 128, 7


def make_batch(present: torch.Tensor) -> dict:
    """A batch of the sample contract with the given ``present [B, M]``."""
    blocks = torch.randint(0, CLASSES, (BATCH, SIZE // 16, SIZE // 16))
    mask = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
    valid = present[:, :, None, None].expand(-1, -1, SIZE, SIZE).clone()
    return {
        "s1": torch.randn(BATCH, 2, SIZE, SIZE),
        "s2": torch.randn(BATCH, 4, SIZE, SIZE),
        "dem": torch.randn(BATCH, 1, SIZE, SIZE),
        "dnw": torch.randint(0, 9, (BATCH, 1, SIZE, SIZE)),
        "present": present,
        "valid": valid,
        "mask": mask,
    }


def uniform_subsets(generator: torch.Generator) -> torch.Tensor:
    """``present [B, 4]``: a uniform draw among the 15 non-empty subsets per sample."""
    codes = torch.randint(1, 16, (BATCH,), generator=generator)
    return (codes[:, None] >> torch.arange(4)) & 1 == 1


def training_cases() -> dict[str, Callable[[], None]]:
    """The two training steps, sharing one model and optimizer."""
    task = SegmentationTask(MODALITIES, num_classes=CLASSES, num_queries=9, img_size=SIZE)
    task.log = lambda *args, **kwargs: None
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    precision = training_precision()
    generator = torch.Generator().manual_seed(0)
    complete = make_batch(torch.ones(BATCH, 4, dtype=torch.bool))

    def step(batch: dict) -> None:
        with autocast_for(precision):
            loss = task.training_step(batch, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return {
        "train: all 4 modalities": lambda: step(complete),
        "train: uniform random subset per sample": lambda: step(
            make_batch(uniform_subsets(generator))
        ),
    }


def main(argv: Sequence[str] = ()) -> None:
    """Measures and prints the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    precision = training_precision().precision
    times = measure(training_cases(), repeats=args.repeats, warmup=args.warmup)
    full, random = times.values()
    print(
        f"\nSegmentation training step (ViT-T + Mask2Former, batch {BATCH}, {SIZE} x {SIZE}, "
        f"{precision}), medians of {args.repeats} interleaved repetitions"
    )
    for name, values in times.items():
        print(f"  {name:<42s} {statistics.median(values) * 1e3:8.0f} ms")
    print(
        f"  random subsets / all modalities: {paired_ratio(random, full):.2f} "
        f"(modality-token share E[present]/M = 0.53)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
