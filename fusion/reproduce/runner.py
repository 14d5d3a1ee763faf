"""Runs the protocol's stages (each seed a separate run) with equal steps, fresh and resumable."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fusion.reproduce.jobs import (
    CALIBRATION_STEPS,
    CalibrationJob,
    Run,
    RunJob,
    StageJob,
    StageRecord,
    now,
)
from fusion.reproduce.plan import KindTiming, StepPlan, fixed_plan, plan_steps
from fusion.reproduce.provenance import git_state, machine_record, package_versions
from fusion.reproduce.stages import (
    DATASETS,
    PRETRAIN_PROFILE,
    SEGMENT_PROFILE,
    SLOWEST_SEGMENT_STAGES,
    Stage,
    dataset_stages,
)


def cpu_slots(jobs: int) -> list[list[int]]:
    """The usable CPUs split into ``jobs`` disjoint groups, one per concurrent run."""
    cpus = sorted(os.sched_getaffinity(0))
    jobs = max(1, min(jobs, len(cpus)))
    return [cpus[index::jobs] for index in range(jobs)]


class Protocol:
    """The stages of `dataset_stages` for every seed, with step counts fixed up front.

    A run counts as done only when its ``stage.json`` says so, its checkpoint exists, and it
    was made by the same code (commit and uncommitted changes) with the same command (steps,
    seed, batch, configs, pretraining source); anything else runs again, after its old
    outputs are cleared. The plan (steps and seeds) is kept in ``plan.json`` and reused by a
    rerun of the same command on the same code, so that the rerun resumes.

    Args:
        datasets: Keys of `DATASETS` to run.
        budget_minutes: Wall-clock budget of the whole protocol.
        out_dir: Results (tables, ``stage.json``, logs, configs); git-ignored by default.
        runs_dir: Checkpoints and training logs.
        seeds: Seeds asked for (fewer when the budget cannot give them `min_steps`).
        jobs: Runs at once, each pinned to its share of the CPUs.
        min_steps: Fewest segmentation steps worth training (see `plan_steps`).
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
        """Adds `fusion.callbacks.StepTimer`, writing its figures to ``path``."""
        timer = {"class_path": "fusion.callbacks.StepTimer", "init_args": {"path": str(path)}}
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

    # -- running ----------------------------------------------------------------------------
    def launch(self, command: list[str], log: Path, slot: list[int]) -> subprocess.Popen:
        """Starts a command pinned to ``slot``'s CPUs with as many torch threads."""
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = log.open("w")
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        env = os.environ | {
            "WANDB_MODE": os.environ.get("WANDB_MODE", "offline"),
            "OMP_NUM_THREADS": str(len(slot)),
        }

        def pin() -> None:
            os.sched_setaffinity(0, slot)

        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, preexec_fn=pin
        )
        handle.close()
        return process

    def run_jobs(self, jobs: list[RunJob]) -> None:
        """Runs jobs (each a sequence of commands) on the CPU slots, in order as they are ready.

        A job is ready when the jobs it waits for have ended; ``job.start`` may decline to run
        (a failed dependency, the budget) and ``job.next_command`` gives its next command.
        """
        pending = list(jobs)
        running: dict[int, tuple[RunJob, subprocess.Popen]] = {}
        free = list(range(len(self.slots)))
        while pending or running:
            for slot in list(free):
                ready = next((job for job in pending if job.ready()), None)
                if ready is None:
                    break
                pending.remove(ready)
                step = ready.next_command()
                if step is None:
                    continue
                free.remove(slot)
                running[slot] = (ready, self.launch(*step, self.slots[slot]))
            finished = [
                slot for slot, (_, process) in running.items() if process.poll() is not None
            ]
            if not finished:
                time.sleep(0.05)
                continue
            for slot in finished:
                job, process = running.pop(slot)
                step = job.command_ended(process.returncode)
                if step is not None:  # the job's next command (evaluation) keeps the slot
                    running[slot] = (job, self.launch(*step, self.slots[slot]))
                else:
                    free.append(slot)
                    free.sort()

    # -- calibration ------------------------------------------------------------------------
    def calibrate(self) -> dict[str, dict[str, KindTiming]]:
        """Times the slowest columns' steps, validation and evaluation of every dataset."""
        folder = self.out_dir / "calibration"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(self.runs_dir / "calibration", ignore_errors=True)
        jobs: list[RunJob] = []
        for dataset in self.datasets:
            names = list(SLOWEST_SEGMENT_STAGES)
            if DATASETS[dataset].pretrain_config is not None:
                names.append("pretrain_gc")
            for index, name in enumerate(names):
                stage = self.stage_by_name(dataset, name)
                jobs.append(CalibrationJob(self, stage, folder, evaluate=index == 0))
        print(
            f"Calibrating: {len(jobs)} short fits of {CALIBRATION_STEPS} steps (the slowest "
            f"columns) and an evaluation per dataset, on {len(self.slots)} job slot(s) ...",
            flush=True,
        )
        self.run_jobs(jobs)
        timings: dict[str, dict[str, KindTiming]] = {}
        for dataset in self.datasets:
            measured = [job for job in jobs if job.stage.dataset == dataset]
            failed = [job for job in measured if job.timing is None]
            if failed:
                logs = ", ".join(str(job.log) for job in failed)
                raise RuntimeError(f"calibration of {dataset} failed; see {logs}")
            segment = [job.timing for job in measured if job.stage.kind == "segment"]
            slowest = max(segment, key=lambda timing: timing.step_seconds)
            slowest.evaluate_seconds = max(timing.evaluate_seconds for timing in segment)
            slowest.wall_seconds = max(timing.wall_seconds for timing in segment)
            timings[dataset] = {"segment": slowest}
            pretrain = [job.timing for job in measured if job.stage.kind == "pretrain"]
            if pretrain:
                timings[dataset]["pretrain"] = pretrain[0]
        return timings

    def make_plan(self, seconds: float) -> StepPlan:
        """The saved plan when this command on this code made it, else a new one."""
        path = self.out_dir / "plan.json"
        basis = self.plan_basis()
        if path.is_file():
            saved = json.loads(path.read_text())
            if saved.get("basis") == basis:
                print(f"Resuming the plan of {saved['created']} ({path})", flush=True)
                return StepPlan.from_json(saved["plan"])
            print(f"{path} was made by other code or settings: planning anew", flush=True)
        if self.fixed_steps is not None:
            pretrains = {d: DATASETS[d].pretrain_config is not None for d in self.datasets}
            plan = fixed_plan(pretrains, self.fixed_steps, self.seeds_requested)
        else:
            start = time.monotonic()
            timings = self.calibrate()
            seconds -= time.monotonic() - start
            runs_per_seed = {
                d: {
                    kind: sum(s.kind == kind for s in self.stages if s.dataset == d)
                    for kind in timings[d]
                }
                for d in self.datasets
            }
            baselines = {
                d: sum(s.kind == "baseline" for s in self.stages if s.dataset == d)
                for d in self.datasets
            }
            plan = plan_steps(
                timings,
                runs_per_seed,
                seconds,
                len(self.slots),
                self.seeds_requested,
                self.min_steps,
                baselines,
            )
            plan.calibration = {
                d: {kind: asdict(timing) for kind, timing in kinds.items()}
                for d, kinds in timings.items()
            }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        saved = {"basis": basis, "created": now(), "plan": plan.to_json()}
        path.write_text(json.dumps(saved, indent=2) + "\n")
        return plan

    def plan_basis(self) -> dict[str, Any]:
        """What a plan depends on: the code, the budget, the datasets, seeds, jobs, steps."""
        return {
            "commit": self.code["commit"],
            "diff": self.code["diff_sha"],
            "budget_minutes": self.budget_minutes,
            "datasets": self.datasets,
            "seeds": self.seeds_requested,
            "jobs": len(self.slots),
            "min_steps": self.min_steps,
            "steps": self.fixed_steps,
        }

    def append_protocol_record(self, event: str, **extra: Any) -> None:
        """Appends one line to ``protocol.jsonl`` (never rewritten)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "event": event,
            "time": now(),
            "code": self.code,
            "versions": self.versions,
            "machine": self.machine,
            "budget_minutes": self.budget_minutes,
            "datasets": self.datasets,
            "jobs": len(self.slots),
            "threads_per_job": len(self.slots[0]),
            **extra,
        }
        with (self.out_dir / "protocol.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def run(self) -> list[Path]:
        """Plans (or resumes the plan), runs every run not done yet, writes the tables.

        Returns:
            The table files written.
        """
        from fusion.reproduce.tables import write_all_tables

        start = time.monotonic()
        deadline = start + self.budget_minutes * 60.0
        if self.code["dirty"]:
            print(
                "Note: the working tree has uncommitted changes; the results record them "
                "(dirty) and cannot be published.",
                flush=True,
            )
        self.plan = self.make_plan(self.budget_minutes * 60.0)
        self.append_protocol_record("start", plan=self.plan.to_json())
        print(self.describe_plan(), flush=True)
        todo = []
        for run in self.runs():
            problem = self.reuse_problem(run)
            if problem is not None:
                print(f"{run.key}: runs again, since {problem}", flush=True)
            if problem is not None or self.record(run) is None:
                todo.append(run)
        print(
            f"{len(self.runs()) - len(todo)} run(s) already done with this code and plan, "
            f"{len(todo)} to run; results in {self.out_dir}",
            flush=True,
        )
        jobs = [StageJob(self, run, deadline, index, len(todo)) for index, run in enumerate(todo)]
        by_key = {job.run.key: job for job in jobs}
        for job in jobs:
            stage = job.run.stage
            if stage.pretrained_from is not None:
                source = Run(self.stage_by_name(stage.dataset, stage.pretrained_from), job.run.seed)
                job.waits_for = by_key.get(source.key)
        self.run_jobs(jobs)
        counts: dict[str, int] = {}
        for run in self.runs():
            record = self.record(run)
            status = record.status if record else "missing"
            counts[status] = counts.get(status, 0) + 1
        self.append_protocol_record(
            "end", wall_minutes=round((time.monotonic() - start) / 60, 2), runs=counts
        )
        written = write_all_tables(self)
        for path in written:
            print(f"Wrote {path}")
        stopped = counts.get("not_run", 0)
        print(
            f"Protocol finished in {(time.monotonic() - start) / 60:.1f} min: "
            + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            + (
                f". {stopped} run(s) did not fit the budget; rerun the same command to finish them."
                if stopped
                else ""
            ),
            flush=True,
        )
        return written

    def describe_plan(self) -> str:
        """The plan in a few lines."""
        assert self.plan is not None
        lines = [
            f"Reproduction protocol: {len(self.stages)} stages x {self.plan.seeds} seed(s) over "
            f"{', '.join(self.datasets)} in {self.budget_minutes:g} min on "
            f"{self.machine['cpu_class']} ({self.machine['precision']}), {len(self.slots)} "
            f"job(s) of {len(self.slots[0])} thread(s); code {self.code['commit'][:10]}"
            + (" (dirty)" if self.code["dirty"] else "")
        ]
        for dataset, plan in self.plan.datasets.items():
            line = (
                f"  {dataset}: every segmentation column {plan.segment_steps} steps of batch "
                f"{plan.segment_batch or 'as configured'}"
            )
            if plan.pretrain_steps:
                line += f"; both pretrainings {plan.pretrain_steps} steps"
            if plan.segment_seconds:
                line += f" (about {plan.segment_seconds / 60:.1f} min per segmentation run)"
            baselines = sum(s.kind == "baseline" for s in self.stages if s.dataset == dataset)
            if baselines:
                line += f"; {baselines} threshold baselines, untrained"
                if plan.baseline_seconds:
                    line += f" ({plan.baseline_seconds:.0f} s allowed per run)"
            lines.append(line)
        if self.plan.note:
            lines.append(f"  Note: {self.plan.note}")
        return "\n".join(lines)
