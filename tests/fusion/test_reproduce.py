"""The reproduction protocol's bookkeeping: stages, budget shares, failures, resumption, tables.

The stages run a stand-in interpreter that writes what ``fusion fit`` and ``fusion evaluate``
would (a checkpoint, a ``subsets.csv``) and logs every call, so these tests check the
orchestration in a second; the real commands are exercised by ``tests/test_experiments.py``.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from fusion.reproduce import DATASETS, Protocol, dataset_stages, read_scores

FAKE_FUSION = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
assert args[:2] == ["-m", "fusion"], args
command = args[2]
with open(os.environ["FAKE_CALLS"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")

def value(flag):
    return args[args.index(flag) + 1]

fail = os.environ.get("FAKE_FAIL", "")
if command == "fit":
    logger = json.loads(value("--trainer.logger"))["init_args"]
    if logger["name"] == fail:
        sys.exit(3)
    folder = Path(logger["save_dir"]) / logger["name"] / "version_0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_text("weights")
    (folder / "config.yaml").write_text("seed_everything: 0\\n")
else:
    out = Path(value("--out_dir"))
    score = 0.5 if "multivit" in " ".join(args) else 0.7
    rows = ["modalities,test/miou,test/iou_1", f"s1+s2,{{score}},0.6", "s1,0.2,0.1", "s2,0.3,"]
    (out / "subsets.csv").write_text("\\n".join(rows) + "\\n")
"""


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An interpreter stand-in for ``python -m fusion ...``; its calls go to ``calls.jsonl``."""
    script = tmp_path / "fake_python"
    script.write_text(FAKE_FUSION.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    return script


def calls(tmp_path: Path) -> list[list[str]]:
    """The stand-in's calls so far."""
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def make_protocol(tmp_path: Path, fake_python: Path, datasets: list[str]) -> Protocol:
    return Protocol(datasets, 30.0, tmp_path / "results", tmp_path / "runs", str(fake_python))


def test_stages_follow_the_papers_tables() -> None:
    quad = [stage.name for stage in dataset_stages("quad")]
    assert quad == [
        "sup_multivit",
        "sup_proposed",
        "pretrain_g",
        "pretrain_gc",
        "fine_g",
        "fine_gc",
        "no_masked_attention",
        "no_random_combination",
        "no_modality_attention",
    ]
    # Sen1Floods11 is not in the paper and has no pretraining config: supervised + ablations.
    floods = [stage.name for stage in dataset_stages("sen1floods11")]
    assert floods == [name for name in quad if "pretrain" not in name and "fine" not in name]
    stages = {stage.name: stage for stage in dataset_stages("quad")}
    assert "--model.init_args.contrastive" in stages["pretrain_g"].args
    assert "--model.init_args.contrastive" not in stages["pretrain_gc"].args
    assert stages["fine_gc"].pretrained_from == "pretrain_gc"
    for name in ("multivit", "no_masked_attention", "no_random_combination"):
        overlay = next(s for s in stages.values() if name in s.name).args[1]
        assert Path(overlay).is_file(), overlay


def test_unknown_or_no_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose from"):
        Protocol(["quadruplets"], 10.0, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="no datasets"):
        Protocol([], 10.0, tmp_path, tmp_path)


def test_budget_share_shrinks_with_the_time_left(tmp_path: Path) -> None:
    protocol = Protocol(["sen1floods11"], 30.0, tmp_path, tmp_path)
    stages = protocol.stages
    full = protocol.plan_minutes(stages[0], stages, 30 * 60.0)
    assert full < 30.0 / len(stages)  # evaluation and start-up come off
    late = protocol.plan_minutes(stages[1], stages[1:], 5 * 60.0)
    assert 0.5 <= late < full
    protocol.evaluate_seconds["sen1floods11"] = 200.0  # a slow evaluation measured
    assert protocol.plan_minutes(stages[1], stages[1:], 30 * 60.0) < full


