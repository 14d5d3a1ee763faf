import json
from pathlib import Path

import pytest
import torch
import yaml

from fusion.run.model_file import (
    CARD_FILE,
    WEIGHTS_FILE,
    UnsafeCheckpointError,
    export_model,
    load_checkpoint,
)
from fusion.scene.pipeline import load_scene_model
from fusion.tasks import SegmentationTask
from tests.tiny_models import TINY_BACKBONE, TINY_HEAD

MODALITIES = {"s1": 2, "s2": 4}


class Payload:
    """Unpickling this writes a file: the code a malicious checkpoint would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


def tiny_run(tmp_path: Path) -> Path:
    """A segmentation checkpoint where `fusion fit` puts one, with its run's config.yaml."""
    torch.manual_seed(0)
    task = SegmentationTask(MODALITIES, num_classes=2, **TINY_BACKBONE, **TINY_HEAD)
    version = tmp_path / "run" / "version_0"
    (version / "checkpoints").mkdir(parents=True)
    hparams = {**dict(task.hparams), "_class_path": "fusion.tasks.SegmentationTask"}
    checkpoint = version / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, checkpoint)
    data = {
        "class_path": "datamodules.Sen1Floods11DataModule",
        "init_args": {"root": "somewhere", "tile_size": 16, "image_size": 32, "batch_size": 2},
    }
    (version / "config.yaml").write_text(yaml.safe_dump({"data": data}))
    (version / "metrics.csv").write_text(  # as the CSV logger writes it: sparse columns
        "epoch,step,train/loss,val/miou,test/miou\n0,9,1.5,0.25,\n1,19,1.2,0.375,\n1,19,,,0.5\n"
    )
    return checkpoint


def test_a_checkpoint_with_a_pickled_payload_is_refused_and_the_payload_never_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": Payload(marker)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="--trust_checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        load_scene_model(path)
    assert not marker.exists()
    load_checkpoint(path, trust=True)  # the user's explicit choice, for a file they trust
    assert marker.read_text() == "the payload ran"


def test_our_checkpoints_load_without_unpickling(tmp_path: Path) -> None:
    checkpoint = load_checkpoint(tiny_run(tmp_path))
    assert set(checkpoint) == {"state_dict", "hyper_parameters"}


def test_an_exported_model_predicts_exactly_what_its_checkpoint_predicts(tmp_path: Path) -> None:
    checkpoint = tiny_run(tmp_path)
    out = export_model(checkpoint, tmp_path / "water_model")
    assert (out / WEIGHTS_FILE).is_file()
    card = json.loads((out / CARD_FILE).read_text())
    assert card["task"] == "fusion.tasks.SegmentationTask"
    assert card["hyper_parameters"]["modalities"] == {"s1": 2, "s2": 4}
    data = card["data"]
    assert data["class_path"] == "datamodules.Sen1Floods11DataModule"
    assert "root" not in data["init_args"] and data["init_args"]["tile_size"] == 16
    assert data["modalities"]["s2"]["read_bands"] == [2, 3, 4, 8]
    assert set(data["normalization"]) == {"s1", "s2"} and data["classes"] == ["not_water", "water"]
    assert card["metrics"] == {"test/miou": 0.5, "val/miou": 0.375}  # the last of each
    from_checkpoint = load_scene_model(checkpoint, device="cpu")
    from_export = load_scene_model(out, device="cpu")
    assert from_export.scale == from_checkpoint.scale == 2.0  # image_size / tile_size
    assert from_export.dataset.stats == from_checkpoint.dataset.stats
    inputs = {"s1": torch.randn(2, 2, 32, 32), "s2": torch.randn(2, 4, 32, 32)}
    with torch.no_grad():
        first = from_checkpoint.task(inputs)
        second = from_export.task(inputs)
    assert torch.equal(first.final_mask_logits, second.final_mask_logits)
    assert torch.equal(first.final_class_logits, second.final_class_logits)
    with pytest.raises(FileExistsError, match="not empty"):
        export_model(checkpoint, out)
    with pytest.raises(ValueError, match="already an exported model"):
        export_model(out, tmp_path / "again")


def test_export_through_the_command_line(tmp_path: Path, capsys) -> None:
    from fusion.cli import main

    checkpoint = tiny_run(tmp_path)
    out = main(["export", "--ckpt_path", str(checkpoint), "--out", str(tmp_path / "m")])
    assert (out / CARD_FILE).is_file()
    assert "Sen1Floods11" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="is a folder without"):
        load_checkpoint(tmp_path)
