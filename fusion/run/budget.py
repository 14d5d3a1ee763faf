"""Fit a run to a wall-clock budget: time the first steps, then plan the epochs that fit.

CPUs differ by more than an order of magnitude in what one training step costs (a 2-core
machine with AMX tiles in bf16 against a 2-core AVX2 machine in float32), so a demo that
fixes its number of epochs takes ten minutes on one and hours on the other. `TimeBudget`
instead times a few training steps and the validation pass, derives how many epochs fit the
budget, sets the trainer's ``max_epochs`` to that, and stretches or shrinks the learning-rate
schedule (`fusion.run.optim.LearningRateSchedule`) to the planned number of steps, so that warm-up
and decay keep their shape on every machine.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timedelta

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class TimeBudget(L.Callback):
    """Plans the number of epochs from measured step and validation times.

    The budget counts from the start of fitting (the sanity validation included). After
    ``calibration_steps`` timed training steps (the very first step, which pays one-time
    costs, is not timed) the callback prints its plan: precision, seconds per step, seconds
    per validation, epochs x steps, and the expected end. At the end of the first epoch it
    plans once more from that epoch's measured time, which includes validation, figures and
    checkpoints; that re-plan may raise the epochs as well as lower them. The trainer's
    ``max_epochs`` as configured, noted at the start of fitting before the first plan
    overwrites it, is an upper bound on both plans (``-1`` sets none; Lightning reads ``None``
    as 1000 epochs unless ``max_steps`` is set). At least one epoch always runs. If the run
    falls behind its plan (a busy machine), it stops at the end of the epoch after which the
    next would end more than ``overrun`` past the budget.

    Args:
        minutes: The wall-clock budget of the fit.
        calibration_steps: Training steps timed before planning.
        overrun: Share of the budget the run may exceed before it stops early.
    """

    def __init__(self, minutes: float = 10.0, calibration_steps: int = 3, overrun: float = 0.1):
        if minutes <= 0:
            raise ValueError(f"the time budget must be positive, got {minutes} minutes")
        if calibration_steps < 1:
            raise ValueError(f"calibration_steps must be at least 1, got {calibration_steps}")
        self.budget = minutes * 60.0
        self.calibration_steps = calibration_steps
        self.overrun = overrun
        self.start: float | None = None
        self.validation_seconds = 0.0
        self.step_seconds: float | None = None
        self.planned_epochs: int | None = None
        self.max_epochs_cap: int | None = None
        self._sanity_start: float | None = None
        self._validation_start: float | None = None
        self._timing_start: float | None = None
        self._steps_seen = 0
        self._epoch_start: float | None = None
        self._replanned = False

    # -- measuring --------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the clock and note the configured cap on the epochs.

        The cap is read here, once: each plan writes the trainer's ``max_epochs``, so reading
        it again later would take the previous plan for the config's limit.
        """
        self.start = time.monotonic()
        cap = trainer.max_epochs
        self.max_epochs_cap = cap if cap is not None and cap > 0 else None

    def on_sanity_check_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Time the sanity validation."""
        self._sanity_start = time.monotonic()

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Estimate a whole validation pass from the sanity check."""
        if self._sanity_start is None:
            return
        elapsed = time.monotonic() - self._sanity_start  # a clock may well read 0.0 at the start
        checked = sum(trainer.num_sanity_val_batches)
        total = sum(trainer.num_val_batches)
        if checked and math.isfinite(total):
            self.validation_seconds = elapsed * total / checked

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Time real validation passes too."""
        self._validation_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the latest measured validation time."""
        if not trainer.sanity_checking and self._validation_start is not None:
            self.validation_seconds = time.monotonic() - self._validation_start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Note when the epoch began."""
        self._epoch_start = time.monotonic()

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Time the calibration steps, then plan."""
        if self.planned_epochs is not None:
            return
        self._steps_seen += 1
        now = time.monotonic()
        if self._steps_seen == 1:
            self._timing_start = now
            return
        if self._steps_seen - 1 < self.calibration_steps:
            return
        self.step_seconds = (now - self._timing_start) / (self._steps_seen - 1)
        self.plan(trainer, steps_done_this_epoch=batch_idx + 1)

    # -- planning ---------------------------------------------------------------------------
    def plan(self, trainer: L.Trainer, steps_done_this_epoch: int) -> None:
        """First plan, from the timed steps: set ``max_epochs``, refit the schedules, print."""
        batches = trainer.num_training_batches
        if not math.isfinite(batches):
            rank_zero_info("TimeBudget: the training loader has no length; no plan is made")
            self.planned_epochs = -1
            return
        validates = trainer.val_dataloaders is not None and sum(trainer.num_val_batches) > 0
        validation = self.validation_seconds if validates else 0.0
        epoch_seconds = batches * self.step_seconds + validation
        this_epoch_rest = (batches - steps_done_this_epoch) * self.step_seconds + validation
        self.set_epochs(trainer, epoch_seconds, this_epoch_rest)
        steps = f"{self.step_seconds:.2f} s per training step, {validation:.1f} s per validation"
        self.report(trainer, "TimeBudget plan", steps, epoch_seconds, this_epoch_rest)

    def set_epochs(self, trainer: L.Trainer, epoch_seconds: float, this_epoch_rest: float) -> None:
        """The epochs that fit what is left of the budget; the schedules follow.

        The result, capped by the configured ``max_epochs`` (`max_epochs_cap`), may be more or
        fewer than the previous plan; it becomes the trainer's ``max_epochs``.

        Args:
            trainer: The trainer whose epochs and learning-rate schedules are set.
            epoch_seconds: Expected seconds of one whole epoch, validation included.
            this_epoch_rest: Expected seconds until the current epoch ends.
        """
        elapsed = time.monotonic() - self.start
        more_epochs = math.floor((self.budget - elapsed - this_epoch_rest) / epoch_seconds)
        epochs = trainer.current_epoch + 1 + max(0, more_epochs)
        if self.max_epochs_cap is not None:
            epochs = min(epochs, self.max_epochs_cap)
        # Processes of a distributed run time themselves apart; rank 0's plan is everyone's,
        # else they would run different epochs and learning-rate schedules (and hang).
        epochs = trainer.strategy.broadcast(epochs)
        self.planned_epochs = epochs
        trainer.fit_loop.max_epochs = epochs
        for config in trainer.lr_scheduler_configs:
            for schedule in getattr(config.scheduler, "lr_lambdas", []):
                if hasattr(schedule, "fit_to"):
                    schedule.fit_to(self.total_steps(trainer))

    def total_steps(self, trainer: L.Trainer) -> int:
        """Optimizer steps of the planned epochs (``max_steps`` permitting)."""
        steps = self.planned_epochs * math.ceil(
            trainer.num_training_batches / trainer.accumulate_grad_batches
        )
        if trainer.max_steps is not None and trainer.max_steps > 0:
            steps = min(steps, trainer.max_steps)
        return steps

    def report(
        self, trainer: L.Trainer, what: str, timing: str, epoch_seconds: float, rest: float
    ) -> None:
        """Print the plan with its expected end."""
        elapsed = time.monotonic() - self.start
        remaining = rest + (self.planned_epochs - trainer.current_epoch - 1) * epoch_seconds
        end = datetime.now() + timedelta(seconds=remaining)
        steps_per_epoch = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches)
        rank_zero_info(
            f"{what}: precision {trainer.precision}, {timing} -> {self.planned_epochs} epoch(s) x "
            f"{steps_per_epoch} steps = {self.total_steps(trainer)} steps in "
            f"{self.budget / 60:.1f} min; expected end {end:%H:%M:%S} "
            f"({(elapsed + remaining) / 60:.1f} min)"
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Re-plan once from the first whole epoch; later, stop early when far behind plan.

        The first epoch's time includes what the timed steps do not see: validation after
        the epoch, figures, checkpoints and logging. The re-plan refits the schedules too; the
        run has then done a small share of its steps, so the schedule's shape barely moves.
        """
        if self.start is None or self._epoch_start is None or self.planned_epochs in (None, -1):
            return
        now = time.monotonic()
        epoch_seconds = now - self._epoch_start  # validation at the epoch's end included
        if not self._replanned:
            self._replanned = True
            self.set_epochs(trainer, epoch_seconds, this_epoch_rest=0.0)
            timing = f"first epoch {epoch_seconds:.1f} s with its validation"
            self.report(trainer, "TimeBudget re-plan", timing, epoch_seconds, 0.0)
            return
        projected = now - self.start + epoch_seconds
        last = trainer.current_epoch + 1 >= self.planned_epochs
        behind = trainer.strategy.broadcast(projected > self.budget * (1 + self.overrun))
        if not last and behind:
            rank_zero_info(
                f"TimeBudget: behind plan, stopping after epoch {trainer.current_epoch} "
                f"(another epoch would end at {projected / 60:.1f} of "
                f"{self.budget / 60:.1f} min)"
            )
            trainer.should_stop = True
