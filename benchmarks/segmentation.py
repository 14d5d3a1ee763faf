"""Segmentation training cost with modality subsets and the spatial mask, against all modalities.

The paper trains with random modality combinations (III-F, IV-B-5). A modality absent from a
batch is left out of the inputs, one absent from a sample and a hidden token are left out of
the packed token layout, and the token-wise layers skip the padding of packed samples
(`fusion.layers.token_layout.PackedLayout.tokenwise`), so missing tokens should cost nothing:
with four modalities the expected share of modality tokens under a uniform subset is
E[present] / M = (32 / 15) / 4 = 0.53. The fusion tokens, the pyramid and the Mask2Former head
run in full whatever is missing, so a whole step saves less.

This times, side by side and interleaved, a training step (forward, backward, AdamW) of
`fusion.tasks.SegmentationTask` (ViT-T, Mask2Former with 9 queries, 7 land-cover classes, four
quadruplet modalities) in the precision training uses on this CPU (`benchmarks.machine`), at
each image size, for:

- every modality present;
- one subset for the whole batch (the paper's per-iteration draw): timed for a subset of 1, 2
  and 3 modalities (``s2``; ``s1, s2``; ``s1, s2, dem``: fixed, so that the warm-up sees their
  shapes) and weighted as the uniform draw picks them (4, 6, 4 and 1 of the 15 subsets have 1,
  2, 3 and 4 modalities);
- a uniform random subset per sample (packed, with padding to the largest sample);
- every modality with the Dirichlet spatial mask hiding 25% of the tokens (the configs' value);
- the pyramid and head alone on the backbone features of complete inputs: their share of the
  all-modality step is the floor that missing modalities cannot lower.

    python -m benchmarks.segmentation [--sizes 256 128] [--batch 4] [--repeats 3] [--warmup 1]
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
CLASSES = 7
SUBSETS_BY_SIZE = {1: 4, 2: 6, 3: 4, 4: 1}
"""How many of the 15 non-empty subsets of four modalities have each size."""
MASK_SHARE = 0.25


def make_batch(present: torch.Tensor, size: int) -> dict:
    """A batch of the sample contract with the given ``present [B, M]``, ``size`` pixels."""
    batch = len(present)
    blocks = torch.randint(0, CLASSES, (batch, size // 16, size // 16))
    mask = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
    valid = present[:, :, None, None].expand(-1, -1, size, size).clone()
    return {
        "s1": torch.randn(batch, 2, size, size),
        "s2": torch.randn(batch, 4, size, size),
        "dem": torch.randn(batch, 1, size, size),
        "dnw": torch.randint(0, 9, (batch, 1, size, size)),
        "present": present,
        "valid": valid,
        "mask": mask,
    }


def uniform_subsets(batch: int, generator: torch.Generator) -> torch.Tensor:
    """``present [B, 4]``: a uniform draw among the 15 non-empty subsets per sample."""
    codes = torch.randint(1, 16, (batch,), generator=generator)
    return (codes[:, None] >> torch.arange(4)) & 1 == 1


SUBSET_OF_SIZE = {1: ("s2",), 2: ("s1", "s2"), 3: ("s1", "s2", "dem")}


def subset_of_size(batch: int, count: int) -> torch.Tensor:
    """``present [B, 4]``: the subset of ``count`` modalities timed, shared by the batch."""
    row = torch.tensor([name in SUBSET_OF_SIZE[count] for name in MODALITIES])
    return row.expand(batch, 4).clone()


def training_cases(size: int, batch: int) -> dict[str, Callable[[], None]]:
    """The training steps at one image size, sharing one model and optimizer."""
    task = SegmentationTask(MODALITIES, num_classes=CLASSES, num_queries=9, img_size=size)
    task.log = lambda *args, **kwargs: None
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    precision = training_precision()
    generator = torch.Generator().manual_seed(0)
    complete = make_batch(torch.ones(batch, 4, dtype=torch.bool), size)

    def step(data: dict, mask_share: float = 0.0) -> None:
        task.hparams.patch_dropout = mask_share
        with autocast_for(precision):
            loss = task.training_step(data, 0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    with torch.no_grad(), autocast_for(precision):
        inputs = {name: complete[name] for name in MODALITIES}
        features = [f.float() for f in task.backbone.forward_intermediates(inputs)]

    def head_only() -> None:
        with autocast_for(precision):
            maps = [f.detach().requires_grad_() for f in features]
            predictions = task.head(task.pyramid(maps))
            loss = task.head.loss(predictions, task.targets(complete))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    cases = {"all 4 modalities": lambda: step(complete)}
    for count in (1, 2, 3):
        cases[f"per batch: {count} of 4"] = lambda count=count: step(
            make_batch(subset_of_size(batch, count), size)
        )
    cases["per sample: uniform subsets"] = lambda: step(
        make_batch(uniform_subsets(batch, generator), size)
    )
    cases[f"all 4 + Dirichlet mask {MASK_SHARE:.2f}"] = lambda: step(complete, MASK_SHARE)
    cases["pyramid + head only"] = head_only
    return cases


def report(times: dict[str, list[float]]) -> list[str]:
    """Lines of ratios to the all-modality step, paired within each repetition."""
    names = list(times)
    full = times[names[0]]
    ratios = {name: paired_ratio(values, full) for name, values in times.items()}
    per_batch = sum(
        SUBSETS_BY_SIZE[count] * (1.0 if count == 4 else ratios[f"per batch: {count} of 4"])
        for count in SUBSETS_BY_SIZE
    ) / sum(SUBSETS_BY_SIZE.values())
    lines = [
        f"  {name:<36s} {statistics.median(values) * 1e3:8.0f} ms   {ratios[name]:.2f}"
        for name, values in times.items()
    ]
    lines.append(
        f"  per batch, uniform over the 15 subsets (weighted): {per_batch:.2f} of all "
        f"(goal at 256 px: <= 0.65; modality-token share 0.53)"
    )
    lines.append(
        f"  per sample / per batch: {ratios['per sample: uniform subsets'] / per_batch:.2f}; "
        f"the pyramid and head alone: {ratios['pyramid + head only']:.2f} of all"
    )
    return lines


def main(argv: Sequence[str] = ()) -> None:
    """Measures and prints the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 128])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args(argv)
    precision = training_precision().precision
    for size in args.sizes:
        torch.manual_seed(0)
        times = measure(training_cases(size, args.batch), args.repeats, args.warmup)
        print(
            f"\nSegmentation training step (ViT-T + Mask2Former, batch {args.batch}, "
            f"{size} x {size}, {precision}), medians of {args.repeats} interleaved "
            f"repetitions; ratio to all modalities"
        )
        print("\n".join(report(times)))


if __name__ == "__main__":
    main(sys.argv[1:])
