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

Cases are interleaved within every repetition, in reverse order every other repetition, after
warm-up repetitions (the first bf16 calls compile kernels). The pretraining case draws a fresh
MultiMAE split in every repetition (the same draws in both precisions), so its figure is the
typical cost over draws rather than that of one lucky or unlucky split. The table shows median
times and, for the ratios, the median of the ratios within each repetition: on a shared 2-core
machine a busy neighbour can slow a two-thread run several-fold for seconds, and pairing cases
that ran back to back cancels most of that.

Each precision runs in a process of its own, as a training run does: measured in the process
that had just timed the other precision, the bf16 pretraining ratio read 0.65-0.68 instead of
0.63-0.65 (2-core AVX512-BF16 machine). bf16 runs only where training would use it (the CPU
multiplies bf16 natively, `fusion.run.hardware.choose_precision`); where bf16 is emulated a step
would take minutes, so that column is left out.

    python -m benchmarks.backbone [--repeats 6] [--warmup 2] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

import torch
from timm.models.vision_transformer import Block
from torch import Tensor, nn

from benchmarks.machine import training_precision
from fusion import FusionOutput, MaskedFusionViT
from fusion.pretraining.masking import sample_visible_tokens
from fusion.run.hardware import PrecisionChoice

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


def visibility_draws(count: int) -> list[dict[str, Tensor]]:
    """``count`` MultiMAE splits showing half of each sample's modality tokens, by modality."""
    present = torch.ones(BATCH, len(MODALITIES), dtype=torch.bool)
    draws = []
    for _ in range(count):
        grid = sample_visible_tokens(present, num_positions=256, visible_fraction=0.5)
        draws.append({name: grid[:, i] for i, name in enumerate(MODALITIES)})
    return draws


def benchmark_cases(bf16: bool, draws: int = 1) -> dict[str, Callable[[], None]]:
    """The measured callables, by row name.

    The pretraining case takes the next of ``draws`` visibility draws at every call (cycling).
    """
    model = MaskedFusionViT.tiny(MODALITIES, img_size=IMAGE)
    blocks = nn.Sequential(*[Block(192, 3) for _ in range(12)])
    tokens = torch.randn(BATCH, 4 * 256 + 256, 192, requires_grad=True)
    inputs = make_inputs()
    visible_draws = itertools.cycle(visibility_draws(draws))

    def autocast() -> torch.autocast:
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)

    def timm_train() -> None:
        with autocast():
            loss = blocks(tokens).float().square().mean()
        loss.backward()

    def train() -> None:
        with autocast():
            loss = output_loss(model(inputs))
        loss.backward()

    def pretrain() -> None:
        with autocast():
            loss = output_loss(model(inputs, visible=next(visible_draws)))
        loss.backward()

    def infer(names: Sequence[str]) -> Callable[[], None]:
        subset = {name: inputs[name] for name in names}

        def run() -> None:
            with torch.inference_mode(), autocast():
                model(subset)

        return run

    names = list(MODALITIES)
    return {
        "train: timm ViT-T blocks, 1280 tokens": timm_train,
        "train: MaskedFusionViT.tiny, 4 modalities": train,
        "pretrain: half of the modality tokens visible": pretrain,
        **{
            f"inference: {k} modalities ({'+'.join(names[:k])})": infer(names[:k])
            for k in range(1, 5)
        },
    }


def measure(
    cases: dict[str, Callable[[], None]], repeats: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds per case in each of ``repeats`` interleaved repetitions, after ``warmup``.

    Every other repetition runs the cases in reverse order, so that no case always follows
    the same one.
    """
    times: dict[str, list[float]] = {name: [] for name in cases}
    order = list(cases.items())
    for repetition in range(warmup + repeats):
        for name, case in order if repetition % 2 == 0 else order[::-1]:
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


def measure_precision(precision: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Times every case in ``precision`` (``"fp32"`` or ``"bf16"``) in this process."""
    torch.manual_seed(0)  # the same model and visibility draws in every precision
    cases = benchmark_cases(bf16=precision == "bf16", draws=warmup + repeats)
    return measure(cases, repeats=repeats, warmup=warmup)


def measure_in_child(precision: str, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Runs `measure_precision` in a fresh Python process and returns its times.

    The child's warnings and errors pass through to this process's stderr.
    """
    command = [sys.executable, "-m", "benchmarks.backbone", "--precision", precision]
    command += ["--repeats", str(repeats), "--warmup", str(warmup), "--json"]
    result = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def precisions_to_measure(choice: PrecisionChoice) -> list[str]:
    """fp32 always (the reference), bf16 only where training uses it (native bf16 products)."""
    return ["fp32", "bf16"] if choice.precision == "bf16-mixed" else ["fp32"]


def print_table(times: dict[str, dict[str, list[float]]], repeats: int, warmup: int) -> None:
    """Prints median times and ratios, one column pair per measured precision."""
    precisions = list(times)
    print(
        f"\nBackbone: batch {BATCH}, 4 modalities of {IMAGE}x{IMAGE}, patch 16, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads, each precision in its own "
        f"process. Times: medians of {repeats} interleaved repetitions after {warmup} warm-up; "
        "ratios: medians of the ratios within each repetition."
    )
    names = list(times[precisions[0]])
    width = max(len(name) for name in names)
    header = f"{'case':<{width}}" + "".join(f"  {p + ' ms':>8}" for p in precisions)
    print(header + "".join(f"  {p:>14}" for p in precisions))
    rows = {p: ratio_rows(times[p]) for p in precisions}
    for name in names:
        medians = "".join(f"  {statistics.median(times[p][name]) * 1e3:8.0f}" for p in precisions)
        print(f"{name:<{width}}{medians}" + "".join(f"  {rows[p][name]:>14}" for p in precisions))


def main(argv: Sequence[str] = ()) -> None:
    """Measures and prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="measured repetitions")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured repetitions first")
    parser.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="measure only this precision, in this process (default: fp32, and bf16 where "
        "training uses it, each in a fresh process)",
    )
    parser.add_argument("--json", action="store_true", help="print the raw times as JSON")
    args = parser.parse_args(argv)
    if args.precision:
        times = {args.precision: measure_precision(args.precision, args.repeats, args.warmup)}
    else:
        choice = training_precision()
        precisions = precisions_to_measure(choice)
        if len(precisions) == 1:
            print(f"\nBackbone: bf16 left out: training here runs {choice.precision}")
            print(f"  ({choice.reason})")
        times = {p: measure_in_child(p, args.repeats, args.warmup) for p in precisions}
    if args.json:
        print(json.dumps(times[args.precision] if args.precision else times))
    else:
        print_table(times, args.repeats, args.warmup)


if __name__ == "__main__":
    main(sys.argv[1:])
