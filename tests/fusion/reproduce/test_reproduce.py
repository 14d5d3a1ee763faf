"""The reproduction protocol's bookkeeping: equal steps, seeds, freshness, resumption, tables.

The stages run a stand-in interpreter that writes what ``fusion fit`` and ``fusion evaluate``
would (a checkpoint, the step timer's JSON, ``subsets.csv``, ``contributions.json``) and logs
every call, so these tests check the orchestration in seconds; the real commands are
exercised by ``tests/test_experiments.py`` and ``tests/fusion/evaluation``.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import fusion.reproduce.command as command_module
import fusion.reproduce.runs as runs_module
from fusion.reproduce import (
    DATASETS,
    KindTiming,
    Protocol,
    dataset_stages,
    plan_steps,
    publish,
    read_scores,
)
from fusion.reproduce.claims import CLAIMS, check_claim, compare, write_claims
from fusion.reproduce.plan import BASELINE_SECONDS
from fusion.reproduce.stages import MAIN_ORDER, SEGMENT_PROFILE
from fusion.reproduce.tables import BASELINE_NOTE, Cell, Column, format_cell

FAKE_FUSION = """#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
assert args[:2] == ["-m", "fusion"], args
command = args[2]
with open(os.environ["FAKE_CALLS"], "a") as handle:
    handle.write(json.dumps(args) + "\\n")

def value(flag, default=None):
    return args[args.index(flag) + 1] if flag in args else default

fail = os.environ.get("FAKE_FAIL", "")
joined = " ".join(args)
seed = int(value("--seed_everything", "0"))
if command == "fit":
    logger = json.loads(value("--trainer.logger"))["init_args"]
    stage = Path(logger["save_dir"]).name
    if fail and fail == f"{{stage}}/{{logger['name']}}":
        sys.exit(3)
    folder = Path(logger["save_dir"]) / logger["name"] / "version_0"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_text("weights")
    (folder / "config.yaml").write_text("seed_everything: 0\\n")
    steps = int(value("--trainer.max_steps", value("--trainer.limit_train_batches", "8")))
    if "--model.init_args.rule" in args:
        steps = 0  # a threshold baseline: no optimizer, no steps
    if os.environ.get("FAKE_SHORT") == stage:
        steps -= 1  # a run that ends before its plan
    timer = json.loads(value("--trainer.callbacks+"))["init_args"]["path"]
    Path(timer).parent.mkdir(parents=True, exist_ok=True)
    slow = "experiments/pretrain_" in joined
    if os.environ.get("FAKE_NO_TIMER") != stage:
        Path(timer).write_text(json.dumps({{
            "steps": steps, "steps_per_epoch": min(steps, 10), "loader_batches": 10,
            "batch_size": 16 if slow else 8, "step_seconds": 2.0 if slow else 1.0,
            "validation_seconds": 4.0, "fit_seconds": 30.0, "precision": "32-true", "threads": 1,
        }}))
else:
    out = Path(value("--out_dir"))
    out.mkdir(parents=True, exist_ok=True)
    score = (0.5 if "multivit" in joined else 0.7) + 0.01 * seed
    water = 0.4 if "experiments/threshold_" in joined else 0.6
    rows = ["modalities,test/miou,test/iou_1", f"s1+s2,{{score}},{{water}}", "s1,0.2,0.1",
            "s2,0.3,"]
    (out / "subsets.csv").write_text("\\n".join(rows) + "\\n")
    contributions = {{"metric": value("--contribution_metric"), "title": "mIoU", "empty": 0.1,
                      "shapley": {{"s1": 0.2 + seed / 100, "s2": 0.3}}, "interactions": {{}}}}
    (out / "contributions.json").write_text(json.dumps(contributions))
