"""Lightning callbacks: resumption, per-process draws, figures, run summary and step timing."""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger


class RandomStateCheckpoint(L.Callback):
    """Save the random generators in checkpoints and restore them when training resumes.

    Lightning restores weights, optimizer and schedule but not the random generators, which
    decide the shuffle, the modality subsets, the augmentation and the token masks. With this
    callback a run resumed from an end-of-epoch checkpoint draws exactly what the uninterrupted
    run drew: the states saved with the checkpoint are put back in ``on_fit_start``. Nothing
    may draw from the global generators between that hook and the creation of the training
    data loader; the DataModules of `datamodules` see to it by giving validation loaders
    their own generator, and the tasks draw validation masks from a fixed seed.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        """The generators' states at the time of the checkpoint, as tensors and plain types.

        Plain types keep the checkpoint loadable with ``torch.load(weights_only=True)``.
        """
        kind, keys, position, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached],
            "python": random.getstate(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep the saved states until training starts again."""
        self._pending = state_dict

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the saved states when a run resumes."""
        if not self._pending:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        kind, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), position, has_gauss, cached))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ProcessRandomState(L.Callback):
    """Give each process of a distributed run its own random draws: token masks, PatchDropout.

    Every process is seeded alike (``seed_everything``), so the processes of a DDP run would
    draw the same token masks (and the same PatchDropout) for their different samples: the
    i-th sample of every process would be masked alike. When training starts (after
    `RandomStateCheckpoint` has put back a resumed run's states, which are rank 0's), the
    process of rank r > 0 reseeds torch's, NumPy's and Python's generators with a draw from
    torch's plus r. Rank 0 keeps its generators, so that a single process draws what
    it drew before. The training loader's modality subsets and augmentation follow the
    DataModule's generator, which folds the rank in itself
    (`datamodules.datamodule.MultimodalDataModule`). The command line adds this callback.
    """

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Reseed the generators of the processes of rank > 0."""
        rank = trainer.global_rank
        if trainer.world_size < 2 or rank == 0:
            return
        seed = int(torch.randint(2**62, ())) + rank
        torch.manual_seed(seed)  # CPU and every CUDA device
        np.random.seed(seed % 2**32)
        random.seed(seed)


def run_directory(trainer: L.Trainer) -> Path:
    """Folder of the run: the first logger's version folder, else the trainer's root folder.

    What ``trainer.log_dir`` names, found without its broadcast from rank 0: that broadcast is
    a collective that every process must join, and a distributed run would wait for ever when
    only rank 0 asks (as the callbacks here do, that write files on rank 0 alone).
    """
    directory = None
    if trainer.loggers:
        logger = trainer.loggers[0]
        plain = isinstance(logger, CSVLogger | TensorBoardLogger)
        directory = logger.log_dir if plain else logger.save_dir
    return Path(directory or trainer.default_root_dir)


