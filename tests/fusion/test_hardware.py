import pytest
import torch

from fusion.hardware import Hardware, choose_precision, detect_hardware, matmul_gflops


def hardware(**kwargs) -> Hardware:
    settings = dict(
        cuda=False, cuda_bf16=False, cpu_capability="AVX2", amx=False, avx512_bf16=False
    )
    return Hardware(**{**settings, **kwargs})


@pytest.mark.parametrize(
    ("machine", "accelerator", "expected"),
    [
        (hardware(cuda=True, cuda_bf16=True), None, ("gpu", "bf16-mixed")),
        (hardware(cuda=True, cuda_bf16=False), "auto", ("gpu", "16-mixed")),
        (hardware(cuda=True, cuda_bf16=True), "cuda", ("gpu", "bf16-mixed")),
        (
            hardware(cpu_capability="AVX512", amx=True, avx512_bf16=True),
            None,
            ("cpu", "bf16-mixed"),
        ),
        (hardware(cpu_capability="AVX512", avx512_bf16=True), None, ("cpu", "bf16-mixed")),
        (hardware(cpu_capability="AVX512"), None, ("cpu", "32-true")),  # AVX-512 without BF16
        (hardware(), None, ("cpu", "32-true")),  # AVX2 only: bf16 emulated
        # a GPU machine whose user asks for the CPU gets the CPU's rule
        (hardware(cuda=True, cuda_bf16=True), "cpu", ("cpu", "32-true")),
        (hardware(cuda=True, cuda_bf16=True, amx=True), "cpu", ("cpu", "bf16-mixed")),
    ],
)
def test_precision_follows_the_hardware(machine, accelerator, expected) -> None:
    choice = choose_precision(machine, accelerator)
    assert (choice.accelerator, choice.precision) == expected
    assert choice.reason


def test_reason_names_the_cpu_class() -> None:
    assert "emulated" in choose_precision(hardware()).reason
    assert "AMX" in choose_precision(hardware(amx=True)).reason


def test_impossible_requests_are_refused() -> None:
    with pytest.raises(ValueError, match="no CUDA GPU"):
        choose_precision(hardware(), "gpu")
    with pytest.raises(ValueError, match="'mps'"):
        choose_precision(hardware(), "mps")


def test_detect_hardware_reads_torch() -> None:
    detected = detect_hardware()
    assert detected.cuda == torch.cuda.is_available()
    assert detected.amx == torch.cpu._is_amx_tile_supported()
    assert detected.avx512_bf16 == torch.cpu._is_avx512_bf16_supported()


def test_matmul_gflops_is_positive() -> None:
    assert matmul_gflops(torch.float32, size=64, seconds=0.01) > 0
