"""The Lightning command line of ``fusion fit``, ``validate``, ``test`` and ``predict``.

Besides Lightning's options:

* The model's ``modalities`` are taken from the DataModule (``modality_specs``), so a config
  names the data once.
* ``trainer.precision: null`` (the configs' default) lets `fusion.run.hardware.choose_precision`
  pick the device and precision from the hardware; the run prints its choice and why. An
  explicit ``--trainer.precision`` is used as given, and ``--trainer.accelerator`` narrows the
  automatic choice to that device.
* ``--time_budget MINUTES`` fits the number of epochs and the learning-rate schedule to a
  wall-clock budget (`fusion.run.budget.TimeBudget`), as the CPU profiles do.

W&B runs offline unless ``WANDB_MODE`` says otherwise, or the run is a trial of a W&B sweep
(``wandb agent`` sets ``WANDB_SWEEP_ID``), which must report to its sweep.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from fusion.run.budget import TimeBudget
from fusion.run.callbacks import ProcessRandomState
from fusion.run.hardware import choose_precision

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
"""The subcommands LightningCLI runs."""


class DropAdvertisement(logging.Filter):
    """Drops Lightning's "💡 Tip" advertising a cloud logger on every run (not our message)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for the advertisement."""
        return not str(record.msg).startswith("💡 Tip")


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(DropAdvertisement())
# Warnings Lightning raises about its own internals on every run, not about the user's run:
# torch's pytree API it still uses, and its model summary not sizing mixed precision.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
warnings.filterwarnings("ignore", message=r"Precision .* is not supported by the model summary")


class FusionCLI(LightningCLI):
    """LightningCLI with the modality link, automatic precision and a time budget."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        """Link ``data.modality_specs`` to the model; add ``--time_budget``."""
        parser.link_arguments(
            "data",
            "model.init_args.modalities",
            compute_fn=lambda data: data.modality_specs,
            apply_on="instantiate",
        )
        parser.add_argument(
            "--time_budget",
            type=float | None,
            default=None,
            help="Fit the epochs and the learning-rate schedule to this many minutes of "
            "training (fusion.run.budget.TimeBudget); null: run max_epochs / max_steps.",
        )

    def _subcommand_config(self):  # noqa: ANN202 (jsonargparse Namespace)
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Resolve ``trainer.precision: null`` from the hardware and say what was chosen."""
        trainer = self._subcommand_config().trainer
        if trainer.precision is not None:
            rank_zero_info(f"Precision: {trainer.precision} (set in the config or command line)")
            return
        choice = choose_precision(accelerator=trainer.accelerator)
        trainer.precision = choice.precision
        if trainer.accelerator in (None, "auto"):
            trainer.accelerator = choice.accelerator
        rank_zero_info(
            f"Precision: {choice.precision} on {choice.accelerator}, chosen from the hardware: "
            f"{choice.reason} (override with --trainer.precision)"
        )

    def before_fit(self) -> None:
        """Add the time budget, when one is set, and per-process random draws (DDP)."""
        self.trainer.callbacks.append(ProcessRandomState())
        minutes = self._subcommand_config().get("time_budget")
        if minutes is not None:
            self.trainer.callbacks.append(TimeBudget(minutes))


def build_cli(args: list[str] | None = None, run: bool = True) -> FusionCLI:
    """Parse ``args`` (default ``sys.argv``), build model, data and trainer, and run if asked."""
    if "WANDB_SWEEP_ID" not in os.environ:  # a sweep trial reports to the sweep's server
        os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_float32_matmul_precision("high")
    # LightningCLI warns whenever it is given ``args`` while the process has command-line
    # arguments of its own; it reads sys.argv when given none, so hand it ``args`` that way.
    argv = [sys.argv[0] if sys.argv else "fusion", *(sys.argv[1:] if args is None else args)]
    saved, sys.argv = sys.argv, argv  # also what DDP's launcher reruns in its processes
    try:
        return FusionCLI(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            run=run,
            save_config_kwargs={"overwrite": True},
            # Parse errors are raised (jsonargparse's ArgumentError), not printed with the
            # usage and an exit: `fusion.cli.run` prints them on one line.
            parser_kwargs={
                "exit_on_error": False,
                **{name: {"exit_on_error": False} for name in LIGHTNING_COMMANDS},
            },
        )
    finally:
        sys.argv = saved


def run_lightning(args: list[str]) -> FusionCLI:
    """Run a Lightning subcommand; ``args`` start with its name (``fit``, ``test``, ...)."""
    return build_cli(args)
