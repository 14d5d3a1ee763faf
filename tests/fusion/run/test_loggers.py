from pathlib import Path

from fusion.run.loggers import WandbLogger


def test_wandb_logger_leaves_out_unset_anonymous_and_makes_its_folder(tmp_path: Path) -> None:
    logger = WandbLogger(save_dir=str(tmp_path / "runs"), offline=True, project="p")
    assert "anonymous" not in logger._wandb_init  # wandb warns whenever the key is there
    assert (tmp_path / "runs").is_dir()  # else wandb warns "git root runs does not exist"
    assert WandbLogger(save_dir=str(tmp_path), anonymous=True)._wandb_init["anonymous"] == "allow"
