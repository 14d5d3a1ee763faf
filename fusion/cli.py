"""Command line: Lightning CLI with ``fit``/``validate``/``test``/``predict`` subcommands.

Examples::

    python -m fusion fit --config experiments/pretrain_quad.yaml --data.root /data/quad
    fusion fit --config experiments/pretrain_quad.yaml --config experiments/cpu.yaml

The model's ``modalities`` are taken from the DataModule (``modality_specs``), so a config names
the data once. W&B runs offline unless ``WANDB_MODE`` says otherwise.
"""

from __future__ import annotations

import os

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI


class FusionCLI(LightningCLI):
    """LightningCLI that links the DataModule's modalities into the model."""

    def add_arguments_to_parser(self, parser) -> None:  # noqa: ANN001 (jsonargparse parser)
        """Link ``data.modality_specs`` to ``model.init_args.modalities``."""
        parser.link_arguments(
            "data",
            "model.init_args.modalities",
            compute_fn=lambda data: data.modality_specs,
            apply_on="instantiate",
        )


def main(args: list[str] | None = None) -> FusionCLI:
    """Run the command line (``args`` default to ``sys.argv``)."""
    os.environ.setdefault("WANDB_MODE", "offline")
    torch.set_float32_matmul_precision("high")
    return FusionCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        save_config_kwargs={"overwrite": True},
    )
