import torch

from benchmarks.backbone import measure, precisions_to_measure, visibility_draws
from fusion.run.hardware import PrecisionChoice


def test_bf16_is_measured_only_where_training_uses_it() -> None:
    native = PrecisionChoice("cpu", "bf16-mixed", "AVX512-BF16")
    emulated = PrecisionChoice("cpu", "32-true", "AVX2 only")
    assert precisions_to_measure(native) == ["fp32", "bf16"]
    assert precisions_to_measure(emulated) == ["fp32"]


def test_cases_alternate_order_and_warmup_is_not_timed() -> None:
    calls: list[str] = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = measure(cases, repeats=3, warmup=1)
    assert calls == list("abccbaabccba")
    assert {name: len(values) for name, values in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_visibility_draws_show_half_of_the_tokens_and_differ() -> None:
    torch.manual_seed(0)
    first, second = visibility_draws(2)
    for draw in (first, second):
        visible = torch.stack(list(draw.values()), dim=1)  # [B, M, L]
        assert visible.sum(dim=(1, 2)).tolist() == [512] * visible.shape[0]
    assert any(not torch.equal(first[name], second[name]) for name in first)