"""

CLEAN = {"commit": "a" * 40, "dirty": False, "diff_sha": ""}


@pytest.fixture
def fake_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An interpreter stand-in for ``python -m fusion ...``; its calls go to ``calls.jsonl``."""
    script = tmp_path / "fake_python"
    script.write_text(FAKE_FUSION.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setattr(runs_module, "git_state", lambda: dict(CLEAN))
    return script


def calls(tmp_path: Path) -> list[list[str]]:
    """The stand-in's calls so far."""
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def fit_names(made: list[list[str]]) -> list[str]:
    """``stage/seed_k`` of every fit call (calibration fits named ``stage``)."""
    names = []
    for call in made:
        if call[2] == "fit":
            logger = json.loads(call[call.index("--trainer.logger") + 1])["init_args"]
            names.append(f"{Path(logger['save_dir']).name}/{logger['name']}")
    return names


def flag(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def make_protocol(
    tmp_path: Path, fake_python: Path, datasets: list[str], **options: object
) -> Protocol:
    options = {"seeds": 2, "steps": 20, "jobs": 1} | options
    return Protocol(
        datasets, 30.0, tmp_path / "results", tmp_path / "runs", python=str(fake_python), **options
    )


def test_stages_follow_the_papers_tables() -> None:
    quad = [stage.name for stage in dataset_stages("quad")]
    assert quad == [
        "pretrain_g",
        "pretrain_gc",
        "sup_multivit",
        "sup_proposed",
        "fine_g",
        "fine_gc",
        "no_masked_attention",
        "no_random_combination",
        "no_modality_attention",
    ]
    floods = [stage.name for stage in dataset_stages("sen1floods11")]
    baselines = ["threshold_fixed", "threshold_otsu", "threshold_fitted"]
    assert floods == baselines + [n for n in quad if "pretrain" not in n and "fine" not in n]
    assert [stage.name for stage in dataset_stages("dfc2023")] == quad  # no baselines
    stages = {stage.name: stage for stage in dataset_stages("quad")}
    assert "--model.init_args.contrastive" in stages["pretrain_g"].args
    assert "--model.init_args.contrastive" not in stages["pretrain_gc"].args
    assert stages["fine_gc"].pretrained_from == "pretrain_gc"
    for name in ("multivit", "no_masked_attention", "no_random_combination"):
        overlay = next(s for s in stages.values() if name in s.name).args[1]
        assert Path(overlay).is_file(), overlay


def test_bad_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="choose from"):
        Protocol(["quadruplets"], 10.0, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="no datasets"):
        Protocol([], 10.0, tmp_path, tmp_path)
    with pytest.raises(ValueError, match="--seeds"):
        Protocol(["quad"], 10.0, tmp_path, tmp_path, seeds=0)


# -- planning ---------------------------------------------------------------------------------
SEGMENT = KindTiming(
    wall_seconds=40.0,
    steps=8,
    step_seconds=1.0,
    steps_per_epoch=10,
    validation_seconds=2.0,
    batch_size=8,
    evaluate_seconds=20.0,
)
PRETRAIN = KindTiming(40.0, 8, 2.0, 15, 3.0, 16)


def test_plan_gives_every_run_the_same_training_time_within_the_budget() -> None:
    timings = {
        "quad": {"segment": SEGMENT, "pretrain": PRETRAIN},
        "sen1floods11": {"segment": SEGMENT},
    }
    runs = {"quad": {"segment": 7, "pretrain": 2}, "sen1floods11": {"segment": 5}}
    plan = plan_steps(timings, runs, seconds=3600.0, jobs=2, seeds=3, min_steps=10)
    assert plan.seeds == 3 and plan.note == ""
    quad, floods = plan.datasets["quad"], plan.datasets["sen1floods11"]
    for steps, epochs, per_epoch in (
        (quad.segment_steps, quad.segment_epochs, 10),
        (quad.pretrain_steps, quad.pretrain_epochs, 15),
    ):  # epochs of equal length, each no longer than the loader's, as few as fit
        assert steps % epochs == 0 and steps // epochs <= per_epoch
        assert epochs == -(-steps // per_epoch)
    # the runs the plan expects fill the time of two jobs (less the packing loss), no more
    total = 3 * (7 * quad.segment_seconds + 2 * quad.pretrain_seconds + 5 * floods.segment_seconds)
    assert 0.8 * 3600.0 * 2 * 0.9 < total <= 3600.0 * 2 * 0.9

    # a dataset whose evaluation is slow pays for it in wall time, not in steps
    slow = KindTiming(**{**SEGMENT.__dict__, "evaluate_seconds": 200.0})
    uneven = plan_steps(
        {"quad": {"segment": slow}, "sen1floods11": {"segment": SEGMENT}},
        {"quad": {"segment": 7}, "sen1floods11": {"segment": 5}},
        seconds=3600.0,
        jobs=2,
        seeds=2,
        min_steps=10,
    )
    assert uneven.datasets["quad"].segment_steps == uneven.datasets["sen1floods11"].segment_steps
    assert uneven.datasets["quad"].segment_seconds > uneven.datasets["sen1floods11"].segment_seconds


def test_runs_are_split_into_epochs_of_equal_length_that_fit() -> None:
    epochs, batches = SEGMENT.split_for(300.0)
    assert batches <= SEGMENT.steps_per_epoch and epochs == -(-(epochs * batches) // 10)
    assert SEGMENT.run_seconds(epochs, batches) <= 300.0
    assert SEGMENT.run_seconds(epochs + 1, batches) > 300.0  # no room for another epoch
    assert epochs * batches >= (300.0 - 60.0 - 2.0 * epochs) / 1.15 - epochs
    assert SEGMENT.split_for(50.0) == (0, 0)  # not even the start-up fits
    assert SEGMENT.split_for(63.2) == (1, 9)  # the 8 calibrated steps, one more, validation


def test_plan_cuts_seeds_down_to_two_and_says_so() -> None:
    timings = {"quad": {"segment": SEGMENT}}
    runs = {"quad": {"segment": 7}}
    plan = plan_steps(timings, runs, seconds=1800.0, jobs=1, seeds=3, min_steps=100)
    assert plan.seeds == 2
    assert "seeds cut from 3 to 2" in plan.note
    roomy = plan_steps(timings, runs, seconds=36000.0, jobs=1, seeds=3, min_steps=100)
    assert roomy.seeds == 3 and roomy.datasets["quad"].segment_steps >= 100
    with pytest.raises(ValueError, match="larger --budget"):
        plan_steps(timings, runs, seconds=300.0, jobs=1, seeds=3, min_steps=100)


# -- running ------------------------------------------------------------------------------------
def test_every_stage_and_seed_trains_the_same_steps_with_provenance(
    tmp_path: Path, fake_python: Path
) -> None:
    protocol = make_protocol(tmp_path, fake_python, ["quad"])
    protocol.run()

    fits = [call for call in calls(tmp_path) if call[2] == "fit"]
    assert len(fits) == 9 * 2
    assert {flag(call, "--trainer.max_steps") for call in fits} == {"20"}
    assert sorted({flag(call, "--seed_everything") for call in fits}) == ["0", "1"]
    assert all(flag(call, "--time_budget") == "null" for call in fits)
    fine = [call for call in fits if "fine_gc/" in " ".join(call) or '"fine_gc"' in " ".join(call)]
    for call in fine:  # each seed fine-tunes its own seed's pretraining
        seed = flag(call, "--seed_everything")
        assert f"pretrain_gc/seed_{seed}/" in flag(call, "--model.init_args.pretrained")
    evaluations = [call for call in calls(tmp_path) if call[2] == "evaluate"]
    assert len(evaluations) == 7 * 2
    assert {flag(call, "--contribution_metric") for call in evaluations} == {"miou"}

    out = tmp_path / "results"
    record = json.loads((out / "quad" / "fine_g" / "seed_1" / "stage.json").read_text())
    assert record["status"] == "done" and record["seed"] == 1 and record["steps"] == 20
    assert record["commit"] == CLEAN["commit"] and record["dirty"] is False
    assert record["batch_size"] == 8 and record["versions"]["torch"]
    assert record["machine"]["cpu_class"] and record["measured"]["steps"] == 20
    events = [
        json.loads(line)["event"] for line in (out / "protocol.jsonl").read_text().splitlines()
    ]
    assert events == ["start", "end"]

    table = (out / "quad" / "table_main.md").read_text()
    assert "every column trained 20 steps of batch 8" in table and "2 seed(s)" in table
    assert "| Multimodal input (mIoU) | Sup. MultiViT |" in table  # no baseline columns
    assert "threshold" not in table.lower()
    assert "| S1, S2 | 0.505 ± 0.007 | **0.705 ± 0.007** |" in table
    with (out / "quad" / "table_main.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:4] == [
        "modalities",
        "Sup. MultiViT mean",
        "Sup. MultiViT std",
        "Sup. MultiViT n",
    ]
    assert rows[1][:4] == ["s1+s2", "0.5050", "0.0071", "2"]
    contributions = (out / "quad" / "contributions.md").read_text()
    assert "| S1 | 0.205 ± 0.007 |" in contributions and "0.100" in contributions
    assert (out / "claims.md").is_file()


def test_a_rerun_resumes_and_other_code_reruns_everything(
    tmp_path: Path,
    fake_python: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()
    first = len(calls(tmp_path))
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()
    assert len(calls(tmp_path)) == first  # nothing redone

    checkpoint = tmp_path / "runs/sen1floods11/sup_proposed/seed_1/version_0/checkpoints/last.ckpt"
    checkpoint.unlink()
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()
    assert fit_names(calls(tmp_path)[first:]) == ["sup_proposed/seed_1"]
    assert "checkpoint" in capsys.readouterr().out

    moved = dict(CLEAN, commit="b" * 40)
    monkeypatch.setattr(runs_module, "git_state", lambda: moved)
    before = len(calls(tmp_path))
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()
    assert len(fit_names(calls(tmp_path)[before:])) == 8 * 2  # baselines included
    assert "made by commit aaaaaaaaaa" in capsys.readouterr().out
    lines = (tmp_path / "results" / "protocol.jsonl").read_text().splitlines()
    assert len(lines) == 8  # appended by every invocation, never rewritten


def test_a_failed_run_shows_as_missing_never_as_its_old_numbers(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()
    stale = tmp_path / "results" / "sen1floods11" / "sup_multivit" / "seed_1" / "subsets.csv"
    stale.write_text("modalities,test/miou,test/iou_1\ns1+s2,0.9,0.9\ns1,0.9,0.9\ns2,0.9,0.9\n")
    monkeypatch.setattr(runs_module, "git_state", lambda: dict(CLEAN, commit="c" * 40))
    monkeypatch.setenv("FAKE_FAIL", "sup_multivit/seed_1")
    make_protocol(tmp_path, fake_python, ["sen1floods11"]).run()

    assert not stale.exists()  # cleared when the run started again
    record = json.loads((stale.parent / "stage.json").read_text())
    assert record["status"] == "failed" and "fit exited with 3" in record["message"]
    table = (tmp_path / "results" / "sen1floods11" / "table_main.md").read_text()
    assert "0.900" not in table
    # the baselines first, then seed 0 alone of MultiViT
    row = "| S1, S2 | 0.400 ± 0.000 | 0.400 ± 0.000 | 0.400 ± 0.000 | **0.600 (n=1)** | **0.600 ± "
    assert row in table
    assert "Sup. MultiViT, seed 1: failed (fit exited with 3" in table


def test_a_run_that_trains_other_steps_than_planned_fails(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_SHORT", "no_modality_attention")
    make_protocol(tmp_path, fake_python, ["sen1floods11"], seeds=1).run()
    folder = tmp_path / "results" / "sen1floods11" / "no_modality_attention" / "seed_0"
    record = json.loads((folder / "stage.json").read_text())
    assert (
        record["status"] == "failed" and "trained 19 steps, the plan says 20" in record["message"]
    )
    table = (tmp_path / "results" / "sen1floods11" / "table_ablations.md").read_text()
    assert "| S1, S2 | **0.600** | **0.600** | - | **0.600** |" in table


def test_a_failed_pretraining_skips_its_fine_tuning(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_FAIL", "pretrain_g/seed_0")
    make_protocol(tmp_path, fake_python, ["quad"], seeds=1).run()
    out = tmp_path / "results" / "quad"
    status = json.loads((out / "fine_g" / "seed_0" / "stage.json").read_text())
    assert status["status"] == "skipped" and "pretrain_g" in status["message"]
    assert "fine_g" not in fit_names(calls(tmp_path))


def test_calibration_plans_the_steps_and_a_rerun_reuses_the_plan(
    tmp_path: Path, fake_python: Path
) -> None:
    protocol = make_protocol(tmp_path, fake_python, ["sen1floods11"], steps=None, min_steps=1)
    protocol.budget_minutes = 60.0
    protocol.run()
    made = calls(tmp_path)
    calibration = [  # fits without planned steps, the baselines' aside
        call
        for call in made
        if call[2] == "fit"
        and "--trainer.max_steps" not in call
        and "--model.init_args.rule" not in call
    ]
    assert {flag(call, "--trainer.logger") for call in calibration}  # the two slowest columns
    assert sorted(Path(json.loads(flag(c, "--trainer.logger"))["init_args"]["save_dir"]).name
                  for c in calibration) == ["sen1floods11", "sen1floods11"]  # fmt: skip
    timed = [
        c for c in made if c[2] == "evaluate" and "results/calibration/" in flag(c, "--out_dir")
    ]
    assert len(timed) == 1  # one evaluation per dataset is timed
    plan = json.loads((tmp_path / "results" / "plan.json").read_text())["plan"]
    steps = plan["datasets"]["sen1floods11"]["segment_steps"]
    epochs = plan["datasets"]["sen1floods11"]["segment_epochs"]
    assert steps > 10 and steps % epochs == 0 and steps // epochs <= 10  # the loader has 10
    fits = [call for call in made if call[2] == "fit" and "--trainer.max_steps" in call]
    assert {flag(call, "--trainer.max_steps") for call in fits} == {str(steps)}
    assert {flag(call, "--trainer.limit_train_batches") for call in fits} == {str(steps // epochs)}

    again = make_protocol(tmp_path, fake_python, ["sen1floods11"], steps=None, min_steps=1)
    again.budget_minutes = 60.0
    again.run()
    assert len(calls(tmp_path)) == len(made)  # no new calibration, nothing rerun


def test_the_budget_guard_stops_and_says_so(tmp_path: Path, fake_python: Path) -> None:
    protocol = make_protocol(tmp_path, fake_python, ["sen1floods11"], seeds=1)
    protocol.budget_minutes = 0.01
    protocol.plan = protocol.make_plan(60.0)
    protocol.plan.datasets["sen1floods11"].segment_seconds = 3600.0  # far beyond the budget
    protocol.plan.datasets["sen1floods11"].baseline_seconds = 3600.0
    plan_file = tmp_path / "results" / "plan.json"
    saved = json.loads(plan_file.read_text())
    saved["plan"] = protocol.plan.to_json()
    saved["basis"]["budget_minutes"] = 0.01
    plan_file.write_text(json.dumps(saved))
    protocol.run()
    record = json.loads(
        (
            tmp_path / "results" / "sen1floods11" / "sup_proposed" / "seed_0" / "stage.json"
        ).read_text()
    )
    assert record["status"] == "not_run" and "budget ran out" in record["message"]
    assert not [call for call in calls(tmp_path) if call[2] == "fit"]


def test_publish_copies_only_a_complete_clean_run(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "published"
    monkeypatch.setenv("FAKE_FAIL", "no_masked_attention/seed_0")
    make_protocol(tmp_path, fake_python, ["sen1floods11"], seeds=1).run()
    out, runs = tmp_path / "results", tmp_path / "runs"
    with pytest.raises(
        ValueError, match="no_masked_attention/seed_0: its earlier attempt is failed"
    ):
        publish(out, runs, target)
    monkeypatch.delenv("FAKE_FAIL")
    make_protocol(tmp_path, fake_python, ["sen1floods11"], seeds=1).run()
    monkeypatch.setattr(runs_module, "git_state", lambda: dict(CLEAN, dirty=True, diff_sha="x"))
    with pytest.raises(ValueError, match="uncommitted changes"):
        publish(out, runs, target)
    monkeypatch.setattr(runs_module, "git_state", lambda: dict(CLEAN))
    (target / "old").mkdir(parents=True)
    publish(out, runs, target)
    assert not (target / "old").exists()
    assert (target / "sen1floods11" / "table_main.md").is_file()
    events = [
        json.loads(line)["event"] for line in (target / "protocol.jsonl").read_text().splitlines()
    ]
    assert events[-1] == "published"


def test_read_scores_names_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "subsets.csv"
    path.write_text("modalities,test/miou\ns1,0.25\ns2,\n")
    assert read_scores(path, "test/miou") == {"s1": 0.25}
    with pytest.raises(KeyError, match="test/iou_1"):
        read_scores(path, DATASETS["sen1floods11"].metric)


# -- tables and claims ---------------------------------------------------------------------------
def test_cells_show_mean_spread_and_missing_seeds() -> None:
    assert format_cell(Cell.of([0.2, 0.4]), planned=2) == "0.300 ± 0.141"
    assert format_cell(Cell.of([0.2]), planned=3) == "0.200 (n=1)"
    assert format_cell(None, planned=3) == "-"


def test_claims_follow_the_rule() -> None:
    assert compare(Cell(0.50, 0.02, 3), Cell(0.40, 0.05, 3)) == "above"
    assert compare(Cell(0.50, 0.08, 3), Cell(0.45, 0.01, 3)) == "level"  # within the spread
    assert compare(Cell(0.30, 0.01, 3), Cell(0.40, 0.01, 3)) == "below"

    stage = dataset_stages("quad")[0]

    def column(title: str, values: dict[str, list[float]], steps: int = 100) -> Column:
        return Column(stage, title, values, [0, 1], [], {steps}, {8})

    claim = next(c for c in CLAIMS if c.text.startswith("The proposed model beats MultiViT on in"))
    proposed = column("Sup. Proposed", {"a+b": [0.5, 0.52], "a": [0.5, 0.51], "b": [0.3, 0.31]})
    multivit = column("Sup. MultiViT", {"a+b": [0.5, 0.5], "a": [0.2, 0.21], "b": [0.3, 0.3]})
    verdict, evidence = check_claim(claim, [proposed, multivit])
    assert verdict == "holds on 1 of 2, level on the rest" and "above 1, level 1" in evidence
    one_seed = column("Sup. MultiViT", {"a+b": [0.5], "a": [0.2], "b": [0.3]})
    assert check_claim(claim, [proposed, one_seed])[0] == "cannot tell"
    longer = column("Sup. MultiViT", multivit.scores, steps=200)
    assert check_claim(claim, [proposed, longer])[0] == "not comparable"
    flat = column("Sup. Proposed", {"a+b": [0.1, 0.1], "a": [0.1, 0.1], "b": [0.1, 0.1]})
    flat_too = column("Sup. MultiViT", flat.scores)
    nothing = check_claim(claim, [flat, flat_too], empty=0.1)
    assert nothing == ("cannot tell", "both columns at the empty subset's score 0.100")
    assert check_claim(claim, [proposed, multivit], empty=0.1)[0].startswith("holds")
    costs_nothing = next(c for c in CLAIMS if "costs nothing" in c.text)
    lower = column("w/ all", {"a+b": [0.4, 0.41], "a": [0.5, 0.5], "b": [0.3, 0.3]})
    no_random = column("w/o Random", {"a+b": [0.5, 0.5], "a": [0.2, 0.2], "b": [0.3, 0.3]})
    assert check_claim(costs_nothing, [lower, no_random])[0] == "does not hold (below on 1 of 1)"


# -- the Sen1Floods11 chips and the classical baselines ------------------------------------------
BASELINES = ["threshold_fixed", "threshold_otsu", "threshold_fitted"]
CHIPS = "sen1floods11_chips"


def configs_of(call: list[str]) -> list[str]:
    """The ``--config`` files of a call, in order."""
    return [call[i + 1] for i, arg in enumerate(call) if arg == "--config"]


def test_the_chips_get_every_column_and_the_baselines_come_first() -> None:
    chips = DATASETS[CHIPS]
    assert (chips.metric, chips.metric_title, chips.data_root) == ("test/iou_1", "water IoU", None)
    for config in (chips.segment_config, chips.pretrain_config, chips.baseline_config):
        assert config is not None and config.is_file(), config
    quad = [stage.name for stage in dataset_stages("quad")]
    stages = dataset_stages(CHIPS)
    assert [stage.name for stage in stages] == BASELINES + quad
    rules = {stage.name: stage.args for stage in stages if stage.kind == "baseline"}
    assert rules == {name: ("--model.init_args.rule", name.split("_")[1]) for name in BASELINES}
    assert {stage.title for stage in stages if stage.kind == "baseline"} == {
        "Threshold (-20 dB / NDWI 0)", "Otsu per tile", "Threshold fitted"
    }  # fmt: skip
    assert MAIN_ORDER[:3] == tuple(BASELINES)
    assert DATASETS["quad"].baseline_config is None and DATASETS["dfc2023"].baseline_config is None


def test_a_baseline_is_scored_on_the_tiles_of_the_segmentation_columns() -> None:
    profile = yaml.safe_load(SEGMENT_PROFILE.read_text())["data"]["init_args"]
    for name in ("sen1floods11", CHIPS):
        dataset = DATASETS[name]
        assert dataset.baseline_config is not None
        segment = yaml.safe_load(dataset.segment_config.read_text())["data"]
        segment["init_args"] |= profile  # what the protocol layers on the segmentation runs
        baseline = yaml.safe_load(dataset.baseline_config.read_text())["data"]
        assert baseline == segment, name


def test_make_reproduce_runs_all_four_datasets_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[list[str], int | None]] = []

    class Recorder:
        def __init__(self, datasets: list[str], *args: object, **options: object) -> None:
            made.append((datasets, options["steps"]))  # type: ignore[arg-type]

        def run(self) -> None:
            pass

    monkeypatch.setattr(command_module, "Protocol", Recorder)
    command_module.main([])
    command_module.main(["--datasets", CHIPS, "--steps", "3"])
    everything = ["quad", "dfc2023", "sen1floods11", CHIPS]
    assert made == [(everything, None), ([CHIPS], 3)]
    makefile = Path("Makefile").read_text()
    assert re.search(r"^DATASETS \?= (.*)$", makefile, re.MULTILINE)[1].split() == everything


def test_plan_sets_time_aside_for_the_baselines() -> None:
    timings = {"sen1floods11": {"segment": SEGMENT}}
    runs = {"sen1floods11": {"segment": 5}}
    without = plan_steps(timings, runs, seconds=3600.0, jobs=1, seeds=2, min_steps=10)
    plan = plan_steps(timings, runs, 3600.0, 1, 2, 10, baseline_runs={"sen1floods11": 3})
    floods = plan.datasets["sen1floods11"]
    assert without.datasets["sen1floods11"].baseline_seconds == 0.0
    assert floods.baseline_seconds == BASELINE_SECONDS
    # the baselines' time comes off the training of the five trained runs, and no more
    assert plan.share_seconds == pytest.approx(
        without.share_seconds - 3 * BASELINE_SECONDS / 5, abs=0.1
    )
    assert 2 * (5 * floods.segment_seconds + 3 * floods.baseline_seconds) <= 3600.0


def test_a_baseline_run_is_one_untrained_pass_then_the_same_evaluation(
    tmp_path: Path, fake_python: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NO_TIMER", "threshold_otsu")  # a baseline needs no step figures
    make_protocol(tmp_path, fake_python, [CHIPS]).run()
    made = calls(tmp_path)
    fits = dict(zip(fit_names(made), [call for call in made if call[2] == "fit"], strict=True))
    assert len(fits) == 12 * 2
    out = tmp_path / "results" / CHIPS
    for name in BASELINES:
        for seed in (0, 1):  # run with every seed, as the other columns
            call = fits[f"{name}/seed_{seed}"]
            assert configs_of(call) == ["experiments/threshold_sen1floods11_chips.yaml"]
            assert flag(call, "--model.init_args.rule") == name.split("_")[1]
            assert flag(call, "--trainer.max_epochs") == "1"
            assert flag(call, "--seed_everything") == str(seed)
            assert "--trainer.max_steps" not in call and "--trainer.limit_train_batches" not in call
            folder = out / name / f"seed_{seed}"
            record = json.loads((folder / "stage.json").read_text())
            assert record["status"] == "done" and record["steps"] == 0, record["message"]
            assert record["checkpoint"] and (folder / "subsets.csv").is_file()
    trained = fits["sup_proposed/seed_0"]
    assert flag(trained, "--trainer.max_steps") == "20"
    assert configs_of(trained)[-1] == str(SEGMENT_PROFILE)
    assert (
        configs_of(fits["pretrain_gc/seed_0"])[0] == "experiments/pretrain_sen1floods11_chips.yaml"
    )
    evaluations = [call for call in made if call[2] == "evaluate"]
    assert len(evaluations) == 10 * 2  # baselines and segmentation columns, not pretraining
    fixed = next(c for c in evaluations if "/threshold_fixed/seed_1/" in flag(c, "--ckpt_path"))
    assert configs_of(fixed) == ["experiments/threshold_sen1floods11_chips.yaml"]
    assert flag(fixed, "--model.init_args.rule") == "fixed"
    assert flag(fixed, "--contribution_metric") == "iou_1"
    for call in evaluations:  # every evaluation of the chips: per-chip table and a quick-look
        assert "--per_chip" in call and flag(call, "--quicklook") == "Spain_7370579"

    table = (out / "table_main.md").read_text()
    header = (
        "| Multimodal input (water IoU) | Threshold (-20 dB / NDWI 0) | Otsu per tile | "
        "Threshold fitted | Sup. MultiViT | Sup. Proposed | Fine. w/ G. | Fine. w/ G. & C. |"
    )
    assert header in table
    assert "every column trained 20 steps of batch 8" in table and BASELINE_NOTE in table
    assert "| S1, S2 | 0.400 ± 0.000 | 0.400 ± 0.000 | 0.400 ± 0.000 | **0.600 ± 0.000** |" in table
    ablations = (out / "table_ablations.md").read_text()
    assert "Threshold" not in ablations and BASELINE_NOTE not in ablations
    claims = (tmp_path / "results" / "claims.md").read_text()
    assert "at least as good as with S1 alone (goal) | sen1floods11_chips | holds" in claims
    assert "the -20 dB threshold (goal) | sen1floods11_chips | cannot tell" in claims  # at empty

    make_protocol(tmp_path, fake_python, [CHIPS]).run()
    assert len(calls(tmp_path)) == len(made)  # the baselines resume like every run

    monkeypatch.setattr(runs_module, "git_state", lambda: dict(CLEAN, commit="d" * 40))
    before = len(calls(tmp_path))
    make_protocol(tmp_path, fake_python, [CHIPS], seeds=1).run()
    again = fit_names(calls(tmp_path)[before:])
    assert {f"{name}/seed_0" for name in BASELINES} <= set(again)  # other code: run again


def test_the_goals_on_the_chips_follow_the_rule(tmp_path: Path) -> None:
    goals = [claim for claim in CLAIMS if claim.datasets == (CHIPS,)]
    beats_threshold, gains_from_s2, beats_multivit = goals
    stages = {stage.name: stage for stage in dataset_stages(CHIPS)}

    def column(name: str, title: str, values: dict[str, list[float]], steps: int = 100) -> Column:
        return Column(stages[name], title, values, [0, 1], [], {steps}, {8})

    threshold = column(
        "threshold_fixed",
        "Threshold (-20 dB / NDWI 0)",
        {"s1+s2": [0.5, 0.5], "s1": [0.4, 0.4], "s2": [0.3, 0.3]},
        steps=0,  # trains nothing: comparable with any column all the same
    )
    proposed = column(
        "sup_proposed",
        "Sup. Proposed",
        {"s1+s2": [0.62, 0.64], "s1": [0.45, 0.47], "s2": [0.3, 0.32]},
    )
    multivit = column(
        "sup_multivit",
        "Sup. MultiViT",
        {"s1+s2": [0.6, 0.6], "s1": [0.3, 0.31], "s2": [0.31, 0.31]},
    )
    table = [threshold, multivit, proposed]
    assert check_claim(beats_threshold, table) == (
        "holds (1 of 1 above)",
        "above 1, level 0, below 0 (0.460 ± 0.014 against 0.400 ± 0.000)",
    )
    assert check_claim(gains_from_s2, table) == (
        "holds (1 of 1 above)",
        "above 1, level 0, below 0 (0.630 ± 0.014 against 0.460 ± 0.014)",
    )
    assert check_claim(beats_multivit, table)[0] == "holds (2 of 3 above)"  # level on S2

    worse = column(
        "sup_proposed", "Sup. Proposed", {"s1+s2": [0.3, 0.31], "s1": [0.2, 0.21], "s2": [0.1, 0.1]}
    )
    assert check_claim(beats_threshold, [threshold, multivit, worse])[0] == (
        "does not hold (below on 1 of 1)"
    )
    assert check_claim(gains_from_s2, [worse])[0] == "holds (1 of 1 above)"
    s2_hurts = column("sup_proposed", "Sup. Proposed", {"s1+s2": [0.3, 0.31], "s1": [0.45, 0.47]})
    assert check_claim(gains_from_s2, [s2_hurts])[0] == "does not hold (below on 1 of 1)"
    assert check_claim(beats_multivit, [multivit, worse])[0] == "does not hold (below on 3 of 3)"

    one_seed = column("sup_proposed", "Sup. Proposed", {"s1+s2": [0.63], "s1": [0.46]})
    for claim in goals:
        assert check_claim(claim, [threshold, multivit, one_seed]) == (
            "cannot tell",
            "fewer than two seeds",
        )
    threshold_once = column("threshold_fixed", threshold.title, {"s1": [0.4]}, steps=0)
    assert check_claim(beats_threshold, [threshold_once, proposed])[0] == "cannot tell"
    s1_only = column("sup_proposed", "Sup. Proposed", {"s1": [0.45, 0.47]})
    assert check_claim(gains_from_s2, [s1_only]) == ("cannot tell", "no finished runs")
    longer = column("sup_multivit", "Sup. MultiViT", multivit.scores, steps=200)
    assert check_claim(beats_multivit, [longer, proposed])[0] == "not comparable"

    protocol = SimpleNamespace(code=CLEAN, out_dir=tmp_path)  # what write_claims reads
    tables = {"table_main": table, "table_ablations": []}
    path = write_claims(protocol, {"sen1floods11": tables, CHIPS: tables})  # type: ignore[arg-type]
    goal_lines = [line for line in path.read_text().splitlines() if "(goal)" in line]
    assert len(goal_lines) == 3 and all(f"| {CHIPS} |" in line for line in goal_lines)
