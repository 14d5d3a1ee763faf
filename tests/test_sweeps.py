"""Every W&B sweep under ``experiments/sweeps`` is well formed, and one trial of it runs a fast
step through our command line with the arguments built the way ``wandb agent`` builds them.

No W&B service is needed: the trial's command comes from wandb's own helpers for the agent
(``wandb.sdk.launch.sweeps.utils``, as in ``wandb/wandb_agent.py``), the values are drawn here
as the sweep controller could draw them, and the run goes through `fusion.cli` in this process
with ``WANDB_MODE=offline``, the data root from ``FUSION_DATA_ROOT`` as in docs/scaling-out.md.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

from fusion.cli import main
from fusion.run.lightning import build_cli
from tests.tiny_models import (
    TINY_BACKBONE,
    TINY_DECODER,
    TINY_HEAD,
    model_arguments,
    quiet_run_arguments,
)

REPO = Path(__file__).resolve().parents[1]
SWEEPS = sorted((REPO / "experiments/sweeps").glob("*.yaml"))
METHODS = {"grid", "random", "bayes"}
DISTRIBUTIONS = {"uniform", "int_uniform", "log_uniform_values", "categorical", "constant"}


def load_sweep(path: Path) -> dict[str, Any]:
    """The sweep definition, as ``wandb sweep`` reads it (YAML)."""
    return yaml.safe_load(path.read_text())


def draw_value(spec: dict[str, Any], rng: random.Random) -> Any:
    """One value of a sweep parameter, as the sweep controller could choose it.

    Args:
        spec: the parameter's definition: ``value``, ``values``, or ``min``/``max`` with a
            ``distribution`` (default: ``int_uniform`` for integer bounds, else ``uniform``).
        rng: where the choice comes from.

    Raises:
        ValueError: for a distribution this helper does not know; add it here when a sweep
            needs it.
    """
    if "value" in spec:
        return spec["value"]
    if "values" in spec:
        return rng.choice(spec["values"])
    low, high = spec["min"], spec["max"]
    integers = isinstance(low, int) and isinstance(high, int)
    distribution = spec.get("distribution", "int_uniform" if integers else "uniform")
    if distribution == "uniform":
        return rng.uniform(low, high)
    if distribution == "int_uniform":
        return rng.randint(low, high)
    if distribution == "log_uniform_values":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    raise ValueError(f"draw_value does not know the distribution {distribution!r}")


def agent_command(sweep: dict[str, Any], values: dict[str, Any]) -> list[str]:
    """The command ``wandb agent`` runs for a trial with these parameter values.

    Follows ``Agent._command_run`` of wandb 0.x: the macros ``${env}``, ``${interpreter}``,
    ``${program}`` and the argument formats of ``create_sweep_command_args`` (``${args}``:
    ``--key=value``).
    """
    macros = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})
    macros |= {"env": ["/usr/bin/env"], "interpreter": ["python"], "program": [sweep["program"]]}
    command = []
    for item in create_sweep_command(list(sweep["command"])):
        item = str(item)
        if item.startswith("${") and item.endswith("}"):
            command += macros[item[2:-1]]
        else:
            command.append(item)
    return command


def is_segmentation(sweep: dict[str, Any]) -> bool:
    """Whether the sweep trains `fusion.tasks.SegmentationTask` (else pretraining)."""
    return any(str(item).startswith("experiments/segment_") for item in sweep["command"])


def tiny_overrides(sweep: dict[str, Any], run_dir: Path) -> list[str]:
    """Command-line options that shrink a trial to a few seconds on the test data."""
    sizes = {**TINY_BACKBONE, **(TINY_HEAD if is_segmentation(sweep) else TINY_DECODER)}
    args = ["--data.init_args.image_size", "32", "--data.init_args.batch_size", "2"]
    args += ["--data.init_args.num_workers", "0"]
    return args + model_arguments(sizes) + quiet_run_arguments(run_dir, "sweep")


def trial_arguments(
    sweep: dict[str, Any], values: dict[str, Any], run_dir: Path, subcommand: bool = True
) -> list[str]:
    """Arguments of `fusion.cli` for a trial: the agent's command after ``python -m fusion``,
    with the tiny overrides put before the swept options (so that the swept ones win)."""
    command = agent_command(sweep, values)
    swept = [f"--{key}={value}" for key, value in values.items()]
    end = len(command) - len(swept)
    assert command[end:] == swept
    start = command.index("fusion") + 1 + (0 if subcommand else 1)
    return command[start:end] + tiny_overrides(sweep, run_dir) + swept


@pytest.fixture
def data_root(quadruplets_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FUSION_DATA_ROOT", str(quadruplets_root))
    monkeypatch.setenv("WANDB_MODE", "offline")
    return quadruplets_root


def test_there_are_sweeps() -> None:
    names = {path.stem for path in SWEEPS}
    assert {"pretrain_lr", "pretrain_contrastive", "pretrain_visible_fraction"} <= names
    assert {"segment_modality_drop", "segment_lr"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_sweep_structure(path: Path) -> None:
    sweep = load_sweep(path)
    assert sweep["method"] in METHODS
    assert sweep["metric"]["goal"] in ("minimize", "maximize")
    assert sweep["metric"]["name"].startswith("val/")
    command = [str(item) for item in sweep["command"]]
    assert command[:5] == ["${env}", "${interpreter}", "-m", "fusion", "fit"]
    assert command[-1] == "${args}" and command.count("${args}") == 1
    configs = [command[i + 1] for i, item in enumerate(command) if item == "--config"]
    assert configs and all((REPO / config).is_file() for config in configs)
    assert sweep["parameters"]
    for key, spec in sweep["parameters"].items():
        assert key.split(".")[0] in ("model", "data", "trainer"), key
        assert key.split(".")[1] == "init_args" or key.startswith("trainer."), key
        if "values" in spec:
            assert spec["values"]
        elif "value" not in spec:
            assert spec.get("distribution", "uniform") in DISTRIBUTIONS, key
            assert spec["min"] < spec["max"], key
        if sweep["method"] == "grid":
            assert "values" in spec or "value" in spec, f"a grid needs values: {key}"
    trial = agent_command(sweep, {key: 1 for key in sweep["parameters"]})
    assert trial[:5] == ["/usr/bin/env", "python", "-m", "fusion", "fit"]
    assert trial[-len(sweep["parameters"]) :] == [f"--{key}=1" for key in sweep["parameters"]]


def bounds_and_values(spec: dict[str, Any]) -> list[Any]:
    """Every value a parameter lists, or both ends of its range."""
    if "value" in spec:
        return [spec["value"]]
    return list(spec["values"]) if "values" in spec else [spec["min"], spec["max"]]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_every_value_is_accepted(path: Path, data_root: Path, tmp_path: Path) -> None:
    """Each listed value (each end of a range) parses, reaches its class and builds the data."""
    sweep = load_sweep(path)
    for key, spec in sweep["parameters"].items():
        for value in bounds_and_values(spec):
            args = trial_arguments(sweep, {key: value}, tmp_path, subcommand=False)
            cli = build_cli(args, run=False)
            assert cli.config[key] == value, (key, value)
            group, _, name = key.partition(".init_args.")
            if group == "model":
                assert cli.model.hparams[name] == value
            elif group == "data":
                assert getattr(cli.datamodule, name) == value
                cli.datamodule.setup("fit")
                assert cli.datamodule.train_dataset[0]["present"].any()


@pytest.mark.parametrize("path", SWEEPS, ids=lambda path: path.stem)
def test_one_trial_runs_a_fast_step(path: Path, data_root: Path, tmp_path: Path) -> None:
    sweep = load_sweep(path)
    rng = random.Random(path.stem)
    values = {key: draw_value(spec, rng) for key, spec in sweep["parameters"].items()}
    cli = main([*trial_arguments(sweep, values, tmp_path), "--trainer.fast_dev_run", "1"])
    assert cli.trainer.global_step == 1
    assert sweep["metric"]["name"] in cli.trainer.callback_metrics
    for key, value in values.items():
        assert cli.config["fit"][key] == pytest.approx(value)


def test_a_trial_reports_to_its_sweep(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    """Outside a sweep the command line defaults W&B to offline; under ``wandb agent``
    (``WANDB_SWEEP_ID`` set) it leaves the mode alone, so that the trial reaches the sweep."""
    sweep = load_sweep(SWEEPS[0])
    args = trial_arguments(sweep, {}, tmp_path, subcommand=False)
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    build_cli(args, run=False)
    assert "WANDB_MODE" not in os.environ
    monkeypatch.delenv("WANDB_SWEEP_ID")
    build_cli(args, run=False)
    assert os.environ["WANDB_MODE"] == "offline"
