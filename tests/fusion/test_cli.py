"""The real command line on tiny fixtures: a fast step, and exact resumption from a checkpoint."""

import csv
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from fusion.cli import COMMANDS, main, run, user_error_message
from fusion.run.budget import TimeBudget
from fusion.run.hardware import Hardware
from tests.fusion.scene.scenes import save_checkpoint, tiny_task, write_s1

REPO = Path(__file__).resolve().parents[2]


def cli_args(data_root: Path, run_dir: Path, *extra: str, command: str = "fit") -> list[str]:
    logger = [
        {
            "class_path": "lightning.pytorch.loggers.CSVLogger",
            "init_args": {"save_dir": str(run_dir), "name": "run"},
        }
    ]
    return [
        command,
        "--config",
        str(REPO / "experiments/pretrain_quad.yaml"),
        "--config",
        str(REPO / "experiments/cpu.yaml"),
        "--data.root",
        str(data_root),
        "--data.init_args.image_size",
        "32",
        "--data.init_args.batch_size",
        "2",
        "--data.init_args.num_workers",
        "0",
        "--model.init_args.img_size",
        "32",
        "--model.init_args.patch_size",
        "8",
        "--model.init_args.embed_dim",
        "32",
        "--model.init_args.depth",
        "2",
        "--model.init_args.num_heads",
        "2",
        "--model.init_args.decoder_dim",
        "32",
        "--model.init_args.decoder_heads",
        "2",
        "--model.init_args.warmup_epochs",
        "1",
        "--trainer.logger",
        json.dumps(logger),
        "--trainer.default_root_dir",
        str(run_dir),
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        *extra,
    ]


