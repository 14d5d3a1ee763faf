"""The protocol's tables: mean and spread over seeds of finished runs only, with provenance.

A cell is the mean and sample standard deviation over the seeds whose run finished with the
current code and plan; a cell with fewer seeds than planned says how many, a column with none
shows a dash, and a footnote under the table names every run that did not finish and why.
Each table's caption names the commit, the equal step count and batch of its columns, and the
seeds.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusion.reproduce.runs import ProtocolRuns, Run
from fusion.reproduce.stages import ABLATION_ORDER, DATASETS, MAIN_ORDER, Stage


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


@dataclass
class Column:
    """One column of a table: a stage's scores per subset over the seeds that finished.

    Attributes:
        stage: The stage.
        title: Column title.
        scores: Subset (``"s1+s2"``) -> one score per finished seed.
        seeds_done: Seeds whose run finished.
        problems: ``"seed 1: failed (why)"`` for every planned run that did not finish.
        steps: Training steps of the finished runs (one value when trained alike).
        batches: Their batch sizes.
    """

    stage: Stage
    title: str
    scores: dict[str, list[float]] = field(default_factory=dict)
    seeds_done: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    steps: set[int] = field(default_factory=set)
    batches: set[int | None] = field(default_factory=set)


@dataclass(frozen=True)
class Cell:
    """Mean, sample standard deviation (0 for one seed) and number of seeds of a cell."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Cell:
        """The cell of some per-seed values."""
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        return cls(statistics.fmean(values), spread, len(values))


def collect_column(protocol: ProtocolRuns, stage: Stage, title: str | None = None) -> Column:
    """Reads a stage's finished runs (this code and plan only) for every planned seed."""
    column = Column(stage, title or stage.title)
    metric = DATASETS[stage.dataset].metric
    for seed in range(protocol.plan.seeds):
        run = Run(stage, seed)
        record = protocol.record(run)
        problem = protocol.reuse_problem(run) if record is not None else "never ran"
        if problem is None:
            try:
                scores = read_scores(protocol.run_dir(run) / "subsets.csv", metric)
            except (OSError, KeyError) as error:
                problem = f"unreadable results ({error})"
        if problem is not None:
            why = record.message if record is not None and record.message else problem
            status = record.status if record is not None else "missing"
            column.problems.append(f"seed {seed}: {status} ({why})")
            continue
        column.seeds_done.append(seed)
        column.steps.add(record.steps)
        column.batches.add(record.batch_size)
        for subset, value in scores.items():
            column.scores.setdefault(subset, []).append(value)
    return column


BASELINE_NOTE = (
    "The threshold columns are classical baselines, not trained: one pass over the training "
    "split (where the fitted rule fits its thresholds), run with every seed like the other "
    "columns; the fixed and Otsu rules do not depend on the seed (spread 0), the fitted one "
    "only through the random modality subsets of its training pass."
)
"""Footnote of a table with baseline columns: how they ran and why their spread is 0."""


def table_caption(protocol: ProtocolRuns, dataset: str, columns: Sequence[Column]) -> str:
    """Commit, training (as the finished runs recorded it), seeds and machine of a table.

    The baseline columns train nothing, so they take no part in the step count: the caption
    says so in a sentence of its own.
    """
    code = protocol.code
    seeds = protocol.plan.seeds
    baselines = [column for column in columns if column.stage.kind == "baseline"]
    columns = [column for column in columns if column.stage.kind != "baseline"]
    steps = set().union(*(column.steps for column in columns)) if columns else set()
    batches = set().union(*(column.batches for column in columns)) if columns else set()
    if len(steps) == 1 and len(batches) == 1:
        training = f"every column trained {next(iter(steps))} steps of batch {next(iter(batches))}"
    elif steps:
        per_column = "; ".join(
            f"{c.title} {sorted(c.steps)} steps of batch {sorted(c.batches, key=str)}"
            for c in columns
        )
        training = f"columns trained UNEQUALLY: {per_column}"
    else:
        training = "no finished runs"
    plan = protocol.plan.datasets[dataset]
    pretrained = any(column.stage.pretrained_from for column in columns)
    if pretrained and plan.pretrain_steps:
        training += f" (fine-tuning after {plan.pretrain_steps} pretraining steps"
        training += f" of batch {plan.pretrain_batch})" if plan.pretrain_batch else ")"
    return (
        f"Commit `{code['commit'][:10]}`{' (uncommitted changes)' if code['dirty'] else ''}; "
        f"{training}; mean ± standard deviation over {seeds} seed(s) (0 to {seeds - 1}); "
        f"{protocol.machine['cpu_class']}, {protocol.machine['precision']}."
        + (f" {BASELINE_NOTE}" if baselines else "")
    )


