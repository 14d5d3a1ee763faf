import logging
import time
from collections.abc import Callable
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from fusion.run.budget import TimeBudget
from fusion.run.optim import WarmupCosineSchedule


class FakeTrainer(SimpleNamespace):
    """Like Lightning's trainer, ``max_epochs`` is the fit loop's: a plan overwrites both."""

    @property
    def max_epochs(self) -> int | None:
        return self.fit_loop.max_epochs


def fake_trainer(max_epochs: int = 100, batches: int = 15, val_batches: int = 3, rank_zero=None):
    """A trainer with what TimeBudget reads; ``rank_zero`` stands for what rank 0 broadcasts."""
    schedule = WarmupCosineSchedule(warmup_steps=150, total_steps=1500)
    broadcast = (lambda obj, src=0: obj) if rank_zero is None else rank_zero
    return FakeTrainer(
        strategy=SimpleNamespace(broadcast=broadcast),
        num_training_batches=batches,
        val_dataloaders=object() if val_batches else None,
        num_val_batches=[val_batches],
        current_epoch=0,
        max_steps=-1,
        accumulate_grad_batches=1,
        precision="32-true",
        fit_loop=SimpleNamespace(max_epochs=max_epochs),
        lr_scheduler_configs=[SimpleNamespace(scheduler=SimpleNamespace(lr_lambdas=[schedule]))],
    ), schedule


def planned(budget: TimeBudget, trainer, elapsed: float, step: float, validation: float) -> int:
    if budget.start is None:
        budget.on_fit_start(trainer, None)  # notes the configured cap
    budget.start = time.monotonic() - elapsed
    budget.step_seconds, budget.validation_seconds = step, validation
    budget.plan(trainer, steps_done_this_epoch=4)
    return budget.planned_epochs


def test_plan_fits_epochs_and_schedule_to_the_budget() -> None:
    trainer, schedule = fake_trainer()
    # 600 s budget, 60 s gone; this epoch needs 11 * 2 + 10 = 32 s more; each next one 40 s.
    epochs = planned(TimeBudget(minutes=10), trainer, elapsed=60, step=2.0, validation=10.0)
    assert epochs == 1 + (600 - 60 - 32) // 40 == 13
    assert trainer.fit_loop.max_epochs == 13
    assert schedule.total_steps == 13 * 15
    assert schedule.warmup_steps == round(0.1 * 13 * 15)  # the warm-up keeps its share


def test_a_slower_machine_gets_fewer_epochs_and_the_cap_holds() -> None:
    fast = planned(TimeBudget(10), fake_trainer()[0], elapsed=30, step=0.5, validation=3)
    slow = planned(TimeBudget(10), fake_trainer()[0], elapsed=30, step=6.0, validation=30)
    assert slow < fast
    assert planned(TimeBudget(10), fake_trainer(max_epochs=5)[0], 30, 0.5, 3) == 5
    # a machine too slow for a single epoch still runs one
    assert planned(TimeBudget(1), fake_trainer()[0], elapsed=50, step=30.0, validation=60) == 1


def test_bad_budgets_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        TimeBudget(0)
    with pytest.raises(ValueError, match="calibration_steps"):
        TimeBudget(1, calibration_steps=0)


def test_first_epoch_replans_with_its_real_time() -> None:
    budget = TimeBudget(10)
    trainer, schedule = fake_trainer()
    assert planned(budget, trainer, elapsed=60, step=2.0, validation=10.0) == 13
    # The first epoch really took 80 s (figures, checkpoints), and 100 s of the budget are gone.
    budget.start = time.monotonic() - 100
    budget._epoch_start = time.monotonic() - 80
    budget.on_train_epoch_end(trainer, None)
    assert budget.planned_epochs == trainer.fit_loop.max_epochs == 1 + 500 // 80
    assert schedule.total_steps == 7 * 15
    # Later epochs only check that the run keeps to its budget.
    trainer.current_epoch = 1
    budget.on_train_epoch_end(trainer, None)
    assert budget.planned_epochs == 7