class StopAfterFirstEpoch(L.Callback):
    """Interrupts a run at the end of its first epoch, as a crash or a time limit would."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


def step_losses(run_dir: Path) -> dict[int, float]:
    rows = csv.DictReader((run_dir / "metrics.csv").open())
    return {int(r["step"]): float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")}


def test_one_fast_training_step(quadruplets_root: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli = main(cli_args(quadruplets_root, tmp_path, "--trainer.fast_dev_run", "1"))
    assert cli.trainer.global_step == 1
    # Called from Python with pytest's own arguments in sys.argv: no warning about that.
    assert not [w for w in caught if "args parameter is intended" in str(w.message)]
    assert cli.model.backbone.modality_names == ("s1", "s2", "dem", "dnw")


@pytest.mark.parametrize("command", ["validate", "test", "predict"])
def test_other_subcommands(quadruplets_root: Path, tmp_path: Path, command: str) -> None:
    cli = main(cli_args(quadruplets_root, tmp_path, command=command))
    assert cli.trainer.state.finished


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_reproduces_the_next_steps(
    quadruplets_root: Path, tmp_path: Path, workers: int, capsys: pytest.CaptureFixture
) -> None:
    common = (
        "--trainer.precision",
        "32-true",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.log_every_n_steps",
        "1",
        "--data.init_args.num_workers",
        str(workers),
    )
    main(cli_args(quadruplets_root, tmp_path / "straight", "--trainer.max_epochs", "2", *common))
    run = tmp_path / "straight/run/version_0"
    straight = step_losses(run)
    # The run folder holds the figures and checkpoints, and the summary says where.
    assert sorted(p.name for p in (run / "figures").iterdir()) == [
        "reconstruction_epoch0000.png",
        "reconstruction_epoch0001.png",
    ]
    printed = capsys.readouterr().out
    assert "val/loss:" in printed and str(run / "metrics.csv") in printed
    assert str(run / "checkpoints" / "last.ckpt") in printed

    interrupt = f"--trainer.callbacks+={__name__}.StopAfterFirstEpoch"
    main(
        cli_args(
            quadruplets_root, tmp_path / "first", "--trainer.max_epochs", "2", interrupt, *common
        )
    )
    checkpoint = tmp_path / "first/run/version_0/checkpoints/last.ckpt"
    assert checkpoint.is_file()
    main(
        cli_args(
            quadruplets_root,
            tmp_path / "resumed",
            "--trainer.max_epochs",
            "2",
            "--ckpt_path",
            str(checkpoint),
            *common,
        )
    )
    resumed = step_losses(tmp_path / "resumed/run/version_0")

    assert sorted(straight) == [0, 1, 2, 3] and sorted(resumed) == [2, 3]
    for step in (2, 3):
        assert resumed[step] == straight[step], (step, resumed, straight)


@pytest.mark.parametrize(
    ("machine", "extra", "expected"),
    [
        (dict(cpu_capability="AVX2"), (), "32-true"),
        (dict(cpu_capability="AVX512", amx=True, avx512_bf16=True), (), "bf16-mixed"),
        (dict(cpu_capability="AVX512", avx512_bf16=True), (), "bf16-mixed"),
        # an explicit precision wins over the hardware
        (dict(cpu_capability="AVX512", amx=True), ("--trainer.precision", "32-true"), "32-true"),
    ],
)
def test_precision_is_chosen_from_the_hardware(
    quadruplets_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    machine: dict,
    extra: tuple,
    expected: str,
) -> None:
    flags = {**dict(cuda=False, cuda_bf16=False, amx=False, avx512_bf16=False), **machine}
    monkeypatch.setattr("fusion.run.hardware.detect_hardware", lambda: Hardware(**flags))
    with caplog.at_level(logging.INFO):
        cli = main(cli_args(quadruplets_root, tmp_path, "--trainer.fast_dev_run", "1", *extra))
    assert cli.trainer.precision == expected
    assert cli.trainer.accelerator.__class__.__name__ == "CPUAccelerator"
    said = "set in the config" if extra else "chosen from the hardware"
    assert f"Precision: {expected}" in caplog.text and said in caplog.text


def test_time_budget_plans_the_epochs(
    quadruplets_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    args = (
        "--time_budget",
        "0.1",
        "--trainer.max_epochs",
        "500",
        "--trainer.limit_val_batches",
        "1",
    )
    with caplog.at_level(logging.INFO):
        cli = main(cli_args(quadruplets_root, tmp_path, *args))
    budget = next(c for c in cli.trainer.callbacks if isinstance(c, TimeBudget))
    assert "TimeBudget plan: precision" in caplog.text
    assert 1 <= budget.planned_epochs < 500
    assert cli.trainer.current_epoch <= budget.planned_epochs
    schedule = cli.trainer.lr_scheduler_configs[0].scheduler.lr_lambdas[0]
    assert schedule.total_steps == budget.planned_epochs * cli.trainer.num_training_batches


def test_help_lists_every_command_with_one_line(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    names = [command.name for command in COMMANDS]
    expected = ["fit", "validate", "test", "predict", "evaluate", "predict-scene", "export"]
    assert set(expected) <= set(names)
    for command in COMMANDS:
        line = rf"^  {re.escape(command.name)} +{re.escape(command.summary)}$"
        assert re.search(line, printed, re.MULTILINE), command.name
        assert callable(command.runner())  # every command's module and function exist
    with pytest.raises(SystemExit) as stopped:
        main(["frobnicate"])
    assert stopped.value.code == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def one_line_error(capsys: pytest.CaptureFixture, args: list[str]) -> str:
    """The error line of a command that must fail on its input, checked to be one line."""
    assert run(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert "Traceback" not in captured.err + captured.out
    assert lines[-1] == "(rerun with --debug for the full traceback)"
    assert lines[-2].startswith(f"fusion {args[0]}: error: ")
    return lines[-2]


def test_bad_input_ends_in_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = ["--config", str(REPO / "experiments/segment_quad.yaml")]
    line = one_line_error(capsys, ["fit", *config, "--data.root", str(tmp_path / "none")])
    assert line.endswith(f"data root {tmp_path / 'none'} is not a folder")
    line = one_line_error(
        capsys, ["fit", *config, "--data.root", str(tmp_path), "--trainer.max_epochs", "abc"]
    )
    assert line.endswith("--trainer.max_epochs: expected int, got 'abc'")
    line = one_line_error(capsys, ["fit", *config, "--data.root", str(tmp_path), "--trainerx", "1"])
    assert "--trainerx" in line
    line = one_line_error(
        capsys, ["predict-scene", "--ckpt_path", str(tmp_path / "no.ckpt"), "--out", "m.tif"]
    )
    assert line.endswith(f"checkpoint not found: {tmp_path / 'no.ckpt'}")
    checkpoint = save_checkpoint(tiny_task(), tmp_path / "run/checkpoints/last.ckpt")
    scene = ["predict-scene", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "m.tif")]
    line = one_line_error(capsys, [*scene, "--dem", "dem.tif"])
    assert "modality 'dem' is not one of the checkpoint's modalities (s1, s2)" in line
    line = one_line_error(capsys, [*scene, "--s1", str(tmp_path / "s1.tif")])
    assert line.endswith(f"s1 raster not found: {tmp_path / 's1.tif'}")
    (tmp_path / "notes.tif").write_text("not a raster")
    line = one_line_error(capsys, [*scene, "--s1", str(tmp_path / "notes.tif")])
    assert f"s1 raster {tmp_path / 'notes.tif'} is not a raster GDAL can read" in line
    s1 = write_s1(tmp_path / "s1.tif", 40, 40)
    for option, value, message in (
        ("--tile_size", "0", "tile size must be positive, got 0"),
        ("--batch_size", "0", "batch size must be at least 1, got 0"),
        ("--workers", "-1", "workers must be 0 (read in this process) or more, got -1"),
        ("--device", "foo", "unknown device 'foo'"),
    ):
        line = one_line_error(capsys, [*scene, "--s1", str(s1), option, value])
        assert message in line, line
    # Not a checkpoint, or a damaged one: said so, naming the file.
    for name, content in (("map.ckpt", s1.read_bytes()), ("empty.ckpt", b"")):
        (tmp_path / name).write_bytes(content)
        line = one_line_error(capsys, ["export", "--ckpt_path", str(tmp_path / name), "--out", "x"])
        assert f"{tmp_path / name} is not a PyTorch checkpoint" in line
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(checkpoint.read_bytes()[:20000])
    line = one_line_error(capsys, ["export", "--ckpt_path", str(truncated), "--out", "x"])
    assert f"{truncated} is not a PyTorch checkpoint" in line and "truncated" in line
    # A constructor argument the model does not take: jsonargparse's reason, on one line.
    line = one_line_error(
        capsys,
        ["fit", *config, "--data.root", str(tmp_path), "--model.init_args.num_querie", "5"],
    )
    assert line.endswith("Option 'num_querie' is not accepted")


class FailingTiles(torch.utils.data.Dataset):
    """A dataset whose reading fails, as a damaged raster does in a loader worker."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> int:
        raise ValueError("s2: reading /data/tile.tif failed (TIFFReadEncodedTile() failed)")