class ReconstructionFigures(L.Callback):
    """Save a PNG of inputs, masked inputs and reconstructions after every validation epoch.

    The figure goes to ``<run folder>/figures/reconstruction_epoch<N>.png`` and, when a W&B
    logger is configured, to W&B as an image. The LightningModule provides it through a
    ``reconstruction_figure()`` method returning a matplotlib figure (or None).

    Args:
        every_n_epochs: draw every n-th validation epoch.
    """

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs
        self.last_path: Path | None = None

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Draw and save the figure of the first validation batch."""
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if trainer.current_epoch % self.every_n_epochs:
            return
        figure = pl_module.reconstruction_figure()
        if figure is None:
            return
        folder = run_directory(trainer) / "figures"
        folder.mkdir(parents=True, exist_ok=True)
        self.last_path = folder / f"reconstruction_epoch{trainer.current_epoch:04d}.png"
        figure.savefig(self.last_path, dpi=80)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    "val/reconstruction", [str(self.last_path)], step=trainer.global_step
                )


class RunSummary(L.Callback):
    """Print, at the end of fitting, how the validation loss moved and where the outputs are.

    Args:
        monitor: the logged validation metric to follow.
    """

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.history: list[float] = []

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the epoch's validation loss (the sanity check included, as the start point)."""
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None:
            self.history.append(float(value))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the summary."""
        if not trainer.is_global_zero:
            return
        lines = ["", "Run finished."]
        if len(self.history) >= 2:
            lines.append(
                f"  {self.monitor}: {self.history[0]:.4f} (sanity check, before training) -> "
                f"{self.history[-1]:.4f} (last epoch), best {min(self.history):.4f}"
            )
        checkpoint = trainer.checkpoint_callback
        if checkpoint is not None:
            if getattr(checkpoint, "best_model_path", ""):
                lines.append(f"  best checkpoint: {checkpoint.best_model_path}")
            if getattr(checkpoint, "last_model_path", ""):
                lines.append(f"  last checkpoint: {checkpoint.last_model_path}")
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                lines.append(f"  metrics CSV:     {logger.experiment.metrics_file_path}")
            if isinstance(logger, WandbLogger):
                lines.append(f"  W&B run:         {logger.experiment.dir}")
        figures = [c for c in trainer.callbacks if isinstance(c, ReconstructionFigures)]
        if figures and figures[0].last_path is not None:
            lines.append(f"  figures:         {figures[0].last_path.parent}")
        print("\n".join(lines))


class StepTimer(L.Callback):
    """Measure a run's training steps and validation passes, and write them as JSON at the end.

    ``make reproduce`` (`fusion.reproduce`) plans equal step counts from these figures and
    keeps them with every stage. A step is timed from the end of the previous step to the end
    of this one (loading included), within an epoch only, so that validation and checkpoints
    between epochs are not counted; the median of those intervals is the step time. A
    validation pass is timed whole; when only the sanity check ran, its time is scaled to all
    validation batches.

    Args:
        path: Where to write the JSON (``null`` keeps the figures in ``self.summary`` only).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = Path(path) if path else None
        self.summary: dict[str, Any] = {}
        self._intervals: list[float] = []
        self._last: float | None = None
        self._fit_start = 0.0
        self._validation_start = 0.0
        self._validation_seconds: float | None = None
        self._sanity_estimate: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start the run's clock."""
        self._fit_start = time.monotonic()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Steps are timed within an epoch only."""
        self._last = None

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: object,
        batch: object,
        batch_idx: int,
    ) -> None:
        """Record the time since the previous step ended."""
        now = time.monotonic()
        if self._last is not None:
            self._intervals.append(now - self._last)
        self._last = now

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start timing a validation pass."""
        self._validation_start = time.monotonic()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Keep the pass's time (the sanity check scaled to the whole validation set)."""
        elapsed = time.monotonic() - self._validation_start
        if trainer.sanity_checking:
            checked, total = sum(trainer.num_sanity_val_batches), sum(trainer.num_val_batches)
            if checked and math.isfinite(total):
                self._sanity_estimate = elapsed * total / checked
        else:
            self._validation_seconds = elapsed
        self._last = None  # the next step's interval would include this pass

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Summarise and write the figures."""
        intervals = sorted(self._intervals)
        validation = self._validation_seconds
        try:  # the full epoch's batches, whatever limit_train_batches cut off
            loader_batches = len(trainer.train_dataloader)
        except TypeError:
            loader_batches = None
        self.summary = {
            "steps": trainer.global_step,
            "steps_per_epoch": trainer.num_training_batches,
            "loader_batches": loader_batches,
            "epochs": trainer.current_epoch,
            "batch_size": getattr(trainer.datamodule, "batch_size", None),
            "step_seconds": intervals[len(intervals) // 2] if intervals else None,
            "timed_steps": len(intervals),
            "validation_seconds": validation if validation is not None else self._sanity_estimate,
            "fit_seconds": time.monotonic() - self._fit_start,
            "precision": str(trainer.precision),
            "threads": torch.get_num_threads(),
        }
        if self.path is not None and trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.summary, indent=2) + "\n")