def test_every_process_follows_the_plan_of_rank_zero() -> None:
    """In a distributed run the processes time themselves apart; rank 0's plan counts."""
    rank_zero_plan = {int: 4, bool: False}  # what rank 0 broadcasts, by type of the decision
    trainer, schedule = fake_trainer(rank_zero=lambda obj, src=0: rank_zero_plan[type(obj)])
    budget = TimeBudget(10)
    assert planned(budget, trainer, elapsed=60, step=2.0, validation=10.0) == 4  # alone: 13
    assert trainer.fit_loop.max_epochs == 4 and schedule.total_steps == 4 * 15
    # This process is far behind its budget, rank 0 is not: it does not stop alone.
    budget._replanned = True
    budget.start = time.monotonic() - 590
    budget._epoch_start = time.monotonic() - 80
    budget.on_train_epoch_end(trainer, None)
    assert not getattr(trainer, "should_stop", False)


def test_the_cap_is_the_configured_one_not_the_last_plan() -> None:
    budget = TimeBudget(10)
    trainer, schedule = fake_trainer(max_epochs=20)
    assert planned(budget, trainer, elapsed=60, step=2.0, validation=10.0) == 13
    assert budget.max_epochs_cap == 20 and trainer.max_epochs == 13
    # The first epoch took 20 s with 60 s gone: 27 more fit, but the config allows 20 in all.
    budget.start = time.monotonic() - 60
    budget._epoch_start = time.monotonic() - 20
    budget.on_train_epoch_end(trainer, None)
    assert budget.planned_epochs == trainer.max_epochs == 20
    assert schedule.total_steps == 20 * 15


# -- with a real Lightning trainer and a fake clock ------------------------------------------
# (Lightning's hints about data loader workers and small epochs are beside the point here.)
pytestmark = pytest.mark.filterwarnings(
    "ignore::lightning.fabric.utilities.warnings.PossibleUserWarning"
)
BATCHES = 4  # training batches per epoch: 8 samples in batches of 2
VAL_SECONDS_PER_BATCH = 2.0


class FakeClock:
    """Stands for the `time` module in `fusion.run.budget`; only the model moves it forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr("fusion.run.budget.time", fake)
    return fake


class TimedModel(L.LightningModule):
    """A linear model whose steps take ``step_seconds(epoch, batch_idx)`` of the fake clock."""

    def __init__(
        self,
        clock: FakeClock,
        step_seconds: Callable[[int, int], float],
        schedule: WarmupCosineSchedule | None = None,
    ) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)
        self.clock = clock
        self.step_seconds = step_seconds
        self.schedule = schedule
        self.epochs_run = 0
        self.seen: list[tuple[int, int, int, int | None]] = []  # epoch, batch, max_epochs, steps

    def on_train_epoch_start(self) -> None:
        self.epochs_run += 1

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock.now += self.step_seconds(self.current_epoch, batch_idx)
        total = self.schedule.total_steps if self.schedule else None
        self.seen.append((self.current_epoch, batch_idx, self.trainer.max_epochs, total))
        x, y = batch
        return F.mse_loss(self.layer(x), y)

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.clock.now += VAL_SECONDS_PER_BATCH

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.SGD(self.parameters(), lr=0.1)
        if self.schedule is None:
            return {"optimizer": optimizer}
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def max_epochs_at(self, epoch: int, batch_idx: int) -> int:
        """The trainer's ``max_epochs`` when that step ran."""
        return next(m for e, b, m, _ in self.seen if (e, b) == (epoch, batch_idx))


def loader(samples: int) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(samples, 2, generator=generator), torch.randn(samples, 1))
    return DataLoader(data, batch_size=2)


def fit(model: TimedModel, max_epochs: int | None, validate: bool = False) -> TimeBudget:
    """Fit under a one-minute budget planned after two timed steps."""
    budget = TimeBudget(minutes=1, calibration_steps=2, overrun=0.1)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        callbacks=[budget],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        log_every_n_steps=1,
    )
    trainer.fit(model, loader(2 * BATCHES), loader(4) if validate else None)
    return budget


def slow_calibration(epoch: int, batch_idx: int) -> float:
    """The two timed steps take 5 s, all others 1 s (warm-up costs that do not last)."""
    return 5.0 if epoch == 0 and batch_idx in (1, 2) else 1.0


