"""The protocol's runs, each stage once per seed: where each writes, what makes it, if it is done.

A run is reused only when its ``stage.json`` says it finished, its checkpoint exists, and it was
made by the same code (commit and uncommitted changes) with the same command; `ProtocolRuns`
answers that, and builds the ``fusion fit`` and ``fusion evaluate`` commands of every run.
`fusion.reproduce.runner.Protocol` runs them.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion.reproduce.plan import StepPlan
from fusion.reproduce.provenance import git_state, machine_record, package_versions
from fusion.reproduce.scheduler import cpu_slots
from fusion.reproduce.stages import (
    DATASETS,
    PRETRAIN_PROFILE,
    SEGMENT_PROFILE,
    Stage,
    dataset_stages,
)


@dataclass(frozen=True)
class Run:
    """One stage trained with one seed."""

    stage: Stage
    seed: int

    @property
    def key(self) -> str:
        """``dataset/stage/seed_k``."""
        return f"{self.stage.key}/seed_{self.seed}"


@dataclass
class StageRecord:
    """What a run left behind (``stage.json``).

    ``status`` is ``done``, ``failed``, ``skipped`` (its pretraining did not finish) or
    ``not_run`` (the budget ran out before it started).
    """

    status: str
    dataset: str = ""
    stage: str = ""
    seed: int = 0
    steps: int = 0
    batch_size: int | None = None
    fingerprint: str = ""
    commit: str = ""
    dirty: bool = False
    checkpoint: str = ""
    fit_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    measured: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    started: str = ""
    finished: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)


def now() -> str:
    """Local time, to the second."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