def format_cell(cell: Cell | None, planned: int) -> str:
    """``0.321 ± 0.012``, with the number of seeds when fewer than planned, or ``-``."""
    if cell is None:
        return "-"
    text = f"{cell.mean:.3f}" + (f" ± {cell.std:.3f}" if cell.n > 1 else "")
    return text + (f" (n={cell.n})" if cell.n < planned else "")


def write_table(
    stem: Path,
    metric_title: str,
    columns: Sequence[Column],
    caption: str,
    planned_seeds: int,
) -> list[Path]:
    """One comparison as ``<stem>.md``, ``<stem>.csv`` and ``<stem>.png``.

    The best mean of each row is in bold. The Markdown table ends with each column's mean over
    the subsets (per seed, then over seeds), shown only for columns scored on every subset.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[str] = []
    for column in columns:
        rows += [subset for subset in column.scores if subset not in rows]
    cells = {
        (row, column.title): Cell.of(column.scores[row]) if column.scores.get(row) else None
        for row in rows
        for column in columns
    }
    titles = [column.title for column in columns]
    lines = [caption, "", f"| Multimodal input ({metric_title}) | " + " | ".join(titles) + " |"]
    lines.append("|---|" + "---|" * len(titles))
    for row in rows:
        shown = [cells[row, title] for title in titles]
        best = max((round(c.mean, 3) for c in shown if c is not None), default=None)
        texts = [
            f"**{format_cell(c, planned_seeds)}**"
            if c is not None and round(c.mean, 3) == best
            else format_cell(c, planned_seeds)
            for c in shown
        ]
        lines.append(f"| {row.replace('+', ', ').upper()} | " + " | ".join(texts) + " |")
    means = []
    for column in columns:
        complete = bool(rows) and all(column.scores.get(row) for row in rows)
        per_seed = (
            [statistics.fmean(column.scores[row][i] for row in rows) for i in range(
                min(len(column.scores[row]) for row in rows))]
            if complete
            else []
        )  # fmt: skip
        means.append(format_cell(Cell.of(per_seed), planned_seeds) if per_seed else "-")
    lines.append("| *mean over the subsets* | " + " | ".join(means) + " |")
    notes = [f"{column.title}, {problem}" for column in columns for problem in column.problems]
    if notes:
        lines += ["", "Runs missing from this table (shown as fewer seeds or a dash):"]
        lines += [f"- {note}" for note in notes]
    stem.parent.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")

    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["modalities"] + [f"{t} {part}" for t in titles for part in ("mean", "std", "n")]
        )
        for row in rows:
            values = []
            for title in titles:
                cell = cells[row, title]
                values += ["", "", 0] if cell is None else [
                    f"{cell.mean:.4f}", f"{cell.std:.4f}", cell.n
                ]  # fmt: skip
            writer.writerow([row, *values])

    figure, axis = plt.subplots(figsize=(max(6.0, 0.55 * len(rows) * len(titles) / 2), 3.6))
    width = 0.8 / max(len(titles), 1)
    for index, title in enumerate(titles):
        shown = [cells[row, title] for row in rows]
        positions = [r + (index - (len(titles) - 1) / 2) * width for r in range(len(rows))]
        axis.bar(
            positions,
            [c.mean if c else 0.0 for c in shown],
            width,
            yerr=[c.std if c else 0.0 for c in shown],
            capsize=2,
            label=title,
        )
    axis.set_xticks(range(len(rows)), [row.replace("+", "\n") for row in rows], fontsize=7)
    axis.set_ylabel(metric_title)
    axis.set_title(f"{stem.parent.name}: {stem.name.replace('_', ' ')} (mean ± sd over seeds)")
    axis.legend(fontsize=7, ncols=max(len(titles), 1))
    figure.tight_layout()
    figure.savefig(stem.with_suffix(".png"), dpi=90)
    plt.close(figure)
    return [stem.with_suffix(suffix) for suffix in (".md", ".csv", ".png")]


def dataset_columns(protocol: ProtocolRuns, dataset: str) -> dict[str, list[Column]]:
    """The columns of a dataset's main and ablation tables (baselines first in the main one)."""
    stages = {stage.name: stage for stage in protocol.stages if stage.dataset == dataset}
    main = [collect_column(protocol, stages[name]) for name in MAIN_ORDER if name in stages]
    ablations = [collect_column(protocol, stages[name]) for name in ABLATION_ORDER]
    ablations.append(collect_column(protocol, stages["sup_proposed"], "w/ all"))
    return {"table_main": main, "table_ablations": ablations}


