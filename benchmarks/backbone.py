"""Backbone speed on this machine's CPU: MaskedFusionViT-T measured side by side.

Batch 8, four modalities of 256 x 256 (Sentinel-1: 2 channels, Sentinel-2: 4, DEM: 1, Dynamic
World: 9 classes), patch 16: 4 x 256 modality tokens and 256 fusion tokens. Three comparisons,
in fp32 and in bf16 autocast:

1. Training step (forward + backward) of ``MaskedFusionViT.tiny`` against a stack of 12 timm
   ViT-Tiny blocks (``Block(192, 3)``) over the same 1280 tokens with dense attention; the
   ratio is the speed-up of ours (timm time / our time, higher is better). Ours also embeds
   the rasters, runs modality attention before every block and pools the class tokens.
2. Inference (no grad) with 1, 2 and 3 modalities present, as a fraction of the time with all
   four (the token count alone predicts 2/5, 3/5, 4/5).
3. Pretraining-style forward + backward with ``visible`` showing half of the modality tokens
   (Dirichlet split per sample, as MultiMAE), as a fraction of the all-visible training step.
   Hidden tokens cost nothing, but the 256 fusion tokens and their modality attention always
   run in full: 768 of 1280 tokens, so about 0.6 is the floor.

Cases are interleaved within every repetition, after warm-up repetitions (the first bf16 calls
compile kernels). The table shows median times and, for the ratios, the median of the ratios
within each repetition: on a shared 2-core machine a busy neighbour can slow a two-thread run
several-fold for seconds, and pairing cases that ran back to back cancels most of that.

    python -m benchmarks.backbone [--repeats 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from fusion import FusionOutput, MaskedFusionViT
from fusion.masking import sample_visible_tokens

BATCH = 8
IMAGE = 256
MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}


def make_inputs() -> dict[str, Tensor]:
    """A batch of the four modalities."""
    return {
        "s1": torch.randn(BATCH, 2, IMAGE, IMAGE),
        "s2": torch.randn(BATCH, 4, IMAGE, IMAGE),
        "dem": torch.randn(BATCH, 1, IMAGE, IMAGE),
        "dnw": torch.randint(0, 9, (BATCH, IMAGE, IMAGE)),
    }


def output_loss(out: FusionOutput) -> Tensor:
    """A loss touching every output, so that backward runs through all of the model."""
    parts = [out.fusion, *out.modality_tokens.values(), *out.modality_vectors.values()]
    parts += out.fusion_vectors.values()
    return sum(part.float().square().mean() for part in parts)


def benchmark_cases(bf16: bool) -> dict[str, Callable[[], None]]:
    """The measured callables, by row name."""
    model = MaskedFusionViT.tiny(MODALITIES, img_size=IMAGE)
    blocks = nn.Sequential(*[Block(192, 3) for _ in range(12)])
    tokens = torch.randn(BATCH, 4 * 256 + 256, 192, requires_grad=True)
    inputs = make_inputs()
    present = torch.ones(BATCH, len(MODALITIES), dtype=torch.bool)
    visible_grid = sample_visible_tokens(present, num_positions=256, visible_fraction=0.5)
    visible = {name: visible_grid[:, i] for i, name in enumerate(MODALITIES)}

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def timm_train() -> None:
        with autocast():
            loss = blocks(tokens).float().square().mean()
        loss.backward()

    def train(visible: dict[str, Tensor] | None = None) -> Callable[[], None]:
        def step() -> None:
            with autocast():
                loss = output_loss(model(inputs, visible=visible))
            loss.backward()

        return step

    def infer(names: Sequence[str]) -> Callable[[], None]:
        subset = {name: inputs[name] for name in names}

        def run() -> None:
            with torch.inference_mode(), autocast():
                model(subset)

        return run

    names = list(MODALITIES)
    return {
        "train: timm ViT-T blocks, 1280 tokens": timm_train,
        "train: MaskedFusionViT.tiny, 4 modalities": train(),
        "pretrain: half of the modality tokens visible": train(visible),
        **{
            f"inference: {k} modalities ({'+'.join(names[:k])})": infer(names[:k])
            for k in range(1, 5)
        },
    }


def measure(
    cases: dict[str, Callable[[], None]], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per case in each of ``repeats`` interleaved repetitions, after ``warmup``."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for repetition in range(warmup + repeats):
        for name, case in cases.items():
            start = time.perf_counter()
            case()
            if repetition >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over repetitions of the ratio within each repetition.

    Cases of one repetition run back to back, so pairing them cancels slow phases of a shared
    machine better than a ratio of medians.
    """
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def ratio_rows(times: dict[str, list[float]]) -> dict[str, str]:
    """Each case's ratio, as the module docstring explains it."""
    names = list(times)
    timm, train, pretrain = names[0], names[1], names[2]
    inference = names[3:]
    rows = {
        timm: "reference",
        train: f"{paired_ratio(times[timm], times[train]):.2f}x faster",
        pretrain: f"{paired_ratio(times[pretrain], times[train]):.2f} of train",
    }
    for name in inference:
        rows[name] = f"{paired_ratio(times[name], times[inference[-1]]):.2f} of 4"
    return rows


def main(argv: Sequence[str] = ()) -> None:
    """Measures and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="measured repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = {}
    for precision in ("fp32", "bf16"):
        times = measure(cases=benchmark_cases(bf16=precision == "bf16"), **vars(args))
        medians = {name: statistics.median(values) for name, values in times.items()}
        results[precision] = (medians, ratio_rows(times))
    print(
        f"\nBackbone: batch {BATCH}, 4 modalities of {IMAGE}x{IMAGE}, patch 16, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads. Times: medians of "
        f"{args.repeats} interleaved repetitions after {args.warmup} warm-up; ratios: medians of "
        "the ratios within each repetition."
    )
    width = max(len(name) for name in results["fp32"][0])
    header = f"{'case':<{width}}  {'fp32 ms':>8}  {'bf16 ms':>8}  {'fp32':>14}  {'bf16':>14}"
    print(header)
    for name in results["fp32"][0]:
        (fp32_ms, fp32_ratio), (bf16_ms, bf16_ratio) = (
            (results[p][0][name] * 1e3, results[p][1][name]) for p in ("fp32", "bf16")
        )
        print(
            f"{name:<{width}}  {fp32_ms:8.0f}  {bf16_ms:8.0f}  {fp32_ratio:>14}  {bf16_ratio:>14}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
