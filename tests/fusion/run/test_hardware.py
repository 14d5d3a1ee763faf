"""The device and precision rule, checked against docs/training.md's table, not its own code.

The machines are described as the three CPU classes met in practice, each by an excerpt of its
``/proc/cpuinfo``: AMX (bf16 several times faster than float32), AVX512-BF16 (native bf16
without AMX) and AVX2 only (bf16 emulated, about 200x slower: never bf16), plus AVX-512 without
BF16 and CUDA GPUs with and without bf16.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest
import torch

from fusion.run.hardware import (
    Hardware,
    choose_precision,
    cpu_flags,
    detect_hardware,
    hardware_from_cpu_flags,
    matmul_gflops,
)

# Excerpts of /proc/cpuinfo (first processor, shortened to the lines the rule could look at).
SAPPHIRE_RAPIDS = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts \
acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon \
pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq \
dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 \
x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch \
fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap \
avx512ifma clflushopt clwb intel_pt avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 \
xsaves split_lock_detect avx_vnni avx512_bf16 wbnoinvd dtherm ida arat pln pts hwp avx512vbmi \
umip pku ospke waitpkg avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme \
avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b enqcmd fsrm md_clear \
serialize tsxldtrk pconfig arch_lbr ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d \
arch_capabilities
vmx flags\t: vnmi preemption_timer posted_intr invvpid ept_x_only ept_ad ept_1gb tsc_offset
bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass swapgs eibrs_pbrsb
"""

EPYC_GENOA = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx \
fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good amd_lbr_v2 \
nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 pcid \
sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic \
cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core \
fsgsbase bmi1 avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma \
clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 \
clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin cppc arat npt lbrv svm_lock nrip_save \
avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg \
avx512_vpopcntdq la57 rdpid overflow_recov succor smca fsrm flush_l1d
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso
"""

CASCADE_LAKE = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx \
fxsr sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc pni pclmulqdq ssse3 fma cx16 \
pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm \
3dnowprefetch fsgsbase bmi1 hle avx2 smep bmi2 erms invpcid rtm mpx avx512f avx512dq rdseed \
adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves arat pku \
ospke avx512_vnni md_clear arch_capabilities
"""

HASWELL = """\
processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 63
model name\t: Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts \
acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon pebs \
bts rep_good nopl xtopology nonstop_tsc aperfmperf eagerfpu pni pclmulqdq dtes64 monitor ds_cpl \
vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 x2apic movbe popcnt \
tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm epb tpr_shadow vnmi flexpriority ept \
vpid fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid cqm xsaveopt cqm_llc cqm_occup_llc \
dtherm ida arat pln pts
"""

CPUS = {
    "sapphire_rapids": SAPPHIRE_RAPIDS,
    "epyc_genoa": EPYC_GENOA,
    "cascade_lake": CASCADE_LAKE,
    "haswell": HASWELL,
}


def machine(cpu: str, gpu: str | None = None) -> Hardware:
    """A machine with one of the CPUs above and optionally a GPU (``"ampere"``, ``"volta"``)."""
    flags = cpu_flags(CPUS[cpu])
    return hardware_from_cpu_flags(flags, cuda=gpu is not None, cuda_bf16=gpu == "ampere")


# ---------------------------------------------------------------------------------------------
# Reading /proc/cpuinfo


@pytest.mark.parametrize(
    ("cpu", "capability", "amx", "avx512_bf16"),
    [
        ("sapphire_rapids", "AVX512", True, True),
        ("epyc_genoa", "AVX512", False, True),
        ("cascade_lake", "AVX512", False, False),
        ("haswell", "AVX2", False, False),
    ],
)
def test_cpuinfo_excerpts_are_read(cpu: str, capability: str, amx: bool, avx512_bf16: bool) -> None:
    read = machine(cpu)
    assert (read.cpu_capability, read.amx, read.avx512_bf16) == (capability, amx, avx512_bf16)
    assert not read.cuda and not read.cuda_bf16


def test_cpuinfo_flags_line_only() -> None:
    flags = cpu_flags(SAPPHIRE_RAPIDS)
    assert {"amx_bf16", "amx_tile", "avx512_bf16", "avx2"} <= flags
    assert "ept_x_only" not in flags  # from the "vmx flags" line, not the CPU's flags
    assert "spectre_v1" not in flags  # from "bugs"
    # Only the first processor counts; a text without a flags line has none.
    second = "processor\t: 1\nflags\t\t: fpu sse avx2 fma avx512_bf16\n"
    assert "avx512_bf16" not in cpu_flags(HASWELL + "\n" + second)
    assert cpu_flags("processor\t: 0\nmodel name\t: ARM\nFeatures\t: fp asimd\n") == frozenset()


