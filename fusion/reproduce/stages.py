"""The stages of the reproduction protocol: which datasets, which columns of the paper's tables."""

from __future__ import annotations

from dataclasses import dataclass
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
        metric: Column of ``subsets.csv`` shown in the tables (the paper's score); the
            modality contributions are computed on the same metric.
        metric_title: Its heading.
        baseline_config: The classical baseline's config (`fusion.tasks.ThresholdTask`), whose
            data section is the segmentation config's once `SEGMENT_PROFILE` is layered on
            it (the same tiles and splits), or None for no baseline columns.
        evaluate_args: Extra arguments of every run's ``fusion evaluate`` (e.g. the per-chip
            table and a quick-look of a test chip).
    """

    segment_config: Path
    pretrain_config: Path | None
    data_root: str | None
    metric: str
    metric_title: str
    baseline_config: Path | None = None
    evaluate_args: tuple[str, ...] = ()

    @property
    def metric_name(self) -> str:
        """The metric without its stage prefix, e.g. ``iou_1`` for ``test/iou_1``."""
        return self.metric.split("/", 1)[-1]


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
        EXPERIMENTS / "segment_sen1floods11.yaml",
        None,
        None,
        "test/iou_1",
        "water IoU",
        baseline_config=EXPERIMENTS / "threshold_sen1floods11.yaml",
    ),
    "sen1floods11_chips": DatasetProtocol(
        EXPERIMENTS / "segment_sen1floods11_chips.yaml",
        EXPERIMENTS / "pretrain_sen1floods11_chips.yaml",
        None,
        "test/iou_1",
        "water IoU",
        baseline_config=EXPERIMENTS / "threshold_sen1floods11_chips.yaml",
        evaluate_args=("--per_chip", "--quicklook", "Spain_7370579"),
    ),
}
"""The datasets ``make reproduce`` knows: the embedded ones under ``data/``, the real chip, and
the real chips split by whole chips (both read from ``../shared/realdata`` by default)."""

BASELINES: tuple[tuple[str, str, str], ...] = (
    ("threshold_fixed", "Threshold (-20 dB / NDWI 0)", "fixed"),
    ("threshold_otsu", "Otsu per tile", "otsu"),
    ("threshold_fitted", "Threshold fitted", "fitted"),
)
"""The classical baseline columns: stage name, title and `fusion.tasks.ThresholdTask` rule."""


@dataclass(frozen=True)
class Stage:
    """One column of the protocol (run once per seed).

    Attributes:
        dataset: Key of `DATASETS`.
        name: Folder name and table key, e.g. ``sup_proposed``.
        title: Column title in the tables.
        kind: ``"segment"`` (fit then evaluate), ``"pretrain"`` (fit only) or ``"baseline"``
            (a classical baseline: one epoch of ``fusion fit`` that trains nothing, no planned
            steps, then evaluate).
        args: Extra command-line arguments of ``fusion fit`` (overlays, overrides).
        pretrained_from: Stage whose last checkpoint (same seed) initialises the backbone.
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


SLOWEST_SEGMENT_STAGES = ("no_random_combination", "sup_proposed")
"""The columns whose steps are timed to plan a table's step count: the proposed backbone on
complete inputs and on random subsets (MultiViT and the model without modality attention
have cheaper steps: measured 1.52 and 1.39 s against 1.67 s on the Sen1Floods11 chip)."""


def dataset_stages(dataset: str) -> list[Stage]:
    """The stages of one dataset, in the order they run (pretraining before fine-tuning)."""
    protocol = DATASETS[dataset]
    runs = EXPERIMENTS / "runs"
    stages = []
    if protocol.baseline_config is not None:  # quick, and first in the main table
        stages += [
            Stage(dataset, name, title, "baseline", ("--model.init_args.rule", rule))
            for name, title, rule in BASELINES
        ]
    if protocol.pretrain_config is not None:
        stages += [
            Stage(dataset, "pretrain_g", "Pretraining (G.)", "pretrain",
                  ("--model.init_args.contrastive", "false"), table=""),
            Stage(dataset, "pretrain_gc", "Pretraining (G. & C.)", "pretrain", table=""),
        ]  # fmt: skip
    stages += [
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

MAIN_ORDER = (
    *(name for name, _, _ in BASELINES),
    "sup_multivit",
    "sup_proposed",
    "fine_g",
    "fine_gc",
)
"""Column order of the main tables: the classical baselines (where the dataset has them), then
the columns of Tables I/II."""