def test_an_error_in_a_loader_worker_keeps_its_own_message() -> None:
    loader = torch.utils.data.DataLoader(FailingTiles(), num_workers=1)
    with pytest.raises(ValueError) as caught:
        next(iter(loader))
    assert str(caught.value).startswith("Caught ValueError in DataLoader worker process 0")
    assert user_error_message(caught.value) == (
        "s2: reading /data/tile.tif failed (TIFFReadEncodedTile() failed)"
    )
    assert user_error_message(RuntimeError("a bug")) is None  # shown with its traceback


def test_debug_shows_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    args = ["predict-scene", "--ckpt_path", str(tmp_path / "no.ckpt"), "--out", "m.tif"]
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        run([*args, "--debug"])
    monkeypatch.setenv("FUSION_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        run(args)
    monkeypatch.setenv("FUSION_DEBUG", "0")
    assert run(args) == 2


def test_the_command_in_a_fresh_process_says_only_what_the_user_caused(
    quadruplets_root: Path, tmp_path: Path
) -> None:
    unset = ("FUSION_DATA_ROOT", "PYTHONWARNINGS")  # as a user's shell has them
    environment = {k: v for k, v in os.environ.items() if k not in unset}

    def fusion(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fusion", *args],
            cwd=tmp_path,  # the configs' loggers write runs/ here
            env={**environment, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
        )

    helped = fusion("--help")
    assert helped.returncode == 0 and "predict-scene" in helped.stdout
    assert helped.stderr == ""
    failed = fusion("fit", "--config", str(REPO / "experiments/segment_quad.yaml"))
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-2:] == [
        "fusion fit: error: No data root: pass root (--data.root on the command line) or set "
        "FUSION_DATA_ROOT",
        "(rerun with --debug for the full traceback)",
    ]
    assert "warn" not in (failed.stdout + failed.stderr).lower()
    # A real run with the config's own loggers (CSV and W&B offline): no warning either.
    args = cli_args(quadruplets_root, tmp_path, "--trainer.max_steps", "1")
    logger = args.index("--trainer.logger")
    del args[logger : logger + 2]
    ran = fusion(*args, "--trainer.limit_val_batches", "1")
    assert ran.returncode == 0, ran.stderr
    assert "warn" not in (ran.stdout + ran.stderr).lower(), ran.stdout + ran.stderr
