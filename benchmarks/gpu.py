"""GPU check: the paper's pretraining and segmentation configs for a few dozen steps on CUDA.

For each config, the model is built from its ``model`` section (the modalities of its
DataModule's dataset) and trained on synthetic batches of the config's batch size and image
size, every modality present, in the automatic precision (`fusion.run.hardware.choose_precision`:
bf16-mixed on GPUs with bf16, else 16-mixed). Printed per config: samples per second over the
timed steps, peak GPU memory, and the model FLOP utilisation (MFU): the FLOPs of one training
step (forward and backward, counted by ``torch.utils.flop_counter``) times steps per second,
over the GPU's dense bf16/fp16 peak (a table below; GPUs not in it get no MFU). Without a CUDA
GPU it says so and does nothing.

    python -m benchmarks.gpu [--steps 30] [--warmup 5] [--configs NAME ...]    (make bench-gpu)
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from fusion.modality import parse_modalities
from fusion.run.hardware import choose_precision

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    "pretrain_quad": "experiments/pretrain_quad.yaml",
    "segment_quad": "experiments/segment_quad.yaml",
    "segment_dfc2023_instance": "experiments/segment_dfc2023_instance.yaml",
}
"""The configs timed: name -> file."""

PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "V100": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "T4": 65.0,
}
"""Dense bf16 (fp16 before Ampere) tensor-core peak, TFLOP/s, from the vendors' data sheets;
the first name contained in the device name wins (so "H100 PCIe" before "H100")."""


@dataclass
class GpuResult:
    """What one config measured."""

    name: str
    batch: int
    size: int
    samples_per_second: float
    peak_memory_gib: float
    step_tflop: float
    mfu: float | None


def peak_tflops(device_name: str) -> float | None:
    """The dense peak of a GPU by name (``torch.cuda.get_device_name``), None if unknown."""
    return next((peak for key, peak in PEAK_TFLOPS.items() if key in device_name), None)


def build_task(config: Path) -> tuple[torch.nn.Module, int, int]:
    """The config's LightningModule, batch size and image size.

    The modalities come from the DataModule's dataset class, as the command line links them.
    """
    settings = yaml.safe_load(config.read_text())
    model, data = settings["model"], settings["data"]
    module_name, _, class_name = data["class_path"].rpartition(".")
    datamodule_class = getattr(importlib.import_module(module_name), class_name)
    # The DataModule reads nothing when it is made: its modalities need no data.
    specs = datamodule_class(root=str(REPO), **data["init_args"]).modality_specs
    module_name, _, class_name = model["class_path"].rpartition(".")
    task_class = getattr(importlib.import_module(module_name), class_name)
    task = task_class(modalities=specs, **model["init_args"])
    task.log = lambda *args, **kwargs: None
    return task, int(data["init_args"]["batch_size"]), int(model["init_args"]["img_size"])


def synthetic_batch(task: Any, batch: int, size: int, device: torch.device) -> dict[str, Any]:
    """A batch of the sample contract for ``task``: random rasters, every modality present.

    Segmentation gets labels in 16-pixel blocks (semantic) or ten random rectangles per image
    (instances).
    """
    generator = torch.Generator().manual_seed(0)
    out: dict[str, Any] = {}
    for spec in parse_modalities(task.hparams.modalities):
        if spec.is_categorical:
            out[spec.name] = torch.randint(0, spec.num_classes, (batch, 1, size, size))
        else:
            out[spec.name] = torch.randn(batch, spec.channels, size, size, generator=generator)
    names = [spec.name for spec in parse_modalities(task.hparams.modalities)]
    out["present"] = torch.ones(batch, len(names), dtype=torch.bool)
    out["valid"] = torch.ones(batch, len(names), size, size, dtype=torch.bool)
    classes = task.hparams.get("num_classes", 2)
    blocks = torch.randint(0, classes, (batch, size // 16, size // 16), generator=generator)
    out["mask"] = blocks.repeat_interleave(16, 1).repeat_interleave(16, 2)
    if task.hparams.get("task") == "instance":
        masks, labels = [], []
        for _ in range(batch):
            corner = torch.randint(0, size - 32, (10, 2), generator=generator)
            image = torch.zeros(10, size, size, dtype=torch.bool)
            for k, (y, x) in enumerate(corner.tolist()):
                image[k, y : y + 24, x : x + 24] = True
            masks.append(image.to(device))
            labels.append(torch.zeros(10, dtype=torch.int64, device=device))
        out["instance_masks"], out["labels"] = masks, labels
        out["mask"] = torch.zeros(batch, size, size, dtype=torch.int64)
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in out.items()}


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast for a Lightning precision name (``bf16-mixed``, ``16-mixed``, ``32-true``)."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def measure_config(
    name: str,
    config: Path,
    steps: int,
    warmup: int,
    device: torch.device,
    precision: str,
    batch: int | None = None,
    size: int | None = None,
) -> GpuResult:
    """Trains ``warmup + steps`` steps of one config and measures the timed ``steps``.

    ``batch`` and ``size`` override the config's (for a quick check on a CPU).
    """
    task, config_batch, config_size = build_task(config)
    batch, size = batch or config_batch, size or config_size
    task = task.to(device).train()
    data = synthetic_batch(task, batch, size, device)
    optimizer = torch.optim.AdamW(task.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")

    def step(index: int) -> None:
        with autocast(device, precision):
            loss = task.training_step(data, index)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    counter = FlopCounterMode(display=False)
    with counter:
        step(0)
    for index in range(warmup):
        step(index)
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for index in range(steps):
        step(index)
    synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    peak_memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    flops = counter.get_total_flops()
    peak = peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    mfu = flops / seconds / (peak * 1e12) if peak else None
    return GpuResult(name, batch, size, batch / seconds, peak_memory, flops / 1e12, mfu)


def synchronize(device: torch.device) -> None:
    """Waits for the GPU's queued work (nothing on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: Sequence[str] = ()) -> int:
    """Measures and prints each config; returns 0 (also when skipped without a GPU)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--configs", nargs="+", choices=sorted(CONFIGS), default=list(CONFIGS))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("No CUDA GPU on this machine: the GPU check is skipped (make bench times the CPU).")
        return 0
    device = torch.device("cuda")
    choice = choose_precision()
    gpu = torch.cuda.get_device_name(device)
    print(f"GPU: {gpu}; precision {choice.precision}; torch {torch.__version__}")
    print(
        f"{'config':<26s} {'batch':>5s} {'px':>4s} {'samples/s':>10s} {'peak GiB':>9s} "
        f"{'TFLOP/step':>10s} {'MFU':>6s}"
    )
    for name in args.configs:
        result = measure_config(
            name, REPO / CONFIGS[name], args.steps, args.warmup, device, choice.precision
        )
        mfu = f"{result.mfu:.1%}" if result.mfu is not None else "n/a"
        print(
            f"{result.name:<26s} {result.batch:>5d} {result.size:>4d} "
            f"{result.samples_per_second:>10.1f} {result.peak_memory_gib:>9.2f} "
            f"{result.step_tflop:>10.3f} {mfu:>6s}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