def test_later_columns_never_train_longer_than_the_first(tmp_path: Path) -> None:
    protocol = Protocol(["sen1floods11", "quad"], 60.0, tmp_path, tmp_path)
    floods = [stage for stage in protocol.stages if stage.dataset == "sen1floods11"]
    first = protocol.plan_minutes(floods[0], floods, 20 * 60.0)
    protocol.evaluate_seconds["sen1floods11"] = 5.0  # evaluation quicker than expected
    assert protocol.plan_minutes(floods[1], floods[1:], 20 * 60.0) == first
    quad = next(stage for stage in protocol.stages if stage.dataset == "quad")
    assert protocol.plan_minutes(quad, [quad], 20 * 60.0) > first  # each dataset its own


def test_protocol_runs_every_stage_and_writes_the_tables(tmp_path: Path, fake_python: Path) -> None:
    protocol = make_protocol(tmp_path, fake_python, ["quad"])
    protocol.run()

    made = calls(tmp_path)
    fits = [call for call in made if call[2] == "fit"]
    assert len(fits) == 9 and sum(call[2] == "evaluate" for call in made) == 7
    fine_gc = next(call for call in fits if '"name": "fine_gc"' in " ".join(call))
    pretrained = fine_gc[fine_gc.index("--model.init_args.pretrained") + 1]
    assert pretrained.endswith("pretrain_gc/version_0/checkpoints/last.ckpt")
    assert all("--time_budget" in call and "data/quadruplets" in call for call in fits)

    out = tmp_path / "results"
    saved = json.loads((out / "protocol.json").read_text())
    assert saved["datasets"] == ["quad"] and "cpu_capability" in saved["machine"]
    record = json.loads((out / "quad" / "fine_g" / "stage.json").read_text())
    assert record["status"] == "done" and record["budget_minutes"] > 0
    assert (out / "quad" / "fine_g" / "config.yaml").is_file()

    with (out / "quad" / "table_main.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == [
        "modalities",
        "Sup. MultiViT",
        "Sup. Proposed",
        "Fine. w/ G.",
        "Fine. w/ G. & C.",
    ]
    assert rows[1] == ["s1+s2", "0.5000", "0.7000", "0.7000", "0.7000"]
    ablations = (out / "quad" / "table_ablations.md").read_text()
    assert "| w/o Mask | w/o Random | w/o Attention | w/ all |" in ablations
    assert "| S1, S2 | **0.700** |" in ablations
    assert "| *mean over the subsets* | 0.400 | 0.400 | 0.400 | 0.400 |" in ablations
    assert (out / "quad" / "table_main.png").stat().st_size > 0


def test_failed_stage_keeps_the_others_and_rerun_only_repeats_it(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "pretrain_g")
    protocol = make_protocol(tmp_path, fake_python, ["quad"])
    protocol.run()
    out = tmp_path / "results" / "quad"
    status = {
        stage.name: json.loads((out / stage.name / "stage.json").read_text())["status"]
        for stage in protocol.stages
    }
    assert status["pretrain_g"] == "failed" and status["fine_g"] == "skipped"
    assert {name for name, value in status.items() if value == "done"} == set(status) - {
        "pretrain_g",
        "fine_g",
    }
    assert "fit.log" in json.loads((out / "pretrain_g" / "stage.json").read_text())["message"]
    main_table = (out / "table_main.md").read_text()
    assert "| S1, S2 | 0.500 | **0.700** | - | **0.700** |" in main_table
    assert main_table.endswith("| *mean over the subsets* | 0.333 | 0.400 | - | 0.400 |\n")

    first = len(calls(tmp_path))
    monkeypatch.delenv("FAKE_FAIL")
    make_protocol(tmp_path, fake_python, ["quad"]).run()
    again = calls(tmp_path)[first:]
    names = [
        json.loads(call[call.index("--trainer.logger") + 1])["init_args"]["name"]
        for call in again
        if call[2] == "fit"
    ]
    assert names == ["pretrain_g", "fine_g"]
    assert json.loads((out / "fine_g" / "stage.json").read_text())["status"] == "done"


def test_read_scores_names_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "subsets.csv"
    path.write_text("modalities,test/miou\ns1,0.25\ns2,\n")
    assert read_scores(path, "test/miou") == {"s1": 0.25}
    with pytest.raises(KeyError, match="test/iou_1"):
        read_scores(path, DATASETS["sen1floods11"].metric)