def test_amx_needs_its_bf16_unit() -> None:
    # AMX tiles with only the int8 unit do not multiply bf16.
    assert not hardware_from_cpu_flags({"avx2", "fma", "amx_tile", "amx_int8"}).amx
    assert hardware_from_cpu_flags({"avx2", "fma", "amx_tile", "amx_bf16"}).amx
    # AVX-512 without BW/VL/DQ is not torch's AVX512 level; no AVX2 or FMA is DEFAULT.
    assert hardware_from_cpu_flags({"avx2", "fma", "avx512f"}).cpu_capability == "AVX2"
    assert hardware_from_cpu_flags({"sse4_2", "avx"}).cpu_capability == "DEFAULT"
    # A GPU's bf16 means nothing without the GPU.
    assert not hardware_from_cpu_flags({"avx2"}, cuda=False, cuda_bf16=True).cuda_bf16


# ---------------------------------------------------------------------------------------------
# The decision table of docs/training.md ("Device, precision and the time budget")


@pytest.mark.parametrize(
    ("cpu", "gpu", "device", "precision"),
    [
        ("haswell", "ampere", "gpu", "bf16-mixed"),  # CUDA GPU with bf16
        ("sapphire_rapids", "ampere", "gpu", "bf16-mixed"),  # the GPU wins over AMX
        ("haswell", "volta", "gpu", "16-mixed"),  # other CUDA GPU
        ("sapphire_rapids", "volta", "gpu", "16-mixed"),
        ("sapphire_rapids", None, "cpu", "bf16-mixed"),  # AMX
        ("epyc_genoa", None, "cpu", "bf16-mixed"),  # AVX512-BF16, no AMX
        ("cascade_lake", None, "cpu", "32-true"),  # AVX-512 without BF16
        ("haswell", None, "cpu", "32-true"),  # AVX2 only: bf16 emulated
    ],
)
@pytest.mark.parametrize("accelerator", [None, "auto"])
def test_decision_table(
    cpu: str, gpu: str | None, device: str, precision: str, accelerator: str | None
) -> None:
    choice = choose_precision(machine(cpu, gpu), accelerator)
    assert (choice.accelerator, choice.precision) == (device, precision)


@pytest.mark.parametrize("capability", ["DEFAULT", "AVX2", "AVX512"])
@pytest.mark.parametrize("accelerator", [None, "auto", "cpu", "CPU"])
@pytest.mark.parametrize("gpu", [False, True])
def test_cpu_without_bf16_units_never_gets_bf16(
    capability: str, accelerator: str | None, gpu: bool
) -> None:
    cpu = Hardware(cuda=gpu, cuda_bf16=gpu, cpu_capability=capability, amx=False, avx512_bf16=False)
    choice = choose_precision(cpu, accelerator)
    if choice.accelerator == "cpu":
        assert choice.precision == "32-true"
    else:  # only a GPU machine not told to use its CPU
        assert gpu and accelerator in (None, "auto")


def test_every_machine_and_request() -> None:
    """The whole table at once: which unit runs, and bf16 exactly where that unit has it."""
    for cuda, cuda_bf16, amx, avx512_bf16, capability, accelerator in itertools.product(
        (False, True),
        (False, True),
        (False, True),
        (False, True),
        ("AVX2", "AVX512"),
        (None, "auto", "cpu", "gpu", "cuda"),
    ):
        if cuda_bf16 and not cuda:
            continue
        hw = Hardware(cuda, cuda_bf16, capability, amx, avx512_bf16)
        if accelerator in ("gpu", "cuda") and not cuda:
            with pytest.raises(ValueError):
                choose_precision(hw, accelerator)
            continue
        choice = choose_precision(hw, accelerator)
        on_gpu = cuda and accelerator != "cpu"
        native_bf16 = cuda_bf16 if on_gpu else (amx or avx512_bf16)
        assert choice.accelerator == ("gpu" if on_gpu else "cpu"), hw
        expected = "bf16-mixed" if native_bf16 else ("16-mixed" if on_gpu else "32-true")
        assert choice.precision == expected, (hw, accelerator)


# ---------------------------------------------------------------------------------------------
# Explicit accelerator


@pytest.mark.parametrize(
    ("cpu", "precision"),
    [("sapphire_rapids", "bf16-mixed"), ("epyc_genoa", "bf16-mixed"), ("haswell", "32-true")],
)
def test_cpu_request_on_a_gpu_machine_uses_the_cpu_rule(cpu: str, precision: str) -> None:
    choice = choose_precision(machine(cpu, "ampere"), "cpu")
    assert (choice.accelerator, choice.precision) == ("cpu", precision)


@pytest.mark.parametrize("accelerator", ["gpu", "cuda", "GPU", "Cuda"])
def test_gpu_request_on_a_gpu_machine(accelerator: str) -> None:
    assert choose_precision(machine("haswell", "volta"), accelerator).accelerator == "gpu"


