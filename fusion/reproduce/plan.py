"""Equal training per table: step counts fixed up front from the budget and measured step times.

Every column of a table trains the same number of optimizer steps at the same batch size, so
that a difference between two columns is the method's, not the budget's. The counts are set
once, before any stage runs: a short calibration fit of the slowest columns
(`fusion.reproduce.stages.SLOWEST_SEGMENT_STAGES`, and the contrastive pretraining) times a
step, a validation pass and everything around them (process start, model building, the
checkpoint), and an evaluation over all modality subsets is timed on its checkpoint. Every
run's overhead (start-up, evaluation) comes off the time left, the rest is shared equally
among the runs (stages x seeds) as training time, and each share is turned into steps with the
slowest column's step time, so the quicker columns end early rather than train longer. The
steps are split into epochs of equal length, so that every run ends with a validation pass
and its last checkpoint (epochs may be cut to equal lengths for that). The classical baselines
train nothing: each run gets the fixed allowance `BASELINE_SECONDS` off the time left, and no
share of the training time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

SAFETY = 1.15
"""Share by which the plan expects steps to be slower than calibrated (a busier machine, a
slower column than the ones timed); overruns beyond it stop the protocol (`Protocol`)."""

BASELINE_SECONDS = 90.0
"""Wall time set aside for one baseline run (``fusion fit`` of a threshold rule, one pass over
the training split, then ``fusion evaluate`` over every subset), not calibrated: on the
two-core development machine the fixed and fitted rules took 27 s on the Sen1Floods11 chips
(12 s fit, 14 s evaluate) when it was quiet and 68 s when other work shared it, Otsu 21 s on
the single chip on one thread. The allowance keeps the budget honest; a baseline that takes
longer is not stopped (the budget guard reads it like a run's planned time)."""


@dataclass
class KindTiming:
    """Measured cost of one kind of run (segmentation or pretraining) on one dataset.

    Attributes:
        wall_seconds: Wall time of the whole calibration command (start-up included).
        steps: Training steps the calibration ran.
        step_seconds: The median step time (the slowest calibrated column's).
        steps_per_epoch: Training batches of a full epoch.
        validation_seconds: One validation pass.
        batch_size: The batch size of the run.
        evaluate_seconds: Wall time of ``fusion evaluate`` over every subset (segmentation).
    """

    wall_seconds: float
    steps: int
    step_seconds: float
    steps_per_epoch: int
    validation_seconds: float
    batch_size: int
    evaluate_seconds: float = 0.0

    def overhead_seconds(self, safety: float = SAFETY) -> float:
        """Wall time of a run besides its training steps: start-up, evaluation and the like."""
        return self.wall_seconds + self.evaluate_seconds - self.steps * self.step_seconds * safety

    def run_seconds(self, epochs: int, batches: int, safety: float = SAFETY) -> float:
        """Expected wall time of a run of ``epochs`` epochs of ``batches`` steps, evaluated."""
        more = max(epochs * batches - self.steps, 0) * self.step_seconds * safety
        return self.wall_seconds + more + epochs * self.validation_seconds + self.evaluate_seconds

    def split_for(self, seconds: float, safety: float = SAFETY) -> tuple[int, int]:
        """The longest run that fits ``seconds``, as ``(epochs, batches per epoch)``.

        Epochs of at most the loader's batches, all cut to the same number
        (``limit_train_batches``), so that every run ends at an epoch's end, with its
        validation pass and last checkpoint; of the splits that fit, the one with the most
        steps, and of those the fewest epochs. ``(0, 0)`` when not even one step fits.
        """
        best = (0, 0)
        for epochs in itertools.count(1):
            spare = seconds - self.wall_seconds - self.evaluate_seconds
            spare -= epochs * self.validation_seconds
            steps = self.steps + spare / (self.step_seconds * safety)
            batches = min(self.steps_per_epoch, math.floor(steps / epochs))
            if batches < 1:
                return best
            if epochs * batches > best[0] * best[1]:
                best = (epochs, batches)


@dataclass
class DatasetPlan:
    """The fixed training of one dataset's columns.

    Attributes:
        segment_steps: Optimizer steps of every segmentation column (fine-tuning included).
        segment_batch: Their batch size.
        segment_epochs: ``segment_steps`` in epochs of equal length (None when unknown:
            ``--steps`` given).
        pretrain_steps: Steps of both pretrainings (0 without pretraining).
        pretrain_batch: Their batch size.
        pretrain_epochs: ``pretrain_steps`` in epochs (None when unknown).
        segment_seconds: Expected wall time of one segmentation run (evaluation included).
        pretrain_seconds: Expected wall time of one pretraining run.
        baseline_seconds: Wall time allowed for one baseline run (0 when not planned).
    """

    segment_steps: int
    segment_batch: int | None = None
    segment_epochs: int | None = None
    pretrain_steps: int = 0
    pretrain_batch: int | None = None
    pretrain_epochs: int | None = None
    segment_seconds: float = 0.0
    pretrain_seconds: float = 0.0
    baseline_seconds: float = 0.0


@dataclass
class StepPlan:
    """Steps per dataset and the number of seeds, as decided before the first stage.

    Attributes:
        seeds: Seeds every stage runs with (``0 .. seeds - 1``).
        seeds_requested: What ``--seeds`` asked for.
        datasets: Dataset -> its `DatasetPlan`.
        note: What was cut to fit the budget, and why ("" when nothing).
        share_seconds: Training time planned per run (per stage and seed), besides its
            start-up and evaluation.
        calibration: Dataset -> kind -> `KindTiming` fields, as measured.
    """

    seeds: int
    seeds_requested: int
    datasets: dict[str, DatasetPlan]
    note: str = ""
    share_seconds: float = 0.0
    calibration: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dictionary."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepPlan:
        """The inverse of `to_json`."""
        values = dict(data)
        values["datasets"] = {k: DatasetPlan(**v) for k, v in data["datasets"].items()}
        return cls(**values)


def plan_steps(
    timings: Mapping[str, Mapping[str, KindTiming]],
    runs_per_seed: Mapping[str, Mapping[str, int]],
    seconds: float,
    jobs: int,
    seeds: int,
    min_steps: int,
    baseline_runs: Mapping[str, int] | None = None,
) -> StepPlan:
    """Give every run the same training time, and turn it into steps per dataset and kind.

    Every run's overhead (start-up, checkpoints and, for segmentation, the evaluation over all
    subsets: two minutes on the quadruplets' 15 subsets, a quarter of that on Sen1Floods11's
    3) and every baseline run's `BASELINE_SECONDS` come off first; the training time left is
    shared equally among the trained runs, so a dataset with a slow evaluation does not train
    less for it. Seeds are cut (never below two, the fewest that give a spread) while the
    segmentation columns of some dataset would train fewer than ``min_steps`` steps.

    Args:
        timings: Dataset -> ``"segment"`` / ``"pretrain"`` -> measured `KindTiming`.
        runs_per_seed: Dataset -> kind -> number of stages of that kind.
        seconds: Wall time left for all runs.
        jobs: Runs that go on at once (each on its own share of the cores).
        seeds: Seeds asked for.
        min_steps: Fewest segmentation steps worth training; below it seeds are cut.
        baseline_runs: Dataset -> number of baseline stages (they train nothing), if any.

    Returns:
        The plan; its ``share_seconds`` is the training time of each run.

    Raises:
        ValueError: If not even one step per column fits the budget at the fewest seeds.
    """
    packing = 1.0 if jobs == 1 else 0.9  # runs that wait for their pretraining leave gaps
    runs = sum(sum(kinds.values()) for kinds in runs_per_seed.values())
    overheads = sum(
        count * timings[dataset][kind].overhead_seconds()
        for dataset, kinds in runs_per_seed.items()
        for kind, count in kinds.items()
    )
    baselines = baseline_runs or {}
    overheads += BASELINE_SECONDS * sum(baselines.values())
    note = ""
    last_fewest = 0  # the fewest steps with one seed more
    for count in range(seeds, 0, -1):
        training = (seconds * jobs * packing / count - overheads) / max(runs, 1)
        datasets = {}
        for name, kinds in timings.items():
            segment = kinds["segment"]
            epochs, batches = segment.split_for(segment.overhead_seconds() + training)
            plan = DatasetPlan(
                segment_steps=epochs * batches,
                segment_batch=segment.batch_size,
                segment_epochs=epochs,
                segment_seconds=round(segment.run_seconds(epochs, batches), 1),
            )
            if "pretrain" in kinds:
                pretrain = kinds["pretrain"]
                epochs, batches = pretrain.split_for(pretrain.overhead_seconds() + training)
                plan.pretrain_steps = epochs * batches
                plan.pretrain_batch = pretrain.batch_size
                plan.pretrain_epochs = epochs
                plan.pretrain_seconds = round(pretrain.run_seconds(epochs, batches), 1)
            if baselines.get(name):
                plan.baseline_seconds = BASELINE_SECONDS
            datasets[name] = plan
        fewest = min(plan.segment_steps for plan in datasets.values())
        enough = fewest >= min_steps
        if enough or count <= min(seeds, 2):
            if count < seeds:
                note = (
                    f"seeds cut from {seeds} to {count}: with {count + 1} seeds a column "
                    f"would train {last_fewest} steps, fewer than {min_steps}"
                )
            if not enough:
                note += ("; " if note else "") + (
                    f"the budget allows only {fewest} segmentation steps per column "
                    f"(fewer than {min_steps}): a larger --budget trains more"
                )
            if fewest < 1 or any(
                plan.pretrain_steps < 1 for n, plan in datasets.items() if "pretrain" in timings[n]
            ):
                raise ValueError(
                    f"the budget of {seconds / 60:.1f} min leaves {max(training, 0):.0f} s of "
                    f"training per run ({runs * count} runs on {jobs} job(s)), less than one "
                    "step of every column: give a larger --budget, fewer --seeds or fewer "
                    "--datasets"
                )
            return StepPlan(count, seeds, datasets, note, round(training, 1))
        last_fewest = fewest
    raise AssertionError("unreachable: the loop returns at count 1")


def fixed_plan(datasets: Mapping[str, bool], steps: int, seeds: int) -> StepPlan:
    """A plan with ``steps`` steps for every column, without calibration (``--steps``).

    Args:
        datasets: Dataset -> whether it has pretraining columns.
        steps: Steps of every run, pretraining included.
        seeds: Seeds of every stage.
    """
    if steps < 1:
        raise ValueError(f"--steps must be at least 1, got {steps}")
    plans = {
        name: DatasetPlan(segment_steps=steps, pretrain_steps=steps if pretrains else 0)
        for name, pretrains in datasets.items()
    }
    return StepPlan(seeds, seeds, plans, note=f"fixed at {steps} steps per run (--steps)")
