from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml
from rasterio.windows import Window

from datamodules.datamodule import collate_samples
from datamodules.sen1floods11 import Sen1Floods11Chip
from fusion.heads.inference import semantic_scores
from fusion.run.hardware import choose_precision
from fusion.scene import load_scene_model, predict_scene
from fusion.scene.pipeline import CPU_BATCH
from fusion.scene.sources import ModalityRaster, reference_grid
from fusion.tasks import SegmentationTask
from tests.data.geotiff import write_tif
from tests.fusion.scene.scenes import save_checkpoint, tiny_task, write_run_config
from tests.tiny_models import TINY_BACKBONE, TINY_HEAD

CHIP = dict(crs="EPSG:4326", origin=(-3.0, 40.0), pixel=1e-4)


def write_chip(root: Path) -> Path:
    """A 64 x 64 Sen1Floods11 chip with no data in its test quarter (bottom right)."""
    rng = np.random.default_rng(0)
    s1 = rng.normal(-12, 4, (2, 64, 64)).astype(np.float32)
    s1[:, 40:43, 50:53] = np.nan  # a few pixels: their patch stays visible
    s2 = rng.integers(100, 4000, (13, 64, 64)).astype(np.uint16)
    s2[:, 32:40, 32:48] = 0  # two whole patches of 8 x 8: hidden
    label = rng.integers(-1, 2, (1, 64, 64)).astype(np.int16)
    write_tif(root / "Chip_S1Hand.tif", s1, nodata=np.nan, **CHIP)
    write_tif(root / "Chip_S2Hand.tif", s2, nodata=0, **CHIP)
    write_tif(root / "Chip_LabelHand.tif", label, **CHIP)
    return root


def test_tile_sample_and_prediction_match_the_training_pipeline(tmp_path: Path) -> None:
    root = write_chip(tmp_path / "chip")
    expected = Sen1Floods11Chip(root, split="test", tile_size=32)[0]  # rows, cols 32..64
    task = tiny_task()
    model = load_scene_model(
        save_checkpoint(task, tmp_path / "ckpt/last.ckpt"), precision="32-true"
    )  # the training pipeline's forward below runs in float32
    grid = reference_grid(root / "Chip_S1Hand.tif")
    window = Window(32, 32, 32, 32)
    rasters = {
        name: ModalityRaster(name, root / f"Chip_{name.upper()}Hand.tif", info, grid)
        for name, info in model.modality_info.items()
    }
    sample = model.sample({name: r.read_window(window) for name, r in rasters.items()})
    for key in ("s1", "s2", "present", "valid"):
        torch.testing.assert_close(sample[key], expected[key], rtol=0, atol=0)
    assert (
        not sample["valid"][1, 32 - 32 : 8, 0:16].any() and sample["valid"][0].sum() == 32 * 32 - 9
    )

    with torch.inference_mode():
        predictions = task.encode_batch(collate_samples([expected]), train=False)
        scores = semantic_scores(
            predictions.final_class_logits, predictions.final_mask_logits, (32, 32)
        )
    direct = (scores / scores.sum(1, keepdim=True))[0]
    torch.testing.assert_close(model.predict([sample], 32)[0], direct)

    result = predict_scene(
        model,
        {"s1": root / "Chip_S1Hand.tif", "s2": root / "Chip_S2Hand.tif"},
        tmp_path / "out/map.tif",
        overlap=0.0,  # tiles do not overlap: the test tile alone predicts its pixels
        probabilities="float32",
        progress=False,
        quicklook=False,
    )
    assert result.tiles == 4
    with rasterio.open(result.paths.probabilities) as src:
        written = src.read(window=window)
    np.testing.assert_allclose(written, direct.numpy(), atol=1e-5)


def test_run_config_gives_statistics_and_scale(tmp_path: Path) -> None:
    checkpoint = save_checkpoint(tiny_task(), tmp_path / "run/checkpoints/last.ckpt", None)
    stats = {
        "s1": {"mean": [-10.0, -20.0], "std": [5.0, 5.0]},
        "s2": {"mean": [1000.0] * 4, "std": [500.0] * 4},
    }
    write_run_config(tmp_path / "run", image_size=64, tile_size=32, stats=stats)
    model = load_scene_model(checkpoint)
    assert model.scale == 2 and model.tile == 32 and model.tile_pixels == 16
    assert model.dataset.stats == stats and "config.yaml" in model.source
    assert model.class_names == ("not_water", "water")
    assert load_scene_model(checkpoint, scale=1.0, tile=64).tile_pixels == 64


def test_refuses_checkpoints_it_cannot_use(tmp_path: Path) -> None:
    bare = save_checkpoint(tiny_task(), tmp_path / "a/bare.ckpt", datamodule=None)
    with pytest.raises(ValueError, match="pass --config"):
        load_scene_model(bare)
    with pytest.raises(FileNotFoundError, match="nothing.ckpt"):
        load_scene_model(tmp_path / "nothing.ckpt")
    other = tmp_path / "pretrain.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"_class_path": "x.PretrainTask"}}, other)
    with pytest.raises(ValueError, match="not a SegmentationTask checkpoint"):
        load_scene_model(other)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        load_scene_model(save_checkpoint(tiny_task(), tmp_path / "b/x.ckpt"), tile=30)


def test_a_dfc2023_run_predicts_at_its_training_scale(tmp_path: Path) -> None:
    task = SegmentationTask(
        {"rgb": 3, "sar": 1, "dsm": 1}, num_classes=2, **TINY_BACKBONE, **TINY_HEAD
    )
    checkpoint = save_checkpoint(task, tmp_path / "run/checkpoints/last.ckpt", None)
    config = {
        "data": {"class_path": "datamodules.DFC2023DataModule", "init_args": {"image_size": 256}}
    }
    (tmp_path / "run/config.yaml").write_text(yaml.safe_dump(config))
    model = load_scene_model(checkpoint)
    assert model.scale == 0.5  # 512 px tiles resized to 256 in training, not 1
    assert load_scene_model(checkpoint, scale=1.0).scale == 1.0


def test_the_model_runs_under_the_autocast_training_would_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = save_checkpoint(tiny_task(), tmp_path / "run/checkpoints/last.ckpt")
    assert load_scene_model(checkpoint).precision == choose_precision(accelerator="cpu").precision
    for precision, expected in (("bf16-mixed", True), ("32-true", False)):
        model = load_scene_model(checkpoint, precision=precision)
        seen = []
        encode = model.task.encode_batch

        def noting(*args, seen=seen, encode=encode, **kwargs):
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return encode(*args, **kwargs)

        monkeypatch.setattr(model.task, "encode_batch", noting)
        scores = model.predict([model.blank_sample()], model.tile_pixels)
        assert scores.dtype == torch.float32 and seen[0][0] is expected
        if expected:
            assert seen[0][1] == torch.bfloat16
    assert model.default_batch_size() == CPU_BATCH
    with pytest.raises(ValueError, match="precision must be"):
        load_scene_model(checkpoint, precision="8-true")
