"""Command line of the protocol: ``make reproduce`` and ``make publish-results``."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from fusion.reproduce.plan import StepPlan
from fusion.reproduce.runner import Protocol, write_all_tables
from fusion.reproduce.runs import now
from fusion.reproduce.stages import DATASETS, EXPERIMENTS

RUN_DIR = Path("runs") / "reproduce"
"""Where a run goes by default: git-ignored, so a clone starts with nothing done."""

PUBLISHED = EXPERIMENTS / "results" / "reproduce"
"""Where ``--publish`` copies one complete run, to be committed."""


def saved_protocol(out_dir: Path, runs_dir: Path) -> Protocol:
    """The protocol of the plan saved in ``out_dir`` (its datasets, seeds, steps, budget).

    Raises:
        FileNotFoundError: If ``out_dir`` holds no ``plan.json``.
    """
    path = out_dir / "plan.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `make reproduce` first")
    saved = json.loads(path.read_text())
    basis = saved["basis"]
    protocol = Protocol(
        basis["datasets"],
        basis["budget_minutes"],
        out_dir,
        runs_dir,
        seeds=basis["seeds"],
        jobs=basis["jobs"],
        min_steps=basis["min_steps"],
        steps=basis["steps"],
    )
    protocol.plan = StepPlan.from_json(saved["plan"])
    return protocol


def publish(out_dir: Path, runs_dir: Path, target: Path = PUBLISHED) -> Path:
    """Copies one complete run, made by one clean commit, to ``target`` (replacing it).

    Raises:
        ValueError: If the tree has uncommitted changes, or a run of the plan is not done
            with the current code (failed, skipped, out of budget, or made by other code).
    """
    protocol = saved_protocol(out_dir, runs_dir)
    if protocol.code["dirty"]:
        raise ValueError(
            "the working tree has uncommitted changes: commit them, rerun `make reproduce` "
            "and publish that run, so that the results name the code that made them"
        )
    problems = []
    for run in protocol.runs():
        record = protocol.record(run)
        problem = "it never ran" if record is None else protocol.reuse_problem(run)
        if problem is not None:
            problems.append(f"{run.key}: {problem}")
    if problems:
        listed = "\n  ".join(problems[:20])
        raise ValueError(
            f"{len(problems)} run(s) of {out_dir} are not done with this code, so the run is "
            f"not complete; rerun the same `make reproduce` to finish it:\n  {listed}"
        )
    write_all_tables(protocol)
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(out_dir, target)
    protocol.out_dir = target
    protocol.append_protocol_record("published", source=str(out_dir), at=now())
    return target


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run, rewrite the tables or publish."""
    parser = argparse.ArgumentParser(
        prog="python -m fusion.reproduce",
        description="The paper's tables in miniature: equal steps per column, several seeds, "
        "fresh in a git-ignored folder, resumable, published explicitly.",
    )
    parser.add_argument("--budget", type=float, default=90.0, help="minutes for the whole protocol")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=sorted(DATASETS))
    parser.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="seeds per stage (fewer if the "
        "budget cannot give --min_steps steps per column; never below 2)",
    )
    parser.add_argument(
        "--min_steps",
        type=int,
        default=100,
        help="fewest segmentation steps per column before seeds are cut",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="train every run this many steps instead of planning from the budget",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, len(os.sched_getaffinity(0))),
        help="runs at once, each pinned to its share of the CPUs",
    )
    parser.add_argument("--out_dir", type=Path, default=RUN_DIR / "results")
    parser.add_argument("--runs_dir", type=Path, default=RUN_DIR / "train")
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--tables_only", action="store_true", help="only rewrite the tables of the run in --out_dir"
    )
    action.add_argument(
        "--publish", action="store_true", help=f"copy the complete run in --out_dir to {PUBLISHED}"
    )
    args = parser.parse_args(argv)  # fmt: skip
    if args.publish:
        print(f"Published {publish(args.out_dir, args.runs_dir)}")
        return
    if args.tables_only:
        for path in write_all_tables(saved_protocol(args.out_dir, args.runs_dir)):
            print(f"Wrote {path}")
        return
    Protocol(
        args.datasets,
        args.budget,
        args.out_dir,
        args.runs_dir,
        seeds=args.seeds,
        jobs=args.jobs,
        min_steps=args.min_steps,
        steps=args.steps,
    ).run()
