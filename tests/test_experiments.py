"""Every experiment YAML names classes that exist and runs one fast step through the real command
line, and the subset evaluation command scores a checkpoint on every modality subset."""

import csv
import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from fusion.cli import main
from tests.data.sen1floods11.data import write_sen1floods11
from tests.tiny_models import TINY_BACKBONE, TINY_HEAD, model_arguments, quiet_run_arguments

REPO = Path(__file__).resolve().parents[1]
SEGMENTATION = {
    "segment_quad": "quadruplets",
    "segment_dfc2023_instance": "dfc2023",
    "segment_dfc2023_semantic": "dfc2023",
    "segment_sen1floods11": "sen1floods11",
}
RUNS = sorted(path.stem for path in (REPO / "experiments/runs").glob("*.yaml"))


def class_paths(node: Any) -> Iterator[str]:
    """Every ``class_path`` value in a parsed YAML document, nested ones included."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "class_path" and isinstance(value, str):
                yield value
            else:
                yield from class_paths(value)
    elif isinstance(node, list):
        for item in node:
            yield from class_paths(item)


def test_every_class_path_of_the_experiments_imports() -> None:
    """The configs, their overlays and the published runs' configs name importable classes."""
    unresolved, found = [], set()
    for path in sorted((REPO / "experiments").rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            for class_path in class_paths(document):
                found.add(class_path)
                module, _, name = class_path.rpartition(".")
                try:
                    target = getattr(importlib.import_module(module), name)
                except (ImportError, AttributeError) as error:
                    unresolved.append(f"{path.relative_to(REPO)}: {class_path} ({error})")
                    continue
                if not isinstance(target, type):
                    unresolved.append(f"{path.relative_to(REPO)}: {class_path} is not a class")
    assert {"fusion.tasks.SegmentationTask", "fusion.run.callbacks.RunSummary"} <= found
    assert not unresolved, "class_path values that do not import:\n" + "\n".join(unresolved)


@pytest.fixture
def data_roots(quadruplets_root: Path, dfc2023_root: Path, tmp_path: Path) -> dict[str, Path]:
    return {
        "quadruplets": quadruplets_root,
        "dfc2023": dfc2023_root,
        "sen1floods11": write_sen1floods11(tmp_path / "sen1floods11", size=64),
    }


def tiny_args(config: str, root: Path, run_dir: Path, *overlays: str) -> list[str]:
    args = ["--config", str(REPO / f"experiments/{config}.yaml")]
    for overlay in overlays:
        args += ["--config", str(REPO / f"experiments/{overlay}.yaml")]
    args += ["--data.root", str(root), "--data.init_args.image_size", "32"]
    args += ["--data.init_args.batch_size", "2", "--data.init_args.num_workers", "0"]
    if "sen1floods11" in config:
        args += ["--data.init_args.tile_size", "16", "--data.init_args.stride", "16"]
    args += model_arguments({**TINY_BACKBONE, **TINY_HEAD})
    return args + quiet_run_arguments(run_dir, "run")


RUN_SETTINGS = {  # run overlay -> (backbone variant, training modality sampling)
    None: ("proposed", "uniform"),
    "multivit": ("multivit", "all"),
    "no_masked_attention": ("no_masked_attention", "uniform"),
    "no_modality_attention": ("no_modality_attention", "uniform"),
    "no_random_combination": ("proposed", "all"),
}


def test_every_run_overlay_is_tested() -> None:
    assert sorted(run for run in RUN_SETTINGS if run) == RUNS


@pytest.mark.parametrize(
    ("config", "run"),
    [(config, None) for config in SEGMENTATION] + [("segment_quad", run) for run in RUNS],
)
def test_one_fast_step(config: str, run: str | None, data_roots: dict, tmp_path: Path) -> None:
    overlays = ("segment_cpu",) + ((f"runs/{run}",) if run else ())
    args = tiny_args(config, data_roots[SEGMENTATION[config]], tmp_path, *overlays)
    cli = main(["fit", *args, "--trainer.fast_dev_run", "1"])
    assert cli.trainer.global_step == 1
    metric = "val/ap50" if "instance" in config else "val/miou"
    assert metric in cli.trainer.callback_metrics
    variant, sampling = RUN_SETTINGS[run]
    assert cli.model.hparams.variant == variant
    assert cli.datamodule.train_modalities == sampling


def test_evaluate_writes_every_subset(data_roots: dict, tmp_path: Path) -> None:
    args = tiny_args("segment_quad", data_roots["quadruplets"], tmp_path, "segment_cpu")
    limits = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]
    main(["fit", *args, *limits, "--time_budget", "null"])
    checkpoint = tmp_path / "run/version_0/checkpoints/last.ckpt"
    assert checkpoint.is_file()
    out = tmp_path / "subsets"
    results = main(["evaluate", *args, "--ckpt_path", str(checkpoint), "--out_dir", str(out)])
    assert len(results) == 15 and results[0].modalities == ("s1", "s2", "dem", "dnw")
    rows = list(csv.DictReader((out / "subsets.csv").open()))
    assert len(rows) == 15 and all(0 <= float(row["test/miou"]) <= 1 for row in rows)
    assert all(float(row["test/excluded_tiles"]) >= 0 for row in rows)
    table = (out / "subsets.md").read_text()
    assert "| Multimodal input | mIoU | excluded tiles |" in table
    contributions = (out / "contributions.md").read_text()
    assert "Shapley values of mIoU" in contributions and "| s1 + s2 |" in contributions
    assert (out / "subsets.png").is_file() and (out / "contributions.png").is_file()
