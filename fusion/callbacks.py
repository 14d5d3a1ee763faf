"""Lightning callbacks: exact resumption, per-process random draws, figures and a run summary."""

from __future__ import annotations

import random
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
    data loader; the DataModules of :mod:`datamodules` see to it by giving validation loaders
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
