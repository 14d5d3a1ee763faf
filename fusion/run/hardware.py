"""Which device and numeric precision a run uses, decided from the hardware in one place.

The rule (`choose_precision`):

* a CUDA GPU: ``bf16-mixed`` where it supports bf16 (Ampere and newer), else ``16-mixed``;
* a CPU that multiplies bf16 natively (AMX tiles or AVX512-BF16): ``bf16-mixed``, several times
  faster than float32 there;
* any other CPU: ``32-true``. Without those units torch emulates bf16, and a bf16 matrix product
  runs about 200x slower than float32 (measured on a 2-core AVX2 EPYC: 0.3 against 61 GFLOP/s).

The command line applies the rule when the config leaves ``trainer.precision`` unset (``null``);
an explicit ``--trainer.precision`` or ``--trainer.accelerator`` always wins.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Hardware:
    """What the precision rule looks at.

    Attributes:
        cuda: Whether a CUDA GPU is usable.
        cuda_bf16: Whether that GPU supports bf16.
        cpu_capability: torch's CPU instruction set level (``"AVX2"``, ``"AVX512"``, ...).
        amx: Whether the CPU has AMX tiles (bf16 matrix units).
        avx512_bf16: Whether the CPU has the AVX512-BF16 instructions.
    """

    cuda: bool
    cuda_bf16: bool
    cpu_capability: str
    amx: bool
    avx512_bf16: bool

    @property
    def cpu_native_bf16(self) -> bool:
        """Whether the CPU multiplies bf16 in hardware rather than emulating it."""
        return self.amx or self.avx512_bf16

    @property
    def cpu_class(self) -> str:
        """A short name of the CPU class that timing figures depend on."""
        if self.amx:
            return "AMX (native bf16)"
        if self.avx512_bf16:
            return "AVX512-BF16 (native bf16, no AMX)"
        return f"{self.cpu_capability} (no native bf16)"


def detect_hardware() -> Hardware:
    """Reads this machine's capabilities from torch."""
    cuda = torch.cuda.is_available()
    return Hardware(
        cuda=cuda,
        cuda_bf16=cuda and torch.cuda.is_bf16_supported(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        amx=torch.cpu._is_amx_tile_supported(),
        avx512_bf16=torch.cpu._is_avx512_bf16_supported(),
    )


def cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction set flags of the first processor in a Linux ``/proc/cpuinfo`` text.

    Only the line whose key is exactly ``flags`` counts (not ``vmx flags``); a text without one
    gives an empty set.
    """
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if colon and key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def hardware_from_cpu_flags(
    flags: Iterable[str], *, cuda: bool = False, cuda_bf16: bool = False
) -> Hardware:
    """The `Hardware` of a CPU described by its ``/proc/cpuinfo`` flags, for the precision rule.

    `detect_hardware` asks torch about this machine; this reads a machine described in text
    (a log, another host), with the names Linux gives the flags. The instruction set level
    follows torch's: AVX512 needs AVX512 F, BW, VL, DQ and FMA; AVX2 needs AVX2 and FMA.
    """
    flags = frozenset(flags)
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq", "fma"} <= flags:
        capability = "AVX512"
    elif {"avx2", "fma"} <= flags:
        capability = "AVX2"
    else:
        capability = "DEFAULT"
    return Hardware(
        cuda=cuda,
        cuda_bf16=cuda and cuda_bf16,
        cpu_capability=capability,
        amx={"amx_tile", "amx_bf16"} <= flags,
        avx512_bf16="avx512_bf16" in flags,
    )


@dataclass(frozen=True)
class PrecisionChoice:
    """The outcome of the rule.

    Attributes:
        accelerator: ``"gpu"`` or ``"cpu"`` (Lightning's names).
        precision: Lightning precision string, e.g. ``"bf16-mixed"``.
        reason: One line saying why, for the run's log.
    """

    accelerator: str
    precision: str
    reason: str


def choose_precision(
    hardware: Hardware | None = None, accelerator: str | None = None
) -> PrecisionChoice:
    """Applies the precision rule.

    Args:
        hardware: The capabilities to decide on (default: this machine's).
        accelerator: The accelerator the user asked for (``"cpu"``, ``"gpu"``, ``"cuda"``), or
            None / ``"auto"`` to take a GPU when there is one.

    Returns:
        The accelerator and precision to train with, and why.

    Raises:
        ValueError: If a GPU is requested on a machine without one, or the accelerator is
            not one of cpu, gpu, cuda, auto.
    """
    hardware = hardware or detect_hardware()
    requested = (accelerator or "auto").lower()
    if requested not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(
            f"automatic precision knows the accelerators cpu, gpu, cuda and auto, not "
            f"{accelerator!r}; set --trainer.precision explicitly for it"
        )
    if requested in ("gpu", "cuda") and not hardware.cuda:
        raise ValueError(f"accelerator {accelerator!r} was requested but no CUDA GPU is usable")
    if hardware.cuda and requested != "cpu":
        if hardware.cuda_bf16:
            return PrecisionChoice("gpu", "bf16-mixed", "CUDA GPU with bf16 support")
        return PrecisionChoice("gpu", "16-mixed", "CUDA GPU without bf16: float16 autocast")
    where = "CPU" if requested == "cpu" or not hardware.cuda else "CPU (no GPU)"
    if hardware.cpu_native_bf16:
        return PrecisionChoice(
            "cpu", "bf16-mixed", f"{where} with {hardware.cpu_class}: bf16 matrix products"
        )
    return PrecisionChoice(
        "cpu",
        "32-true",
        f"{where} with {hardware.cpu_class}: bf16 would be emulated and much slower than float32",
    )


def matmul_gflops(dtype: torch.dtype, size: int = 512, seconds: float = 0.5) -> float:
    """Measured GFLOP/s of a ``size``-cubed matrix product on the CPU.

    Repeats the product for about ``seconds`` (at least 3 times) and takes the median, so the
    measurement stays short where bf16 is emulated (0.3 GFLOP/s: about 1 s per product).
    """
    a = torch.randn(size, size).to(dtype)
    b = torch.randn(size, size).to(dtype)
    start = time.perf_counter()
    a @ b  # warm-up, and a first estimate of the time per product
    repeats = max(3, min(50, int(seconds / max(time.perf_counter() - start, 1e-6))))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    times.sort()
    return 2 * size**3 / times[len(times) // 2] / 1e9


AUTOCAST_DTYPES = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
"""The autocast dtype of each mixed Lightning precision."""


def autocast_context(precision: str, device_type: str = "cpu") -> AbstractContextManager:
    """The autocast context of a Lightning precision string on a device (none for float32).

    Args:
        precision: e.g. ``"bf16-mixed"``, ``"16-mixed"``, ``"32-true"``.
        device_type: ``"cpu"`` or ``"cuda"``.

    Raises:
        ValueError: for a precision other than those three (and ``"32"``).
    """
    if precision in ("32-true", "32"):
        return nullcontext()
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"precision must be 32-true, bf16-mixed or 16-mixed, got {precision!r}")
    return torch.autocast(device_type, dtype=AUTOCAST_DTYPES[precision])
