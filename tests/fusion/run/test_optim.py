import math

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from fusion.run.optim import (
    StepDecaySchedule,
    WarmupCosineSchedule,
    scaled_learning_rate,
    warmup_cosine,
    weight_decay_groups,
)
from tests.fusion.tasks.test_pretrain import batch, tiny_task


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


class _ListData(L.LightningDataModule):
    """Ten training batches of the tiny task's batch, and a batch size to scale the lr."""

    batch_size = 4

    def train_dataloader(self) -> DataLoader:
        return DataLoader([batch()] * 10, batch_size=None)


class _CaptureSchedule(L.Callback):
    """Keeps the schedule the task configured and stops before any training step."""

    schedule = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.schedule = trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
        trainer.should_stop = True


def schedule_factors(steps: list[int], **trainer_args) -> tuple[list[float], object]:
    """The task's learning-rate factors at ``steps``, as a real Trainer configures them."""
    capture = _CaptureSchedule()
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[capture],
        **trainer_args,
    )
    trainer.fit(tiny_task(warmup_epochs=2), datamodule=_ListData())
    return [capture.schedule(step) for step in steps], capture.schedule


@pytest.mark.parametrize(
    ("trainer_args", "total"),
    [
        (dict(max_steps=200), 200),  # max_epochs becomes -1 in Lightning
        (dict(max_epochs=5), 50),
        (dict(max_epochs=5, max_steps=30), 30),  # the earlier end wins
        (dict(max_epochs=5, accumulate_grad_batches=2), 25),
    ],
)
def test_schedule_counts_real_steps_per_epoch(trainer_args: dict, total: int) -> None:
    steps_per_epoch = 10 // trainer_args.get("accumulate_grad_batches", 1)
    warmup = 2 * steps_per_epoch  # warmup_epochs=2
    factors, schedule = schedule_factors([0, warmup - 1, warmup, total - 1, total], **trainer_args)
    assert (schedule.warmup_steps, schedule.total_steps) == (warmup, total)
    assert factors[0] == pytest.approx(1 / warmup)
    assert factors[1] == pytest.approx(1.0)
    assert factors[2] == pytest.approx(1.0)
    last = 0.5 * (1 + math.cos(math.pi * (total - 1 - warmup) / (total - warmup)))
    assert factors[3] == pytest.approx(last) and 0 < last < 0.03
    assert factors[4] == pytest.approx(0.0)


def test_schedules_refit_to_a_new_length() -> None:
    cosine = WarmupCosineSchedule(warmup_steps=10, total_steps=100)
    cosine.fit_to(40)
    assert (cosine.warmup_steps, cosine.total_steps) == (4, 40)
    assert cosine(3) == pytest.approx(1.0) and cosine(40) == pytest.approx(0.0)
    assert cosine(22) == pytest.approx(0.5)
    steps = StepDecaySchedule(total_steps=100)
    assert [steps(s) for s in (0, 89, 90, 94, 95, 99)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01]
    )
    steps.fit_to(20)
    assert [steps(s) for s in (17, 18, 19)] == pytest.approx([1, 0.1, 0.01])
