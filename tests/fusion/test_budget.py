import time
from types import SimpleNamespace

import pytest

from fusion.budget import TimeBudget
from fusion.optim import WarmupCosineSchedule


def fake_trainer(max_epochs: int = 100, batches: int = 15, val_batches: int = 3, rank_zero=None):
    """A trainer with what TimeBudget reads; ``rank_zero`` stands for what rank 0 broadcasts."""
    schedule = WarmupCosineSchedule(warmup_steps=150, total_steps=1500)
    broadcast = (lambda obj, src=0: obj) if rank_zero is None else rank_zero
    return SimpleNamespace(
        strategy=SimpleNamespace(broadcast=broadcast),
        num_training_batches=batches,
        val_dataloaders=object() if val_batches else None,
        num_val_batches=[val_batches],
        current_epoch=0,
        max_epochs=max_epochs,
        max_steps=-1,
        accumulate_grad_batches=1,
        precision="32-true",
        fit_loop=SimpleNamespace(max_epochs=max_epochs),
        lr_scheduler_configs=[SimpleNamespace(scheduler=SimpleNamespace(lr_lambdas=[schedule]))],
    ), schedule


def planned(budget: TimeBudget, trainer, elapsed: float, step: float, validation: float) -> int:
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
