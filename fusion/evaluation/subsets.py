"""Score one model on every non-empty modality subset, and write the tables the paper shows.

The model and the DataModule are loaded once; for each of the ``2^M - 1`` subsets the
DataModule is switched to that subset (``set_eval_modalities``) and Lightning's ``test`` (or
``validate``) loop runs on the same model. A tile that holds no data in a subset is excluded
from that subset's score by the task and counted (the ``excluded_tiles`` column), so every
subset is scored on the tiles where it can be, and the table says how many those are.

Rows follow the paper's tables: larger subsets first, and within a size the combinations in
the paper's modality order (SAR, RGB, DSM for DFC2023; S1, S2, DEM, DNW for the quadruplets).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightning as L
from tqdm.auto import tqdm

TABLE_ORDERS: tuple[tuple[str, ...], ...] = (("sar", "rgb", "dsm"), ("s1", "s2", "dem", "dnw"))
"""Modality orders of the paper's tables; other modality sets keep the DataModule's order."""

DISPLAY_NAMES = {"sar": "SAR", "rgb": "RGB", "dsm": "DSM", "s1": "S1", "s2": "S2", "dem": "DEM"}
DISPLAY_NAMES["dnw"] = "DNW"


class SubsetDataModule(Protocol):
    """What the evaluation needs of a DataModule."""

    modalities: Sequence[str]

    def set_eval_modalities(self, spec: Sequence[str]) -> None:
        """Show only these modalities in validation and test."""
        ...


@dataclass
class SubsetResult:
    """The scores of one modality subset.

    Attributes:
        modalities: The subset, in table order.
        metrics: Metric name -> value, as logged by the task (e.g. ``test/mIoU``).
    """

    modalities: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The row label, e.g. ``"SAR, RGB"``."""
        return ", ".join(DISPLAY_NAMES.get(name, name) for name in self.modalities)


def subsets_in_table_order(modalities: Sequence[str]) -> list[tuple[str, ...]]:
    """The ``2^M - 1`` non-empty subsets, largest first, in the paper's modality order.

    Args:
        modalities: The model's modalities.

    Returns:
        Subsets as tuples of names, e.g. for DFC2023 ``[("sar", "rgb", "dsm"), ("sar", "rgb"),
        ("sar", "dsm"), ("rgb", "dsm"), ("sar",), ("rgb",), ("dsm",)]``.

    Raises:
        ValueError: For an empty or repeated modality list.
    """
    if not modalities or len(set(modalities)) != len(modalities):
        raise ValueError(f"need distinct modality names, got {list(modalities)}")
    order = next((o for o in TABLE_ORDERS if set(o) == set(modalities)), tuple(modalities))
    return [
        combination
        for size in range(len(order), 0, -1)
        for combination in itertools.combinations(order, size)
    ]


def evaluate_subsets(
    trainer: L.Trainer,
    model: L.LightningModule,
    datamodule: L.LightningDataModule,
    stage: str = "test",
    subsets: Sequence[Sequence[str]] | None = None,
    progress: Callable[[Any], Any] = tqdm,
) -> list[SubsetResult]:
    """Runs the test (or validation) loop once per modality subset.

    Args:
        trainer: The trainer to run the loops with (its own progress bar is best disabled).
        model: The task, weights already loaded.
        datamodule: A DataModule with ``modalities`` and ``set_eval_modalities``.
        stage: ``"test"`` or ``"validate"``.
        subsets: The subsets to score (default: all, in table order).
        progress: Wraps the subset loop (a tqdm progress bar by default).

    Returns:
        One result per subset, in the order scored.

    Raises:
        ValueError: For another stage, or a subset naming a modality the DataModule lacks.
    """
    if stage not in ("test", "validate"):
        raise ValueError(f"stage must be 'test' or 'validate', got {stage!r}")
    names = list(datamodule.modalities)
    subsets = [tuple(s) for s in (subsets or subsets_in_table_order(names))]
    for subset in subsets:
        unknown = sorted(set(subset) - set(names))
        if unknown or not subset:
            raise ValueError(f"subset {list(subset)} is not a non-empty subset of {names}")
    run = trainer.test if stage == "test" else trainer.validate
    results = []
    bar = progress(subsets, desc="modality subsets", unit="subset")
    for subset in bar:
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str("+".join(subset))
        datamodule.set_eval_modalities(list(subset))
        logged = run(model, datamodule=datamodule, verbose=False)
        metrics = {key: float(value) for key, value in (logged[0] if logged else {}).items()}
        results.append(SubsetResult(subset, metrics))
    return results


def write_subset_tables(
    results: Sequence[SubsetResult],
    out_dir: str | Path,
    columns: Mapping[str, str] | None = None,
    title: str = "",
) -> dict[str, Path]:
    """Writes the results as CSV, a Markdown table and a bar chart.

    Args:
        results: Output of `evaluate_subsets`.
        out_dir: Folder to write ``subsets.csv``, ``subsets.md`` and ``subsets.png`` to.
        columns: Column title -> logged metric name for the Markdown table and the chart, e.g.
            ``{"AP@50": "test/AP50", "mIoU": "test/mIoU"}``; default every metric logged.
            The CSV always holds every logged metric.
        title: Heading of the Markdown table and the chart.

    Returns:
        Kind (``"csv"``, ``"markdown"``, ``"png"``) -> path written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logged = sorted({key for result in results for key in result.metrics})
    columns = dict(columns) if columns else {key: key for key in logged}
    paths = {"csv": out / "subsets.csv", "markdown": out / "subsets.md", "png": out / "subsets.png"}

    with paths["csv"].open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["modalities", *logged])
        for result in results:
            row = [result.metrics.get(key, "") for key in logged]
            writer.writerow(["+".join(result.modalities), *row])

    def cell(result: SubsetResult, key: str) -> str:
        value = result.metrics.get(key)
        if value is None:
            return "-"
        return f"{value:.0f}" if key.endswith("excluded_tiles") else f"{value:.3f}"

    lines = [f"### {title}", ""] if title else []
    lines.append("| Multimodal input | " + " | ".join(columns) + " |")
    lines.append("|---|" + "---|" * len(columns))
    for result in results:
        cells = " | ".join(cell(result, key) for key in columns.values())
        lines.append(f"| {result.label} | {cells} |")
    paths["markdown"].write_text("\n".join(lines) + "\n")

    plot_subset_chart(results, columns, paths["png"], title)
    return paths


def plot_subset_chart(
    results: Sequence[SubsetResult], columns: Mapping[str, str], path: Path, title: str = ""
) -> None:
    """Horizontal bars, one group per subset and one bar per score column."""
    from matplotlib.figure import Figure

    scores = {name: key for name, key in columns.items() if not key.endswith("excluded_tiles")}
    figure = Figure(figsize=(7, 0.35 * len(results) * max(1, len(scores)) + 1.2))
    axes = figure.subplots()
    height = 0.8 / max(1, len(scores))
    for index, (name, key) in enumerate(scores.items()):
        values = [result.metrics.get(key, 0.0) for result in results]
        positions = [row + index * height for row in range(len(results))]
        axes.barh(positions, values, height=height, label=name)
    axes.set_yticks([row + 0.4 - height / 2 for row in range(len(results))])
    axes.set_yticklabels([result.label for result in results])
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("score")
    axes.legend(loc="lower right")
    if title:
        axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
