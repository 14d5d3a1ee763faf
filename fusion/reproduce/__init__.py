"""``make reproduce``: the paper's Tables I to IV in miniature, trained alike, over seeds.

    python -m fusion.reproduce [--budget 90]
        [--datasets quad dfc2023 sen1floods11 sen1floods11_chips] [--seeds 3] [--jobs 2]
        [--out_dir runs/reproduce/results] [--tables_only | --publish]

For each dataset the protocol runs these stages (the paper's columns), each once per seed:

* ``threshold_fixed`` / ``threshold_otsu`` / ``threshold_fitted``: the classical water
  baselines (`fusion.tasks.ThresholdTask`; the datasets with a baseline config, the
  Sen1Floods11 ones), untrained, first in the main table;
* ``pretrain_g`` / ``pretrain_gc``: pretraining with reconstruction only, and with
  reconstruction + contrastive alignment (the datasets with a pretraining config);
* ``sup_multivit``: supervised MultiViT, trained on complete inputs (Tables I/II);
* ``sup_proposed``: the proposed model, supervised, random modality combinations (I/II);
* ``fine_g`` / ``fine_gc``: fine-tuning from each pretraining of the same seed (I/II);
* ``no_masked_attention``, ``no_random_combination``, ``no_modality_attention``: the
  supervised ablations of Tables III/IV.

Every segmentation run is evaluated on all ``2^M - 1`` modality subsets of the test split
(`fusion.evaluation`). The pieces:

* `fusion.reproduce.stages`: datasets and stages;
* `fusion.reproduce.plan`: equal step counts, fixed before the first stage from the budget and
  a calibration of the slowest columns' steps on this machine;
* `fusion.reproduce.runs`: each run's folder, commands and identity (fresh: a run is reused only
  when made by the same code and command and its checkpoint exists);
* `fusion.reproduce.jobs`: the calibration fits and the runs as jobs, with the budget guard;
* `fusion.reproduce.scheduler`: concurrent jobs pinned to CPUs;
* `fusion.reproduce.runner`: the protocol from plan to tables;
* `fusion.reproduce.provenance`: commit, packages, machine;
* `fusion.reproduce.tables`: mean and spread over seeds of finished runs only;
* `fusion.reproduce.claims`: the paper's claims checked by a stated rule;
* `fusion.reproduce.command`: the command line and ``--publish``.
"""

from fusion.reproduce.claims import CLAIMS, check_claim
from fusion.reproduce.command import main, publish
from fusion.reproduce.plan import DatasetPlan, KindTiming, StepPlan, plan_steps
from fusion.reproduce.runner import Protocol
from fusion.reproduce.runs import ProtocolRuns, Run, StageRecord
from fusion.reproduce.stages import DATASETS, Stage, dataset_stages
from fusion.reproduce.tables import read_scores

__all__ = [
    "CLAIMS",
    "DATASETS",
    "DatasetPlan",
    "KindTiming",
    "Protocol",
    "ProtocolRuns",
    "Run",
    "Stage",
    "StageRecord",
    "StepPlan",
    "check_claim",
    "dataset_stages",
    "main",
    "plan_steps",
    "publish",
    "read_scores",
]
