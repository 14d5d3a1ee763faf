"""Model sizes small enough for a training step through the command line in about a second.

``--model.init_args.<key> <value>`` overrides for the configs under ``experiments/``: the
backbone (``TINY_BACKBONE``), pretraining's reconstruction decoders (``TINY_DECODER``) and the
Mask2Former head (``TINY_HEAD``).
"""

import json
from pathlib import Path

TINY_BACKBONE = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_DECODER = {"decoder_dim": 32, "decoder_heads": 2}
TINY_HEAD = {
    "hidden_dim": 32,
    "decoder_heads": 4,
    "encoder_feedforward_dim": 64,
    "decoder_feedforward_dim": 64,
    "train_num_points": 256,
    "num_queries": 4,
}


def model_arguments(sizes: dict[str, object]) -> list[str]:
    """``--model.init_args.<key> <value>`` for each size."""
    return [
        item for key, value in sizes.items() for item in (f"--model.init_args.{key}", str(value))
    ]


def quiet_run_arguments(run_dir: Path, name: str) -> list[str]:
    """Options that keep a test run's files in ``run_dir`` (a CSV log only) and its output short."""
    logger = [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": name},
        }
    ]
    return [
        "--trainer.logger", json.dumps(logger),
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
    ]  # fmt: skip
