"""A callback that records what each process of a distributed test run saw (`tests/test_ddp.py`).

Given on the command line (``--trainer.callbacks+=tests.ddp_probe.RecordRank``), it is created
in every process; each writes ``rank<r>.pt`` under ``out_dir``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch


class RecordRank(L.Callback):
    """Save the weights before and after training, the optimizer's setup and the batches drawn.

    Args:
        out_dir: folder of the ``rank<r>.pt`` files.
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)
        self.record: dict[str, Any] = {"present": []}

    @staticmethod
    def _weights(module: L.LightningModule) -> dict[str, torch.Tensor]:
        return {name: value.detach().cpu().clone() for name, value in module.state_dict().items()}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Weights after DDP's start-up broadcast, learning rates and the run's step counts."""
        optimizer = trainer.optimizers[0]
        scheduler = trainer.lr_scheduler_configs[0].scheduler
        self.record |= {
            "initial": self._weights(pl_module),
            "world_size": trainer.world_size,
            "global_rank": trainer.global_rank,
            "batch_size": trainer.datamodule.batch_size,
            "peak_lr": [group["initial_lr"] for group in optimizer.param_groups],
            "num_training_batches": trainer.num_training_batches,
            "schedule_steps": scheduler.lr_lambdas[0].total_steps,
            "strategy": type(trainer.strategy).__name__,
            "cluster": type(trainer.strategy.cluster_environment).__name__,
        }

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        """The modality subsets of the batch (``present``); the global random state at first."""
        self.record["present"].append(batch["present"].cpu().clone())
        self.record.setdefault("rng_state", torch.get_rng_state())

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the record with the final weights."""
        self.record |= {"final": self._weights(pl_module), "global_step": trainer.global_step}
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.save(self.record, self.out_dir / f"rank{trainer.global_rank}.pt")
