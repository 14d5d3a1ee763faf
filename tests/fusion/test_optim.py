import math

import pytest
import torch
from torch import nn

from fusion.optim import scaled_learning_rate, warmup_cosine, weight_decay_groups
from tests.fusion.tasks.test_pretrain import tiny_task


def test_scaled_learning_rate() -> None:
    assert scaled_learning_rate(1e-4, 40) == pytest.approx(1.5625e-5)


def test_warmup_then_cosine() -> None:
    factors = [warmup_cosine(step, warmup_steps=4, total_steps=12) for step in range(12)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0)
    assert factors[8] == pytest.approx(0.5)
    assert all(a > b for a, b in zip(factors[4:], factors[5:], strict=False))
    assert warmup_cosine(12, 4, 12) == pytest.approx(0.0)
    assert warmup_cosine(8, 4, 12, min_factor=0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert math.isclose(warmup_cosine(100, 4, 12), 0.0, abs_tol=1e-12)


def test_no_decay_on_norms_biases_and_learned_tokens() -> None:
    task = tiny_task()
    decay, no_decay = weight_decay_groups(task, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in task.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "backbone.fusion_tokens" in skipped and "backbone.mask_token" in skipped
    assert "decoders.s1.modality_embedding" in skipped
    assert any(n.endswith("norm.weight") for n in skipped)
    assert any(n.endswith(".bias") for n in skipped)
    assert all(task.get_parameter(n).ndim >= 2 for n in decayed)
    assert "backbone.blocks.0.attn.qkv.weight" in decayed
    assert len(skipped) + len(decayed) == len(list(task.parameters()))


def test_frozen_parameters_are_left_out() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    model[0].weight.requires_grad_(False)
    decay, no_decay = weight_decay_groups(model, 0.1)
    assert len(decay["params"]) == 1 and len(no_decay["params"]) == 2
    assert torch.equal(decay["params"][0], model[1].weight)