def write_contributions_summary(
    protocol: ProtocolRuns, dataset: str, columns: Sequence[Column]
) -> Path | None:
    """``contributions.md``: each column's Shapley values, mean ± sd over seeds.

    Read from the ``contributions.json`` that ``fusion evaluate`` writes per run; the metric is
    the one of the dataset's tables.
    """
    protocol_stages = [s for s in protocol.stages if s.dataset == dataset and s.kind == "segment"]
    values: dict[str, dict[str, list[float]]] = {}
    empty: list[float] = []
    metric = ""
    for stage in protocol_stages:
        for seed in range(protocol.plan.seeds):
            run = Run(stage, seed)
            path = protocol.run_dir(run) / "contributions.json"
            if not protocol.is_done(run) or not path.is_file():
                continue
            data = json.loads(path.read_text())
            metric = data.get("title", data.get("metric", ""))
            if stage.name == "sup_proposed":
                empty.append(data["empty"])
            for modality, value in data["shapley"].items():
                values.setdefault(stage.title, {}).setdefault(modality, []).append(value)
    path = protocol.out_dir / dataset / "contributions.md"
    if not values:
        path.unlink(missing_ok=True)  # an earlier run's values never stay behind
        return None
    titles = [s.title for s in protocol_stages if s.title in values]
    modalities = list(next(iter(values.values())))
    lines = [
        table_caption(protocol, dataset, columns),
        "",
        f"Shapley values of {metric} per modality (the empty subset scores the majority class "
        f"of the training split: {Cell.of(empty).mean:.3f})."
        if empty
        else "",
        "",
        "| modality | " + " | ".join(titles) + " |",
        "|---|" + "---|" * len(titles),
    ]
    planned = protocol.plan.seeds
    for modality in modalities:
        cells = [
            format_cell(Cell.of(values[t][modality]), planned) if values[t].get(modality) else "-"
            for t in titles
        ]
        lines.append(f"| {modality.upper()} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    return path


def empty_score(protocol: ProtocolRuns, dataset: str) -> float | None:
    """The empty subset's score (the training split's majority class everywhere), if known.

    Read from the ``contributions.json`` of the dataset's finished ``sup_proposed`` runs.
    """
    stage = next(s for s in protocol.stages if s.dataset == dataset and s.name == "sup_proposed")
    for seed in range(protocol.plan.seeds):
        run = Run(stage, seed)
        path = protocol.run_dir(run) / "contributions.json"
        if protocol.is_done(run) and path.is_file():
            return float(json.loads(path.read_text())["empty"])
    return None
