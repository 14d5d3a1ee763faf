"""What machine the benchmarks run on, and the precision training would use there.

Every figure of `make bench` depends on the CPU class: AMX tiles or AVX512-BF16 multiply bf16
natively (several times faster than float32), while on AVX2-only CPUs bf16 is emulated and
about 200x slower. This prints the capability flags, measured float32 and bf16 matrix-product
throughput, and the precision `fusion.run.hardware.choose_precision` picks, which the other
benchmarks then use.

    python -m benchmarks.machine
"""

from __future__ import annotations

import platform
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from fusion.run.hardware import (
    PrecisionChoice,
    autocast_context,
    choose_precision,
    detect_hardware,
    matmul_gflops,
)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's name elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def training_precision() -> PrecisionChoice:
    """The precision training would use on this machine's CPU."""
    return choose_precision(accelerator="cpu")


def autocast_for(choice: PrecisionChoice) -> AbstractContextManager:
    """The CPU autocast context of a precision choice (none for float32)."""
    return autocast_context(choice.precision, "cpu")


def describe() -> PrecisionChoice:
    """Print the machine and return the training precision."""
    hardware = detect_hardware()
    choice = training_precision()
    fp32 = matmul_gflops(torch.float32)
    bf16 = matmul_gflops(torch.bfloat16)
    flags = {
        "AVX2": torch.cpu._is_avx2_supported(),
        "AVX-512": torch.cpu._is_avx512_supported(),
        "AVX512-BF16": hardware.avx512_bf16,
        "AMX": hardware.amx,
    }
    print(f"\nMachine: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print("  CPU flags: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items()))
    print(f"  class: {hardware.cpu_class}")
    print(
        f"  512^3 matrix product: float32 {fp32:.0f} GFLOP/s, bf16 {bf16:.1f} GFLOP/s "
        f"(bf16 / float32 = {bf16 / fp32:.2f})"
    )
    print(f"  training precision here: {choice.precision} ({choice.reason})")
    return choice


if __name__ == "__main__":
    describe()
