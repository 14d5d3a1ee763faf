"""Runs the protocol: plans equal steps (or resumes the plan), runs what is not done, tabulates."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fusion.reproduce.claims import write_claims
from fusion.reproduce.jobs import CALIBRATION_STEPS, CalibrationJob, StageJob
from fusion.reproduce.plan import KindTiming, StepPlan, fixed_plan, plan_steps
from fusion.reproduce.runs import ProtocolRuns, Run, now
from fusion.reproduce.scheduler import RunJob, run_jobs
from fusion.reproduce.stages import DATASETS, SLOWEST_SEGMENT_STAGES
from fusion.reproduce.tables import (
    Column,
    dataset_columns,
    empty_score,
    table_caption,
    write_contributions_summary,
    write_table,
)


class Protocol(ProtocolRuns):
    """The protocol's runs (`ProtocolRuns`), planned, scheduled and tabulated.

    The plan (steps and seeds) is kept in ``plan.json`` and reused by a rerun of the same
    command on the same code, so that the rerun resumes; every run not done with this code and
    command runs again (see `ProtocolRuns.reuse_problem`), concurrent runs pinned to their
    share of the CPUs (`fusion.reproduce.scheduler`). Its arguments are `ProtocolRuns`'.
    """

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
        run_jobs(jobs, self.slots)
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
        run_jobs(jobs, self.slots)
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


def write_all_tables(protocol: ProtocolRuns) -> list[Path]:
    """Every dataset's tables and contributions, and the claims table."""
    written: list[Path] = []
    all_columns: dict[str, dict[str, list[Column]]] = {}
    for dataset in protocol.datasets:
        tables = dataset_columns(protocol, dataset)
        all_columns[dataset] = tables
        metric = DATASETS[dataset].metric_title
        for name, columns in tables.items():
            caption = table_caption(protocol, dataset, columns)
            stem = protocol.out_dir / dataset / name
            written += write_table(stem, metric, columns, caption, protocol.plan.seeds)
        summary = write_contributions_summary(protocol, dataset, tables["table_ablations"])
        if summary is not None:
            written.append(summary)
    empties = {dataset: empty_score(protocol, dataset) for dataset in protocol.datasets}
    written.append(write_claims(protocol, all_columns, empties))
    return written
