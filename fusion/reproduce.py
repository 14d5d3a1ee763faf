"""``make reproduce``: the paper's Tables I to IV in miniature, within a wall-clock budget.

    python -m fusion.reproduce [--budget 90] [--datasets quad dfc2023 sen1floods11]
        [--out_dir experiments/results/reproduce] [--runs_dir runs/reproduce]

For each dataset the protocol runs, one stage after the other (the paper's columns):

* ``sup_multivit``: supervised MultiViT, trained on complete inputs (Tables I/II);
* ``sup_proposed``: the proposed model, supervised, random modality combinations (I/II);
* ``pretrain_g`` / ``pretrain_gc``: pretraining with reconstruction only, and with
  reconstruction + contrastive alignment;
* ``fine_g`` / ``fine_gc``: fine-tuning from each (Tables I/II);
* ``no_masked_attention``, ``no_random_combination``, ``no_modality_attention``: the
  supervised ablations of Tables III/IV.

Every segmentation stage is then evaluated on all ``2^M - 1`` modality subsets of the test
split (`fusion.evaluation`), and the per-dataset tables (``table_main.md``,
``table_ablations.md``, their CSV and a chart) are written under ``--out_dir``. Sen1Floods11
is not in the paper: there is no pretraining stage for its single chip, and its table holds
the supervised columns and the ablations.

Each stage runs ``fusion fit`` / ``fusion evaluate`` in its own process on the demo profiles
(``experiments/segment_cpu.yaml``, ``experiments/cpu.yaml``: 128 px tiles) with a time
budget (`fusion.budget.TimeBudget`), so a slower machine trains fewer steps and still ends on
time. The budget is shared out again before every stage from the time that is left, less the
evaluation time measured so far. A stage that fails is recorded (``stage.json`` and its log)
and the others go on; stages that depend on it are skipped. A rerun skips every stage whose
``stage.json`` says ``done``. The protocol (stages, budgets, seeds, machine) is saved as
``protocol.json`` beside the results, and each stage folder keeps the resolved config.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

EXPERIMENTS = Path("experiments")
SEGMENT_PROFILE = EXPERIMENTS / "segment_cpu.yaml"
PRETRAIN_PROFILE = EXPERIMENTS / "cpu.yaml"


@dataclass(frozen=True)
class DatasetProtocol:
    """What one dataset's miniature tables are made of.

    Attributes:
        segment_config: The paper-settings segmentation config.
        pretrain_config: The pretraining config, or None for no pretraining columns.
        data_root: ``--data.root`` of both, or None for the DataModule's default.
        metric: Column of ``subsets.csv`` shown in the tables (the paper's score).
        metric_title: Its heading.
    """

    segment_config: Path
    pretrain_config: Path | None
    data_root: str | None
    metric: str
    metric_title: str


DATASETS: dict[str, DatasetProtocol] = {
    "quad": DatasetProtocol(
        EXPERIMENTS / "segment_quad.yaml",
        EXPERIMENTS / "pretrain_quad.yaml",
        "data/quadruplets",
        "test/miou",
        "mIoU",
    ),
    "dfc2023": DatasetProtocol(
        EXPERIMENTS / "segment_dfc2023_semantic.yaml",
        EXPERIMENTS / "pretrain_dfc2023.yaml",
        "data/dfc2023",
        "test/miou",
        "mIoU (building semantics)",
    ),
    "sen1floods11": DatasetProtocol(
        EXPERIMENTS / "segment_sen1floods11.yaml", None, None, "test/iou_1", "water IoU"
    ),
}
"""The datasets ``make reproduce`` knows: the embedded ones under ``data/`` and the real chip."""


@dataclass(frozen=True)
class Stage:
    """One run of the protocol.

    Attributes:
        dataset: Key of `DATASETS`.
        name: Folder name and table key, e.g. ``sup_proposed``.
        title: Column title in the tables.
        kind: ``"segment"`` (fit then evaluate) or ``"pretrain"`` (fit only).
        args: Extra command-line arguments of ``fusion fit`` (overlays, overrides).
        pretrained_from: Stage whose last checkpoint initialises the backbone, or None.
        table: ``"main"``, ``"ablations"``, ``"both"`` or ``""`` (pretraining).
    """

    dataset: str
    name: str
    title: str
    kind: str
    args: tuple[str, ...] = ()
    pretrained_from: str | None = None
    table: str = "main"

    @property
    def key(self) -> str:
        """``dataset/name``."""
        return f"{self.dataset}/{self.name}"


def dataset_stages(dataset: str) -> list[Stage]:
    """The stages of one dataset, in the order they run (pretraining before fine-tuning)."""
    protocol = DATASETS[dataset]
    runs = EXPERIMENTS / "runs"
    stages = [
        Stage(
            dataset,
            "sup_multivit",
            "Sup. MultiViT",
            "segment",
            ("--config", str(runs / "multivit.yaml")),
        ),
        Stage(dataset, "sup_proposed", "Sup. Proposed", "segment", table="both"),
    ]
    if protocol.pretrain_config is not None:
        stages += [
            Stage(dataset, "pretrain_g", "Pretraining (G.)", "pretrain",
                  ("--model.init_args.contrastive", "false"), table=""),
            Stage(dataset, "pretrain_gc", "Pretraining (G. & C.)", "pretrain", table=""),
            Stage(dataset, "fine_g", "Fine. w/ G.", "segment", pretrained_from="pretrain_g"),
            Stage(dataset, "fine_gc", "Fine. w/ G. & C.", "segment", pretrained_from="pretrain_gc"),
        ]  # fmt: skip
    for name, title in (
        ("no_masked_attention", "w/o Mask"),
        ("no_random_combination", "w/o Random"),
        ("no_modality_attention", "w/o Attention"),
    ):
        overlay = ("--config", str(runs / f"{name}.yaml"))
        stages.append(Stage(dataset, name, title, "segment", overlay, table="ablations"))
    return stages


ABLATION_ORDER = ("no_masked_attention", "no_random_combination", "no_modality_attention")
"""Column order of the ablation tables, as in Tables III/IV (``w/ all`` last)."""


@dataclass
class StageRecord:
    """What a stage left behind (``stage.json``)."""

    status: str  # "done", "failed" or "skipped"
    budget_minutes: float = 0.0
    fit_seconds: float = 0.0
    evaluate_seconds: float = 0.0
    checkpoint: str = ""
    message: str = ""
    command: list[str] = field(default_factory=list)


class Protocol:
    """Runs the stages of `dataset_stages` within a budget and writes the tables.

    Args:
        datasets: Keys of `DATASETS` to run.
        budget_minutes: Wall-clock budget of the whole protocol (fits and evaluations).
        out_dir: Where results (tables, ``stage.json``, logs, configs) go; kept in git.
        runs_dir: Where checkpoints and training logs go.
        python: Interpreter that runs the stages.
    """

    def __init__(
        self,
        datasets: Sequence[str],
        budget_minutes: float,
        out_dir: Path,
        runs_dir: Path,
        python: str = sys.executable,
    ) -> None:
        unknown = [name for name in datasets if name not in DATASETS]
        if unknown or not datasets:
            raise ValueError(
                f"unknown or no datasets {list(datasets)}: choose from {sorted(DATASETS)}"
            )
        self.datasets = list(datasets)
        self.budget_minutes = budget_minutes
        self.out_dir = out_dir
        self.runs_dir = runs_dir
        self.python = python
        self.stages = [stage for name in self.datasets for stage in dataset_stages(name)]
        self.evaluate_seconds: dict[str, float] = {}  # dataset -> last measured evaluation
        self.segment_minutes: dict[str, float] = {}  # dataset -> training budget of its first

    def stage_dir(self, stage: Stage) -> Path:
        """Results folder of a stage."""
        return self.out_dir / stage.dataset / stage.name

    def record(self, stage: Stage) -> StageRecord | None:
        """The stage's ``stage.json``, or None if it never ran."""
        path = self.stage_dir(stage) / "stage.json"
        if not path.is_file():
            return None
        return StageRecord(**json.loads(path.read_text()))

    def save_record(self, stage: Stage, record: StageRecord) -> None:
        """Writes ``stage.json``."""
        folder = self.stage_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "stage.json").write_text(json.dumps(asdict(record), indent=2) + "\n")

    def fit_command(self, stage: Stage, minutes: float) -> list[str]:
        """``fusion fit`` of a stage, logging and checkpointing under ``runs_dir``."""
        protocol = DATASETS[stage.dataset]
        if stage.kind == "pretrain":
            configs = [protocol.pretrain_config, PRETRAIN_PROFILE]
        else:
            configs = [protocol.segment_config, SEGMENT_PROFILE]
        command = [self.python, "-m", "fusion", "fit"]
        for config in configs:
            command += ["--config", str(config)]
        command += list(stage.args)
        command += self.common_args(stage)
        command += self.logger_args(stage.dataset, stage.name)
        command += ["--time_budget", f"{minutes:.2f}"]
        command += ["--trainer.enable_progress_bar", "false"]
        if stage.pretrained_from is not None:
            source = self.record(self.stage_by_name(stage.dataset, stage.pretrained_from))
            command += ["--model.init_args.pretrained", source.checkpoint]
        return command

    def evaluate_command(self, stage: Stage, checkpoint: str) -> list[str]:
        """``fusion evaluate`` of a segmentation stage, writing into its results folder."""
        protocol = DATASETS[stage.dataset]
        command = [self.python, "-m", "fusion", "evaluate"]
        for config in (protocol.segment_config, SEGMENT_PROFILE):
            command += ["--config", str(config)]
        command += list(stage.args) + self.common_args(stage)
        command += self.logger_args(stage.dataset, "evaluate")
        return command + ["--ckpt_path", checkpoint, "--out_dir", str(self.stage_dir(stage))]

    def logger_args(self, dataset: str, name: str) -> list[str]:
        """A CSV logger writing to ``runs_dir/<dataset>/<name>`` (no W&B)."""
        logger = {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(self.runs_dir / dataset), "name": name},
        }
        return ["--trainer.logger", json.dumps(logger)]

    def common_args(self, stage: Stage) -> list[str]:
        """The data root, when the dataset has one."""
        root = DATASETS[stage.dataset].data_root
        return ["--data.root", root] if root else []

    def stage_by_name(self, dataset: str, name: str) -> Stage:
        """The stage ``dataset/name``."""
        return next(s for s in self.stages if s.dataset == dataset and s.name == name)

    def plan_minutes(self, stage: Stage, remaining: Sequence[Stage], left_seconds: float) -> float:
        """The training budget of ``stage``: an equal share of what is left, less evaluation.

        Every remaining stage gets an equal share of the time left; a segmentation stage
        spends part of its share on evaluation (the last evaluation of the same dataset, or a
        minute before the first) and on starting two processes (about 20 s each). The columns
        of one table must be comparable, so no segmentation stage of a dataset trains longer
        than its first one did: time saved by a quicker evaluation than expected is left over
        rather than given to later columns (it is given back only when stages run behind).
        """
        share = left_seconds / max(len(remaining), 1)
        overhead = 20.0
        if stage.kind == "segment":
            overhead += 20.0 + self.evaluate_seconds.get(stage.dataset, 60.0)
        minutes = max((share - overhead) / 60.0, 0.5)
        if stage.kind == "segment":
            first = self.segment_minutes.setdefault(stage.dataset, minutes)
            minutes = min(minutes, first)
        return minutes

    def run_logged(self, command: list[str], log: Path) -> int:
        """Runs a command with its output in ``log``; returns its exit code."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as handle:
            handle.write(" ".join(command) + "\n\n")
            handle.flush()
            env = os.environ | {"WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
            return subprocess.run(
                command, stdout=handle, stderr=subprocess.STDOUT, env=env
            ).returncode

    def run_stage(self, stage: Stage, minutes: float) -> StageRecord:
        """Fits (and evaluates) one stage; never raises for a failed run."""
        folder = self.stage_dir(stage)
        run_dir = self.runs_dir / stage.dataset / stage.name
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished earlier attempt
        command = self.fit_command(stage, minutes)
        record = StageRecord("failed", budget_minutes=round(minutes, 2), command=command)
        start = time.monotonic()
        code = self.run_logged(command, folder / "fit.log")
        record.fit_seconds = round(time.monotonic() - start, 1)
        checkpoint = run_dir / "version_0" / "checkpoints" / "last.ckpt"
        if code != 0 or not checkpoint.is_file():
            record.message = f"fit exited with {code}; see {folder / 'fit.log'}"
            return record
        record.checkpoint = str(checkpoint)
        config = run_dir / "version_0" / "config.yaml"
        if config.is_file():
            shutil.copy(config, folder / "config.yaml")
        if stage.kind == "segment":
            start = time.monotonic()
            code = self.run_logged(
                self.evaluate_command(stage, str(checkpoint)), folder / "evaluate.log"
            )
            record.evaluate_seconds = round(time.monotonic() - start, 1)
            self.evaluate_seconds[stage.dataset] = record.evaluate_seconds
            if code != 0 or not (folder / "subsets.csv").is_file():
                record.message = f"evaluate exited with {code}; see {folder / 'evaluate.log'}"
                return record
        record.status = "done"
        return record

    def run(self) -> None:
        """Runs every stage not done yet, then writes the tables."""
        import torch

        from fusion.hardware import choose_precision, detect_hardware

        deadline = time.monotonic() + self.budget_minutes * 60.0
        todo = [stage for stage in self.stages if not self.is_done(stage)]
        for stage in self.stages:  # a rerun keeps the columns' budget of the first run
            record = self.record(stage)
            if stage.kind == "segment" and record is not None and record.status == "done":
                self.segment_minutes.setdefault(stage.dataset, record.budget_minutes)
        hardware = detect_hardware()
        protocol = {
            "budget_minutes": self.budget_minutes,
            "datasets": self.datasets,
            "stages": [asdict(stage) for stage in self.stages],
            "machine": asdict(hardware),
            "precision": asdict(choose_precision(hardware)),
            "threads": torch.get_num_threads(),
            "cpus_usable": len(os.sched_getaffinity(0)),
            "seed": 0,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "protocol.json").write_text(json.dumps(protocol, indent=2) + "\n")
        print(
            f"Reproduction protocol: {len(self.stages)} stages over {', '.join(self.datasets)}; "
            f"{len(self.stages) - len(todo)} already done, {len(todo)} to run in "
            f"{self.budget_minutes:.0f} min (about {self.budget_minutes / max(len(todo), 1):.1f} "
            f"min each, evaluation included) on {hardware.cpu_capability} "
            f"({protocol['precision']['precision']}). Results: {self.out_dir}",
            flush=True,
        )
        for index, stage in enumerate(todo):
            left = deadline - time.monotonic()
            if stage.pretrained_from and not self.is_done(
                self.stage_by_name(stage.dataset, stage.pretrained_from)
            ):
                record = StageRecord("skipped", message=f"{stage.pretrained_from} did not finish")
            else:
                minutes = self.plan_minutes(stage, todo[index:], left)
                print(
                    f"[{index + 1}/{len(todo)}] {stage.key}: training {minutes:.1f} min ...",
                    flush=True,
                )
                record = self.run_stage(stage, minutes)
            self.save_record(stage, record)
            print(
                f"[{index + 1}/{len(todo)}] {stage.key}: {record.status} "
                f"(fit {record.fit_seconds / 60:.1f} min, "
                f"evaluate {record.evaluate_seconds / 60:.1f} min"
                f"{', ' + record.message if record.message else ''}); "
                f"{(deadline - time.monotonic()) / 60:.1f} min left",
                flush=True,
            )
        for dataset in self.datasets:
            for path in write_dataset_tables(self.out_dir, dataset, dataset_stages(dataset)):
                print(f"Wrote {path}")

    def is_done(self, stage: Stage) -> bool:
        """Whether the stage finished in an earlier or this run."""
        record = self.record(stage)
        return record is not None and record.status == "done"


def read_scores(path: Path, metric: str) -> dict[str, float]:
    """Subset -> score of one metric from an evaluation's ``subsets.csv``.

    Raises:
        KeyError: If the CSV has no column ``metric``.
    """
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    if rows and metric not in rows[0]:
        raise KeyError(f"{path} has no column {metric!r}; columns: {list(rows[0])}")
    return {row["modalities"]: float(row[metric]) for row in rows if row[metric] != ""}


def comparison_table(
    out_dir: Path, dataset: str, stages: Sequence[Stage]
) -> tuple[list[str], list[str], dict[str, dict[str, float]]]:
    """Rows (subsets, in the evaluation's order), column titles and scores of some stages.

    Stages without results get empty columns.
    """
    protocol = DATASETS[dataset]
    rows: list[str] = []
    scores: dict[str, dict[str, float]] = {}
    for stage in stages:
        path = out_dir / dataset / stage.name / "subsets.csv"
        scores[stage.title] = read_scores(path, protocol.metric) if path.is_file() else {}
        rows += [subset for subset in scores[stage.title] if subset not in rows]
    return rows, [stage.title for stage in stages], scores


def write_dataset_tables(out_dir: Path, dataset: str, stages: Sequence[Stage]) -> list[Path]:
    """Writes ``table_main`` and ``table_ablations`` (Markdown, CSV, PNG) of one dataset.

    The best score of each row is in bold, as in the paper.
    """
    by_name = {stage.name: stage for stage in stages}
    main = [s for s in stages if s.table in ("main", "both")]
    ablations = [by_name[name] for name in ABLATION_ORDER if name in by_name]
    ablations.append(
        Stage(dataset, "sup_proposed", "w/ all", "segment", table="both")
    )  # the proposed model is the ablations' reference column
    written = []
    for name, columns in (("table_main", main), ("table_ablations", ablations)):
        rows, titles, scores = comparison_table(out_dir, dataset, columns)
        if not rows:
            continue
        written += write_table(out_dir / dataset / name, dataset, rows, titles, scores)
    return written


def write_table(
    stem: Path,
    dataset: str,
    rows: Sequence[str],
    titles: Sequence[str],
    scores: dict[str, dict[str, float]],
) -> list[Path]:
    """One comparison as ``<stem>.md``, ``<stem>.csv`` and ``<stem>.png``.

    The Markdown table ends with each column's mean over the subsets (the mean score when the
    available modalities are a uniformly random non-empty subset).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = DATASETS[dataset].metric_title
    lines = [f"| Multimodal input ({metric}) | " + " | ".join(titles) + " |"]
    lines.append("|---|" + "---|" * len(titles))
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["modalities", *titles])
        for row in rows:
            values = [scores[title].get(row) for title in titles]
            shown = [None if v is None else f"{v:.3f}" for v in values]
            best = max((float(v) for v in shown if v is not None), default=None)
            cells = ["-" if v is None else (f"**{v}**" if float(v) == best else v) for v in shown]
            lines.append(f"| {row.replace('+', ', ').upper()} | " + " | ".join(cells) + " |")
            writer.writerow([row, *("" if v is None else f"{v:.4f}" for v in values)])
    means = []
    for title in titles:
        values = [scores[title][row] for row in rows if row in scores[title]]
        complete = len(values) == len(rows)
        means.append(f"{sum(values) / len(values):.3f}" if values and complete else "-")
    lines.append("| *mean over the subsets* | " + " | ".join(means) + " |")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")

    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) * len(titles) / 2), 3.6))
    width = 0.8 / len(titles)
    for column, title in enumerate(titles):
        heights = [scores[title].get(row, 0.0) for row in rows]
        positions = [index + (column - (len(titles) - 1) / 2) * width for index in range(len(rows))]
        axis.bar(positions, heights, width, label=title)
    axis.set_xticks(range(len(rows)), [row.replace("+", "\n") for row in rows], fontsize=7)
    axis.set_ylabel(metric)
    axis.set_title(f"{dataset}: {stem.name.replace('_', ' ')}")
    axis.legend(fontsize=7, ncols=len(titles))
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=90)
    plt.close(figure)
    return [stem.with_suffix(suffix) for suffix in (".md", ".csv", ".png")]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line of the protocol (``make reproduce``)."""
    parser = argparse.ArgumentParser(
        prog="python -m fusion.reproduce", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--budget", type=float, default=90.0, help="minutes for the whole protocol")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=sorted(DATASETS))
    parser.add_argument("--out_dir", type=Path, default=EXPERIMENTS / "results" / "reproduce")
    parser.add_argument("--runs_dir", type=Path, default=Path("runs") / "reproduce")
    parser.add_argument("--tables_only", action="store_true", help="only rewrite the tables")
    args = parser.parse_args(argv)
    protocol = Protocol(args.datasets, args.budget, args.out_dir, args.runs_dir)
    if args.tables_only:
        for dataset in protocol.datasets:
            for path in write_dataset_tables(args.out_dir, dataset, dataset_stages(dataset)):
                print(f"Wrote {path}")
        return
    protocol.run()


if __name__ == "__main__":
    main()