def test_impossible_requests_are_refused() -> None:
    for accelerator in ("gpu", "cuda"):
        with pytest.raises(ValueError, match=f"'{accelerator}'.*no CUDA GPU"):
            choose_precision(machine("sapphire_rapids"), accelerator)
    for accelerator in ("mps", "tpu", "xla"):
        with pytest.raises(ValueError, match=f"'{accelerator}'"):
            choose_precision(machine("sapphire_rapids", "ampere"), accelerator)


# ---------------------------------------------------------------------------------------------
# The reason that the run prints


@pytest.mark.parametrize(
    ("cpu", "gpu", "names", "must_not_name"),
    [
        ("sapphire_rapids", None, ["CPU", "AMX"], ["emulated"]),
        ("epyc_genoa", None, ["CPU", "AVX512-BF16"], ["emulated", "AMX (native"]),
        ("cascade_lake", None, ["CPU", "AVX512", "emulated"], ["AMX", "BF16"]),
        ("haswell", None, ["CPU", "AVX2", "emulated"], ["AMX", "AVX512", "BF16"]),
        ("haswell", "ampere", ["CUDA", "bf16"], ["emulated", "float16"]),
        ("haswell", "volta", ["CUDA", "float16"], ["emulated"]),
    ],
)
def test_reason_names_the_class(
    cpu: str, gpu: str | None, names: list[str], must_not_name: list[str]
) -> None:
    reason = choose_precision(machine(cpu, gpu)).reason
    for name in names:
        assert name in reason
    for name in must_not_name:
        assert name not in reason


def test_reason_reads_as_in_the_docs() -> None:
    # docs/training.md: "Precision: 32-true on cpu, chosen from the hardware: CPU with AVX2 (no
    # native bf16)"
    assert choose_precision(machine("haswell")).reason.startswith("CPU with AVX2 (no native bf16)")


# ---------------------------------------------------------------------------------------------
# This machine


@pytest.mark.parametrize(
    ("cuda", "cuda_bf16", "capability", "amx", "avx512_bf16", "expected"),
    [
        (False, False, "AVX2", False, False, ("cpu", "32-true")),
        (False, False, "AVX512", True, True, ("cpu", "bf16-mixed")),
        (False, False, "AVX512", False, True, ("cpu", "bf16-mixed")),
        (True, True, "AVX2", False, False, ("gpu", "bf16-mixed")),
        (True, False, "AVX512", True, True, ("gpu", "16-mixed")),
    ],
)
def test_default_decision_reads_torch(
    monkeypatch: pytest.MonkeyPatch,
    cuda: bool,
    cuda_bf16: bool,
    capability: str,
    amx: bool,
    avx512_bf16: bool,
    expected: tuple[str, str],
) -> None:
    """Without a hardware record, the rule decides on what torch reports about this machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: cuda_bf16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    choice = choose_precision()
    assert (choice.accelerator, choice.precision) == expected


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs Linux /proc/cpuinfo")
def test_detect_hardware_agrees_with_proc_cpuinfo() -> None:
    """torch (CPUID) and the kernel's flags describe this CPU the same way."""
    detected = detect_hardware()
    described = hardware_from_cpu_flags(cpu_flags(Path("/proc/cpuinfo").read_text()))
    assert (detected.amx, detected.avx512_bf16) == (described.amx, described.avx512_bf16)
    if "ATEN_CPU_CAPABILITY" not in os.environ:  # that variable lowers torch's level on purpose
        assert detected.cpu_capability == described.cpu_capability


def test_matmul_gflops_is_positive() -> None:
    assert matmul_gflops(torch.float32, size=64, seconds=0.01) > 0


@pytest.mark.slow
def test_the_rule_avoids_slow_bf16_on_this_cpu() -> None:
    """Timing: where the rule picks bf16 on this CPU, bf16 is not much slower than float32."""
    choice = choose_precision(accelerator="cpu")
    # One thread: with several on busy shared cores, each product can wait a whole time slice
    # for a preempted thread, and both dtypes then measure the scheduler rather than the CPU.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        speed = {
            dtype: max(matmul_gflops(dtype, size=256, seconds=0.2) for _ in range(3))
            for dtype in (torch.float32, torch.bfloat16)
        }
    finally:
        torch.set_num_threads(threads)
    ratio = speed[torch.bfloat16] / speed[torch.float32]
    if choice.precision == "bf16-mixed":
        assert ratio > 0.5, f"{choice.reason}, yet bf16 runs at {ratio:.2f}x float32"
    else:
        assert ratio < 1.5, f"{choice.reason}, yet bf16 runs at {ratio:.2f}x float32"