@pytest.mark.parametrize("max_epochs", [20, -1, None])
def test_the_replan_raises_the_epochs_when_the_first_epoch_is_fast(
    clock: FakeClock, max_epochs: int | None
) -> None:
    model = TimedModel(clock, slow_calibration)
    budget = fit(model, max_epochs)
    # The plan at 11 s: 5 s steps, 20 s epochs, 5 s left of this one -> 1 + (60-11-5) // 20 = 3.
    assert model.max_epochs_at(0, 3) == 3
    # The first epoch took 12 s: 1 + (60 - 12) // 12 = 5 epochs, and 5 are trained.
    assert budget.planned_epochs == model.trainer.max_epochs == 5
    assert model.epochs_run == model.trainer.current_epoch == 5
    assert clock.now == 12 + 4 * 4


@pytest.mark.parametrize(("max_epochs", "trained"), [(4, 4), (2, 2)])
def test_the_configured_max_epochs_caps_both_plans(
    clock: FakeClock, max_epochs: int, trained: int
) -> None:
    """The budget would allow 3, then 5 epochs; the config's cap holds after the first plan."""
    model = TimedModel(clock, slow_calibration)
    budget = fit(model, max_epochs)
    assert model.max_epochs_at(0, 3) == min(3, max_epochs)
    assert budget.planned_epochs == model.trainer.max_epochs == trained
    assert model.epochs_run == trained
    assert budget.max_epochs_cap == max_epochs


def test_the_replan_lowers_the_epochs_when_the_first_epoch_is_slow(clock: FakeClock) -> None:
    # The last step of the first epoch takes 20 s (as figures and checkpoints would).
    model = TimedModel(clock, lambda epoch, batch_idx: 20.0 if (epoch, batch_idx) == (0, 3) else 1)
    budget = fit(model, max_epochs=20)
    # The plan at 3 s: 1 s steps, 4 s epochs -> 1 + (60 - 3 - 1) // 4 = 15 epochs.
    assert model.max_epochs_at(0, 3) == 15
    # The first epoch took 23 s: 1 + (60 - 23) // 23 = 2 epochs.
    assert budget.planned_epochs == model.trainer.max_epochs == 2
    assert model.epochs_run == 2


def test_the_learning_rate_schedule_follows_both_plans(clock: FakeClock) -> None:
    schedule = WarmupCosineSchedule(warmup_steps=10, total_steps=100)
    model = TimedModel(clock, slow_calibration, schedule)
    budget = fit(model, max_epochs=20, validate=True)
    # The sanity check ran 1 of 2 validation batches in 2 s: a validation takes 4 s. The plan at
    # 13 s: 24 s epochs, 9 s left of this one -> 1 + (60 - 13 - 9) // 24 = 2 epochs of 4 steps.
    # The first epoch took 16 s with its validation, 18 s are gone: 1 + 42 // 16 = 3 epochs.
    totals = [(epoch, batch_idx, steps) for epoch, batch_idx, _, steps in model.seen]
    assert totals[:4] == [(0, 0, 100), (0, 1, 100), (0, 2, 100), (0, 3, 8)]
    assert {steps for epoch, _, steps in totals if epoch > 0} == {12}
    assert budget.planned_epochs == model.epochs_run == 3
    assert model.trainer.global_step == schedule.total_steps == 12


def test_a_run_behind_its_plan_stops_early(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # Both plans give 15 epochs of 4 s; from the second epoch on, steps take 6 s (a busy
    # machine). After epoch 2 (52 s) another 24 s epoch would end at 76 s > 60 s * 1.1.
    model = TimedModel(clock, lambda epoch, batch_idx: 1.0 if epoch == 0 else 6.0)
    with caplog.at_level(logging.INFO):
        budget = fit(model, max_epochs=20)
    assert budget.planned_epochs == 15
    assert model.epochs_run == 3
    assert clock.now == 4 + 2 * 24
    assert "TimeBudget: behind plan, stopping after epoch 2" in caplog.text
    assert "would end at 1.3 of 1.0 min" in caplog.text
