"""What the protocol's scheduler runs: calibration fits and the stages' runs, one slot each."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from fusion.reproduce.plan import KindTiming
from fusion.reproduce.runs import ProtocolRuns, Run, StageRecord, now
from fusion.reproduce.scheduler import RunJob
from fusion.reproduce.stages import Stage

CALIBRATION_STEPS = 8
"""Training steps of a calibration fit (the first, which pays one-time costs, is not timed)."""


class CalibrationJob(RunJob):
    """A short fit of one stage (and, if asked, an evaluation of it over every subset), timed.

    Args:
        protocol: The protocol.
        stage: The stage to time.
        folder: Where the calibration's logs and figures go.
        evaluate: Whether to time ``fusion evaluate`` on the fit's checkpoint too (one
            segmentation stage per dataset is enough: the evaluation's cost does not depend
            on the column).
    """

    def __init__(self, protocol: ProtocolRuns, stage: Stage, folder: Path, evaluate: bool) -> None:
        self.protocol = protocol
        self.stage = stage
        self.evaluate = evaluate
        self.folder = folder / stage.dataset / stage.name
        self.log = self.folder / "fit.log"
        self.timing: KindTiming | None = None
        self._start = 0.0
        self._fit_wall = 0.0

    def next_command(self) -> tuple[list[str], Path]:
        """A fit of `CALIBRATION_STEPS` steps as one short epoch, validated and checkpointed."""
        protocol = self.protocol
        command = protocol.base_command(self.stage, "fit")
        command += ["--seed_everything", "0", "--time_budget", "null"]
        command += ["--trainer.max_epochs", "1"]
        command += ["--trainer.limit_train_batches", str(CALIBRATION_STEPS)]
        logger = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {
                "save_dir": str(protocol.runs_dir / "calibration" / self.stage.dataset),
                "name": self.stage.name,
            },
        }
        command += ["--trainer.logger", json.dumps(logger)]
        command += protocol.timer_args(self.folder / "timing.json")
        command += ["--trainer.enable_progress_bar", "false"]
        self._start = time.monotonic()
        return command, self.log

    def command_ended(self, code: int) -> tuple[list[str], Path] | None:
        """After the fit, the evaluation (segmentation); then read the figures."""
        elapsed = time.monotonic() - self._start
        if self.timing is None and not self._fit_wall:
            self._fit_wall = elapsed
            timing_file = self.folder / "timing.json"
            if code != 0 or not timing_file.is_file():
                self.ended = True
                return None
            measured = json.loads(timing_file.read_text())
            self.timing = KindTiming(
                wall_seconds=elapsed,
                steps=measured["steps"],
                step_seconds=measured["step_seconds"] or elapsed / max(measured["steps"], 1),
                steps_per_epoch=measured.get("loader_batches") or measured["steps_per_epoch"],
                validation_seconds=measured["validation_seconds"] or 0.0,
                batch_size=measured["batch_size"],
            )
            if self.evaluate:
                checkpoint = (
                    self.protocol.runs_dir / "calibration" / self.stage.dataset / self.stage.name
                )
                checkpoint = checkpoint / "version_0" / "checkpoints" / "last.ckpt"
                run = Run(self.stage, 0)
                command = self.protocol.evaluate_command(run, checkpoint, self.folder)
                self._start = time.monotonic()
                return command, self.folder / "evaluate.log"
            self.ended = True
            return None
        if code != 0 and self.timing is not None:
            self.timing = None  # an evaluation that fails now would fail in every stage
        elif self.timing is not None:
            self.timing.evaluate_seconds = elapsed
        self.ended = True
        return None


class StageJob(RunJob):
    """One run: fit, then (segmentation, baseline) evaluate; writes its ``stage.json``.

    A segmentation or pretraining run must train exactly the plan's steps; a baseline run has
    none to check (it records 0 steps) and needs only its checkpoint and ``subsets.csv``.
    """

    def __init__(self, protocol: ProtocolRuns, run: Run, deadline: float, index: int, total: int):
        self.protocol = protocol
        self.run = run
        self.deadline = deadline
        self.label = f"[{index + 1}/{total}] {run.key}"
        self.record = StageRecord("failed")
        self._start = 0.0
        self._phase = "fit"

    def expected_seconds(self) -> float:
        """The plan's wall time of this run."""
        plan = self.protocol.plan.datasets[self.run.stage.dataset]
        kind = self.run.stage.kind
        if kind == "baseline":
            return plan.baseline_seconds
        return plan.pretrain_seconds if kind == "pretrain" else plan.segment_seconds

    def finish(self, record: StageRecord) -> None:
        """Saves ``stage.json`` and prints the outcome."""
        record.finished = now()
        folder = self.protocol.run_dir(self.run)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stage.json").write_text(json.dumps(asdict(record), indent=2) + "\n")
        left = (self.deadline - time.monotonic()) / 60
        detail = f" ({record.message})" if record.message else ""
        timing = (
            f"fit {record.fit_seconds / 60:.1f} min, "
            f"evaluate {record.evaluate_seconds / 60:.1f} min"
            if record.status in ("done", "failed")
            else ""
        )
        print(f"{self.label}: {record.status} {timing}{detail}; {left:.1f} min left", flush=True)
        self.ended = True

    def next_command(self) -> tuple[list[str], Path] | None:
        """The fit, unless its pretraining did not finish or the budget has run out."""
        protocol, run = self.protocol, self.run
        folder = protocol.run_dir(run)
        shutil.rmtree(folder, ignore_errors=True)  # old outputs never reach a table
        shutil.rmtree(protocol.checkpoint(run).parents[2], ignore_errors=True)
        plan = protocol.plan.datasets[run.stage.dataset]
        steps = plan.pretrain_steps if run.stage.kind == "pretrain" else plan.segment_steps
        batch = plan.pretrain_batch if run.stage.kind == "pretrain" else plan.segment_batch
        if run.stage.kind == "baseline":  # trains nothing; its batch is the config's
            steps, batch = 0, None
        self.record = StageRecord(
            "failed",
            dataset=run.stage.dataset,
            stage=run.stage.name,
            seed=run.seed,
            steps=steps,
            batch_size=batch,
            fingerprint=protocol.fingerprint(run),
            commit=protocol.code["commit"],
            dirty=protocol.code["dirty"],
            started=now(),
            versions=protocol.versions,
            machine=protocol.machine,
            command=protocol.fit_command(run),
        )
        if run.stage.pretrained_from is not None:
            source = Run(
                protocol.stage_by_name(run.stage.dataset, run.stage.pretrained_from), run.seed
            )
            if not protocol.is_done(source):
                self.record.status = "skipped"
                self.record.message = (
                    f"{run.stage.pretrained_from} (seed {run.seed}) did not finish"
                )
                self.finish(self.record)
                return None
        budget = protocol.budget_minutes * 60.0
        projected = time.monotonic() + self.expected_seconds()
        if projected > self.deadline + 0.1 * budget:
            self.record.status = "not_run"
            self.record.message = (
                f"the budget ran out: it would end {(projected - self.deadline) / 60:.1f} min "
                "past the budget"
            )
            self.finish(self.record)
            return None
        doing = "one untrained pass" if run.stage.kind == "baseline" else f"{steps} steps"
        print(f"{self.label}: {doing} ...", flush=True)
        self._start = time.monotonic()
        return self.record.command, folder / "fit.log"

    def command_ended(self, code: int) -> tuple[list[str], Path] | None:
        """Checks the fit (steps trained, checkpoint) and starts the evaluation; or records."""
        protocol, run, record = self.protocol, self.run, self.record
        folder = protocol.run_dir(run)
        elapsed = round(time.monotonic() - self._start, 1)
        if self._phase == "fit":
            record.fit_seconds = elapsed
            checkpoint = protocol.checkpoint(run)
            timing = folder / "timing.json"
            if timing.is_file():
                record.measured = json.loads(timing.read_text())
            if code != 0 or not checkpoint.is_file():
                record.message = f"fit exited with {code}; see {folder / 'fit.log'}"
                self.finish(record)
                return None
            if record.batch_size is None:  # --steps: the batch is the config's
                record.batch_size = record.measured.get("batch_size")
            trained = record.measured.get("steps")
            if run.stage.kind != "baseline" and trained != record.steps:
                record.message = f"trained {trained} steps, the plan says {record.steps}"
                self.finish(record)
                return None
            record.checkpoint = str(checkpoint)
            config = checkpoint.parents[1] / "config.yaml"
            if config.is_file():
                shutil.copy(config, folder / "config.yaml")
            if run.stage.kind == "pretrain":
                record.status = "done"
                self.finish(record)
                return None
            self._phase = "evaluate"
            self._start = time.monotonic()
            return protocol.evaluate_command(run, checkpoint, folder), folder / "evaluate.log"
        record.evaluate_seconds = elapsed
        if code != 0 or not (folder / "subsets.csv").is_file():
            record.message = f"evaluate exited with {code}; see {folder / 'evaluate.log'}"
        else:
            record.status = "done"
        self.finish(record)
        return None
