from pathlib import Path

import pytest
import torch

from benchmarks import gpu


def test_peak_lookup_prefers_the_longer_name() -> None:
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_tflops("NVIDIA H200") == 989.0
    assert gpu.peak_tflops("Some Future Accelerator") is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a CPU machine")
def test_without_a_gpu_it_says_so_and_stops(capsys) -> None:
    assert gpu.main([]) == 0
    assert "No CUDA GPU" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(gpu.CONFIGS))
def test_every_config_builds_at_its_sizes(name: str) -> None:
    task, batch, size = gpu.build_task(gpu.REPO / gpu.CONFIGS[name])
    assert batch >= 10 and size == 256
    assert set(task.hparams.modalities) in ({"s1", "s2", "dem", "dnw"}, {"rgb", "sar", "dsm"})


def test_one_instance_step_is_counted_and_timed_on_a_cpu() -> None:
    config = Path(gpu.REPO / gpu.CONFIGS["segment_dfc2023_instance"])
    result = gpu.measure_config(
        "instance",
        config,
        steps=1,
        warmup=0,
        device=torch.device("cpu"),
        precision="32-true",
        batch=1,
        size=64,
    )
    assert result.batch == 1 and result.size == 64
    assert result.samples_per_second > 0 and result.step_tflop > 0
    assert result.mfu is None and result.peak_memory_gib == 0.0
