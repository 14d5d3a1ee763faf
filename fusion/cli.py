"""Command line: Lightning CLI with ``fit``/``validate``/``test``/``predict`` subcommands.

Examples::

    python -m fusion fit --config experiments/pretrain_quad.yaml --data.root /data/quad
    fusion fit --config experiments/pretrain_quad.yaml --config experiments/cpu.yaml
    fusion evaluate --config experiments/segment_quad.yaml --ckpt_path last.ckpt
    fusion predict-scene --ckpt_path last.ckpt --s1 s1.tif --s2 s2.tif --out map.tif
    fusion export --ckpt_path last.ckpt --out water_model

Besides Lightning's options:

* The model's ``modalities`` are taken from the DataModule (``modality_specs``), so a config
  names the data once.
* ``trainer.precision: null`` (the configs' default) lets `fusion.hardware.choose_precision`
  pick the device and precision from the hardware; the run prints its choice and why. An
  explicit ``--trainer.precision`` is used as given, and ``--trainer.accelerator`` narrows the
  automatic choice to that device.
* ``--time_budget MINUTES`` fits the number of epochs and the learning-rate schedule to a
  wall-clock budget (`fusion.budget.TimeBudget`), as the CPU profiles do.

W&B runs offline unless ``WANDB_MODE`` says otherwise, or the run is a trial of a W&B sweep
(``wandb agent`` sets ``WANDB_SWEEP_ID``), which must report to its sweep.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities import rank_zero_info

from fusion.budget import TimeBudget
from fusion.callbacks import ProcessRandomState
from fusion.hardware import choose_precision


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
            "training (fusion.budget.TimeBudget); null: run max_epochs / max_steps.",
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
    return FusionCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
    )


def main(args: list[str] | None = None) -> Any:
    """Run the command line: Lightning's subcommands, ``evaluate``, ``predict-scene``, ``export``.

    ``evaluate`` is `fusion.evaluation.command`, ``predict-scene`` `fusion.scene.command`,
    ``export`` `fusion.model_file`.

    Args:
        args: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The CLI object, the subset results of ``evaluate`` or the `fusion.scene.SceneResult`
        of ``predict-scene``.
    """
    args = sys.argv[1:] if args is None else list(args)
    if args and args[0] == "evaluate":
        from fusion.evaluation.command import main as evaluate

        return evaluate(args[1:])
    if args and args[0] == "predict-scene":
        from fusion.scene.command import main as predict_scene

        return predict_scene(args[1:])
    if args and args[0] == "export":
        from fusion.model_file import main as export

        return export(args[1:])
    return build_cli(args)