class ProtocolRuns:
    """Every run of the protocol, `dataset_stages` once per seed: folders, commands, identity.

    A run counts as done only when its ``stage.json`` says so, its checkpoint exists, and it
    was made by the same code (commit and uncommitted changes) with the same command (steps,
    seed, batch, configs, pretraining source); anything else runs again, after its old
    outputs are cleared. The step counts (``plan``) are fixed up front by
    `fusion.reproduce.runner.Protocol`, which runs the runs.

    Args:
        datasets: Keys of `DATASETS` to run.
        budget_minutes: Wall-clock budget of the whole protocol.
        out_dir: Results (tables, ``stage.json``, logs, configs); git-ignored by default.
        runs_dir: Checkpoints and training logs.
        seeds: Seeds asked for (fewer when the budget cannot give them ``min_steps``).
        jobs: Runs at once, each pinned to its share of the CPUs.
        min_steps: Fewest segmentation steps worth training (see
            `fusion.reproduce.plan.plan_steps`).
        steps: Train every run this many steps instead of planning from the budget.
        python: Interpreter that runs the stages.
    """

    def __init__(
        self,
        datasets: Sequence[str],
        budget_minutes: float,
        out_dir: Path,
        runs_dir: Path,
        seeds: int = 3,
        jobs: int = 1,
        min_steps: int = 100,
        steps: int | None = None,
        python: str = sys.executable,
    ) -> None:
        unknown = [name for name in datasets if name not in DATASETS]
        if unknown or not datasets:
            raise ValueError(
                f"unknown or no datasets {list(datasets)}: choose from {sorted(DATASETS)}"
            )
        if seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {seeds}")
        if budget_minutes <= 0:
            raise ValueError(f"--budget must be positive, got {budget_minutes} minutes")
        self.datasets = list(datasets)
        self.budget_minutes = budget_minutes
        self.out_dir = out_dir
        self.runs_dir = runs_dir
        self.seeds_requested = seeds
        self.slots = cpu_slots(jobs)
        self.min_steps = min_steps
        self.fixed_steps = steps
        self.python = python
        self.stages = [stage for name in self.datasets for stage in dataset_stages(name)]
        self.code = git_state()
        self.versions = package_versions()
        self.machine = machine_record()
        self.plan: StepPlan | None = None

    # -- paths and commands -----------------------------------------------------------------
    def run_dir(self, run: Run) -> Path:
        """Results folder of a run: ``out_dir/<dataset>/<stage>/seed_<k>``."""
        return self.out_dir / run.stage.dataset / run.stage.name / f"seed_{run.seed}"

    def checkpoint(self, run: Run) -> Path:
        """Where the run's last checkpoint is written."""
        folder = self.runs_dir / run.stage.dataset / run.stage.name / f"seed_{run.seed}"
        return folder / "version_0" / "checkpoints" / "last.ckpt"

    def stage_by_name(self, dataset: str, name: str) -> Stage:
        """The stage ``dataset/name``."""
        return next(s for s in self.stages if s.dataset == dataset and s.name == name)

    def runs(self) -> list[Run]:
        """Every run, seed by seed (a shortened protocol still has whole seeds)."""
        assert self.plan is not None
        return [Run(stage, seed) for seed in range(self.plan.seeds) for stage in self.stages]

    def base_command(self, stage: Stage, verb: str) -> list[str]:
        """``fusion fit|evaluate`` with the stage's configs, overlays and data root."""
        protocol = DATASETS[stage.dataset]
        if stage.kind == "pretrain":
            configs = [protocol.pretrain_config, PRETRAIN_PROFILE]
        elif stage.kind == "baseline":  # no network: the demo profile's model settings do not apply
            configs = [protocol.baseline_config]
        else:
            configs = [protocol.segment_config, SEGMENT_PROFILE]
        command = [self.python, "-m", "fusion", verb]
        for config in configs:
            command += ["--config", str(config)]
        command += list(stage.args)
        if protocol.data_root:
            command += ["--data.root", protocol.data_root]
        return command

    def fit_command(self, run: Run) -> list[str]:
        """``fusion fit`` of a run: its seed, the plan's steps, logs under ``runs_dir``.

        A baseline run has no planned steps: one epoch, one pass over the training split
        (where the fitted rule counts its pixels).
        """
        assert self.plan is not None
        stage = run.stage
        plan = self.plan.datasets[stage.dataset]
        command = self.base_command(stage, "fit")
        command += ["--seed_everything", str(run.seed), "--time_budget", "null"]
        if stage.kind == "baseline":
            command += ["--trainer.max_epochs", "1"]
            command += self.logger_args(stage, f"seed_{run.seed}")
            command += self.timer_args(self.run_dir(run) / "timing.json")
            return command + ["--trainer.enable_progress_bar", "false"]
        if stage.kind == "pretrain":
            steps, epochs = plan.pretrain_steps, plan.pretrain_epochs
        else:
            steps, epochs = plan.segment_steps, plan.segment_epochs
        command += ["--trainer.max_steps", str(steps)]
        command += ["--trainer.max_epochs", str(epochs if epochs else -1)]
        if epochs:  # epochs of equal length that end where the plan does
            command += ["--trainer.limit_train_batches", str(steps // epochs)]
        if stage.kind == "pretrain" and epochs:
            # The warm-up keeps the demo profile's share of the run: a tenth of it.
            command += ["--model.init_args.warmup_epochs", f"{0.1 * epochs:.3g}"]
        command += self.logger_args(stage, f"seed_{run.seed}")
        command += self.timer_args(self.run_dir(run) / "timing.json")
        command += ["--trainer.enable_progress_bar", "false"]
        if stage.pretrained_from is not None:
            source = Run(self.stage_by_name(stage.dataset, stage.pretrained_from), run.seed)
            command += ["--model.init_args.pretrained", str(self.checkpoint(source))]
        return command

    def evaluate_command(self, run: Run, checkpoint: Path, out_dir: Path) -> list[str]:
        """``fusion evaluate`` over every subset, contributions on the table's metric."""
        stage = run.stage
        command = self.base_command(stage, "evaluate")
        command += ["--seed_everything", str(run.seed)]
        command += ["--contribution_metric", DATASETS[stage.dataset].metric_name]
        command += list(DATASETS[stage.dataset].evaluate_args)
        command += self.logger_args(stage, "evaluate")
        return command + ["--ckpt_path", str(checkpoint), "--out_dir", str(out_dir)]

    def logger_args(self, stage: Stage, name: str) -> list[str]:
        """A CSV logger writing to ``runs_dir/<dataset>/<stage>/<name>`` (no W&B)."""
        logger = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {
                "save_dir": str(self.runs_dir / stage.dataset / stage.name),
                "name": name,
            },
        }
        return ["--trainer.logger", json.dumps(logger)]

    @staticmethod
    def timer_args(path: Path) -> list[str]:
        """Adds `fusion.run.callbacks.StepTimer`, writing its figures to ``path``."""
        timer = {"class_path": "fusion.run.callbacks.StepTimer", "init_args": {"path": str(path)}}
        return ["--trainer.callbacks+", json.dumps(timer)]

    # -- identity of a run ------------------------------------------------------------------
    def fingerprint(self, run: Run) -> str:
        """Hash of the code and the command that make the run (its pretraining's included)."""
        basis: dict[str, Any] = {
            "commit": self.code["commit"],
            "diff": self.code["diff_sha"],
            "command": self.fit_command(run)[1:],  # the interpreter's path is not the recipe
            "runs_dir": str(self.runs_dir),
        }
        if run.stage.pretrained_from is not None:
            source = Run(self.stage_by_name(run.stage.dataset, run.stage.pretrained_from), run.seed)
            basis["pretrained"] = self.fingerprint(source)
        return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]

    def record(self, run: Run) -> StageRecord | None:
        """The run's ``stage.json``, or None if it has none (or an unreadable one)."""
        path = self.run_dir(run) / "stage.json"
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return StageRecord(**data)
        except (json.JSONDecodeError, TypeError):
            return None

    def reuse_problem(self, run: Run) -> str | None:
        """Why the run's earlier result cannot be reused; None when it can (or never ran)."""
        record = self.record(run)
        if record is None:
            return None
        if record.status != "done":
            return f"its earlier attempt is {record.status}"
        if record.fingerprint != self.fingerprint(run):
            if record.commit != self.code["commit"]:
                return f"it was made by commit {record.commit[:10]}, the code is now at " + (
                    f"{self.code['commit'][:10]}"
                )
            return "it was made from other uncommitted changes or with other settings"
        if not self.checkpoint(run).is_file():
            return f"its checkpoint {self.checkpoint(run)} is missing"
        return None

    def is_done(self, run: Run) -> bool:
        """Whether the run finished, with this code and command, and its checkpoint exists."""
        record = self.record(run)
        return record is not None and self.reuse_problem(run) is None
