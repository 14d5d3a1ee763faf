"""``fusion evaluate``: one checkpoint, every modality subset, tables and a chart.

    fusion evaluate --config experiments/segment_quad.yaml --ckpt_path runs/.../last.ckpt \
        [--out_dir DIR] [--stage test|validate] [any option of the config, e.g. --data.root]

The config builds the task, the DataModule and the trainer exactly as ``fusion fit`` does; the
checkpoint's weights are loaded once, and the test (or validation) split is scored on each of
the ``2^M - 1`` modality subsets (`fusion.evaluation.subsets`). Written to ``--out_dir``
(default: ``<checkpoint folder>/../subsets``): ``subsets.csv``, ``subsets.md`` and
``subsets.png``, and the modality contributions of the main score (`fusion.evaluation.
contributions`: exact Shapley values and pairwise interactions, the empty subset scored by the
task's trivial predictor) as ``contributions.md`` and ``contributions.png``; the tables are
printed too.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import lightning as L
import torch

from fusion.evaluation.contributions import (
    contributions_text,
    interaction_indices,
    plot_contributions,
    shapley_values,
)
from fusion.evaluation.subsets import SubsetResult, evaluate_subsets, write_subset_tables


def load_weights(model: L.LightningModule, checkpoint: Path) -> None:
    """Loads a Lightning checkpoint's ``state_dict`` into ``model`` (all keys must match).

    Raises:
        FileNotFoundError: If the checkpoint does not exist.
        ValueError: If its weights do not fit the model built from the config.
    """
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint not found: {checkpoint}")
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{checkpoint} does not fit the model of the config: missing keys {missing[:8]}, "
            f"unexpected keys {unexpected[:8]} (the config must describe the checkpoint's model)"
        )


def main(argv: list[str]) -> list:
    """Run the command; ``argv`` without the leading ``evaluate``."""
    from fusion.cli import build_cli

    parser = argparse.ArgumentParser(prog="fusion evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt_path", type=Path, required=True, help="checkpoint to evaluate")
    parser.add_argument("--out_dir", type=Path, default=None, help="where to write the tables")
    parser.add_argument("--stage", choices=("test", "validate"), default="test")
    ours, rest = parser.parse_known_args(argv)
    if not any(arg.startswith("--trainer.enable_progress_bar") for arg in rest):
        rest += ["--trainer.enable_progress_bar", "false"]  # one bar over the subsets instead
    cli = build_cli(rest, run=False)
    load_weights(cli.model, ours.ckpt_path)
    results = evaluate_subsets(cli.trainer, cli.model, cli.datamodule, stage=ours.stage)
    prefix = "test" if ours.stage == "test" else "val"
    table = getattr(cli.model, "table_metrics", None)
    columns = {title: f"{prefix}/{name}" for title, name in table.items()} if table else None
    out_dir = ours.out_dir or ours.ckpt_path.resolve().parent.parent / "subsets"
    paths = write_subset_tables(results, out_dir, columns, title=f"{ours.ckpt_path.name}")
    print(paths["markdown"].read_text())
    if table and hasattr(cli.model, "trivial_scores"):
        title, metric = next(iter(table.items()))  # the first column is the main score
        paths |= write_contributions(
            results, cli.model, cli.datamodule, ours.stage, metric, title, out_dir
        )
    print("Wrote " + ", ".join(str(path) for path in paths.values()))
    return results


def write_contributions(
    results: list[SubsetResult],
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str,
    metric: str,
    title: str,
    out_dir: Path,
) -> dict[str, Path]:
    """Shapley values and pairwise interactions of one metric, printed and written.

    The empty subset scores the task's trivial predictor (``model.trivial_scores``: the
    majority class everywhere for semantic tasks, nothing for instances) on the same split.

    Returns:
        ``{"contributions": <markdown path>, "contributions_png": <png path>}``.
    """
    prefix = "test" if stage == "test" else "val"
    datamodule.set_eval_modalities(list(datamodule.modalities))
    datamodule.setup(stage)
    loader = datamodule.test_dataloader() if stage == "test" else datamodule.val_dataloader()
    empty = model.trivial_scores(loader)[metric]
    key = f"{prefix}/{metric}"
    scores = {frozenset(r.modalities): r.metrics[key] for r in results if key in r.metrics}
    players = list(results[0].modalities)  # the full set comes first in table order
    values = shapley_values(scores, players, empty)
    interactions = interaction_indices(scores, players, empty)
    text = f"Empty subset (trivial predictor): {title} {empty:.3f}\n\n"
    text += contributions_text(values, interactions, title)
    print(text)
    paths = {"contributions": out_dir / "contributions.md"}
    paths["contributions"].write_text(text)
    paths["contributions_png"] = out_dir / "contributions.png"
    plot_contributions(values, interactions, paths["contributions_png"], title)
    return paths
