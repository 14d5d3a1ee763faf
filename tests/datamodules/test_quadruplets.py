import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from datamodules import IGNORE_INDEX, Quadruplets, QuadrupletsDataModule, RasterError
from datamodules.landcover import urban_atlas_to_classes
from tests.data.geotiff import write_tif


def test_sample_contract(quadruplets_root: Path) -> None:
    ds = Quadruplets(quadruplets_root, split="train")
    assert len(ds) == 4
    sample = ds[0]
    assert sample["s1"].shape == (2, 32, 32) and sample["s1"].dtype == torch.float32
    assert sample["s2"].shape == (4, 32, 32)
    assert sample["dem"].shape == (1, 32, 32)
    assert sample["dnw"].shape == (1, 32, 32) and sample["dnw"].dtype == torch.int64
    assert int(sample["dnw"].max()) <= 8  # 9 would be no data
    assert sample["present"].tolist() == [True] * 4
    assert sample["mask"].dtype == torch.int64
    labels = set(sample["mask"].unique().tolist())
    assert labels <= set(range(7)) | {IGNORE_INDEX}
    assert (sample["mask"][0, :3] == IGNORE_INDEX).all()  # unmapped code 0
    assert sample["name"] == "alpha/alpha_00"


def test_labels_follow_the_urban_atlas_table(quadruplets_root: Path) -> None:
    ds = Quadruplets(quadruplets_root, split="val")
    with rasterio.open(quadruplets_root / "gamma/label/gamma_00.tif") as src:
        codes = src.read(1)
    np.testing.assert_array_equal(ds[0]["mask"].numpy(), urban_atlas_to_classes(codes))


def test_normalization_uses_stats(quadruplets_root: Path) -> None:
    stats = {
        "s1": {"mean": [-12, -12], "std": [4, 4]},
        "s2": {"mean": [0] * 4, "std": [1] * 4},
        "dem": {"mean": [0], "std": [1]},
    }
    raw = Quadruplets(quadruplets_root, normalize=False)[0]
    norm = Quadruplets(quadruplets_root, stats=stats)[0]
    torch.testing.assert_close(norm["s1"], (raw["s1"] + 12) / 4)
    torch.testing.assert_close(norm["dem"], raw["dem"])


def test_absent_modalities_are_zero_and_flagged(quadruplets_root: Path) -> None:
    ds = Quadruplets(quadruplets_root, modality_sampling=["s2", "dnw"])
    sample = ds[1]
    assert sample["present"].tolist() == [False, True, False, True]
    assert not sample["s1"].any() and not sample["dem"].any()
    assert sample["s2"].any()
    # An absent Dynamic World map holds the no-data id 9, never class 0 ("water").
    absent = Quadruplets(quadruplets_root, modality_sampling=["s1"])[1]["dnw"]
    assert absent.dtype == torch.int64 and (absent == 9).all()


def test_subset_of_modalities(quadruplets_root: Path) -> None:
    ds = Quadruplets(quadruplets_root, modalities=["dnw", "s1"])
    sample = ds[0]
    assert ds.modalities == ("dnw", "s1")
    assert "s2" not in sample and sample["present"].shape == (2,)
    assert ds.modality_specs == {"dnw": ("categorical", 9), "s1": 2}


def test_regions_override_and_split_folder_fallback(quadruplets_root: Path, tmp_path: Path) -> None:
    assert len(Quadruplets(quadruplets_root, split="train", regions=["beta"])) == 2
    (quadruplets_root / "splits.json").unlink()
    with pytest.raises(FileNotFoundError, match="splits.json"):
        Quadruplets(quadruplets_root, split="train")
    (quadruplets_root / "alpha").rename(quadruplets_root / "train")
    assert len(Quadruplets(quadruplets_root, split="train")) == 2


def test_unknown_and_empty_modalities(quadruplets_root: Path) -> None:
    with pytest.raises(ValueError, match="'optical'"):
        Quadruplets(quadruplets_root, modalities=["optical"])
    with pytest.raises(ValueError, match="empty"):
        Quadruplets(quadruplets_root, modalities=[])


def test_missing_modality_file_is_named(quadruplets_root: Path) -> None:
    (quadruplets_root / "beta/dem/beta_01.tif").unlink()
    with pytest.raises(FileNotFoundError, match="beta/dem/beta_01.tif"):
        Quadruplets(quadruplets_root, split="train")
    # A dataset that does not use the DEM does not need it.
    assert len(Quadruplets(quadruplets_root, split="train", modalities=["s1", "s2"])) == 4


def test_split_without_regions(quadruplets_root: Path) -> None:
    (quadruplets_root / "splits.json").write_text(json.dumps({"train": ["alpha"]}))
    with pytest.raises(ValueError, match="'val'"):
        Quadruplets(quadruplets_root, split="val")


def _replace(path: Path, data: np.ndarray, **kwargs) -> None:
    with rasterio.open(path) as src:
        origin = (src.transform.c, src.transform.f)
        crs = src.crs.to_string()
    write_tif(path, data, **{"origin": origin, "crs": crs, **kwargs})


def test_wrong_band_count_is_named(quadruplets_root: Path) -> None:
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", np.ones((3, 32, 32), np.uint16))
    ds = Quadruplets(quadruplets_root)
    with pytest.raises(RasterError, match=r"alpha/s2/alpha_00.tif: expected 4 band\(s\), found 3"):
        ds[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": np.zeros((1, 30, 32), np.float32)}, "size"),
        ({"crs": "EPSG:32631"}, "CRS"),
        ({"origin": (500010.0, 5000000.0)}, "transform"),
    ],
)
def test_mismatched_grids_are_named(quadruplets_root: Path, change: dict, message: str) -> None:
    path = quadruplets_root / "alpha/dem/alpha_00.tif"
    data = change.pop("data", np.zeros((1, 32, 32), np.float32))
    _replace(path, data, **change)
    ds = Quadruplets(quadruplets_root)
    with pytest.raises(RasterError, match=f"alpha/dem/alpha_00.tif: grid differs.*{message}"):
        ds[0]


def test_label_on_another_grid_is_named(quadruplets_root: Path) -> None:
    _replace(
        quadruplets_root / "alpha/label/alpha_00.tif",
        np.zeros((1, 32, 32), np.uint16),
        origin=(0.0, 0.0),
    )
    with pytest.raises(RasterError, match="alpha/label/alpha_00.tif: grid differs"):
        Quadruplets(quadruplets_root)[0]


def test_nodata_and_nan_are_filled_and_ignored(quadruplets_root: Path) -> None:
    s1 = rasterio.open(quadruplets_root / "alpha/s1/alpha_00.tif").read()
    s1[0, 5, 5] = np.nan
    _replace(quadruplets_root / "alpha/s1/alpha_00.tif", s1)
    s2 = rasterio.open(quadruplets_root / "alpha/s2/alpha_00.tif").read()
    s2[:, 7, 9] = 0  # the file's no-data value
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", s2, nodata=0)
    sample = Quadruplets(quadruplets_root)[0]
    assert torch.isfinite(sample["s1"]).all()
    assert not sample["valid"][0, 5, 5] and not sample["valid"][1, 7, 9]
    # Filled with the modality mean, which normalizes to zero.
    assert sample["s1"][:, 5, 5].abs().max() < 1e-5 and sample["s2"][:, 7, 9].abs().max() < 1e-5
    # The labels keep every pixel: their ignore is the label's own no data only.
    assert (sample["mask"] != IGNORE_INDEX).sum() == 32 * 32 - 3


def test_modality_entirely_nodata_becomes_absent(quadruplets_root: Path) -> None:
    _replace(quadruplets_root / "alpha/dem/alpha_00.tif", np.full((1, 32, 32), np.nan, np.float32))
    sample = Quadruplets(quadruplets_root)[0]
    assert sample["present"].tolist() == [True, True, False, True]
    assert not sample["dem"].any()
    assert (sample["mask"] != IGNORE_INDEX).any()


def test_datamodule_batches_mixed_subsets(quadruplets_root: Path) -> None:
    dm = QuadrupletsDataModule(
        root=str(quadruplets_root), batch_size=4, crop_size=16, train_modalities_per="sample"
    )
    dm.setup("fit")
    torch.manual_seed(3)
    batch = next(iter(dm.train_dataloader()))
    assert batch["s1"].shape == (4, 2, 16, 16) and batch["dnw"].shape == (4, 1, 16, 16)
    assert batch["present"].shape == (4, 4) and batch["present"].any(1).all()
    assert batch["mask"].shape == (4, 16, 16)
    assert len(batch["name"]) == 4
    for i in range(4):
        for m, name in enumerate(dm.modalities):
            if not batch["present"][i, m]:
                assert (batch[name][i] == (9 if name == "dnw" else 0)).all()
    val = next(iter(dm.val_dataloader()))
    assert val["present"].all() and val["s1"].shape[-1] == 32
    dm.set_eval_modalities(["dem"])
    assert next(iter(dm.val_dataloader()))["present"][:, 2].all()
    assert dm.modality_specs == {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}


def test_datamodule_draws_one_subset_per_training_batch(quadruplets_root: Path) -> None:
    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=4, crop_size=16)
    assert dm.draws_per_batch
    dm.setup("fit")
    assert dm.train_dataset.modality_sampling.subset == dm.modalities  # loads what tiles have
    loaded = next(iter(dm.train_dataloader()))
    assert loaded["present"].all()
    subsets = Counter()
    for _ in range(150):
        batch = dm.draw_batch_modalities(loaded)
        assert (batch["present"] == batch["present"][0]).all()  # one subset for the batch
        assert not batch["subset_fallback"].any()
        subsets[tuple(batch["present"][0].tolist())] += 1
        for m, name in enumerate(dm.modalities):
            if not batch["present"][0, m]:
                assert (batch[name] == (9 if name == "dnw" else 0)).all()
                assert not batch["valid"][:, m].any()
            else:
                assert torch.equal(batch[name], loaded[name])
    assert len(subsets) == 15 and min(subsets.values()) >= 3  # uniform over the 15 subsets
    # A tile without the drawn modalities gets a draw of its own among those it has.
    lacking = dict(loaded, present=loaded["present"].clone())
    lacking["present"][0] = torch.tensor([False, False, True, False])  # only the DEM
    fallbacks = 0
    for _ in range(40):
        batch = dm.draw_batch_modalities(lacking)
        assert batch["present"][0].tolist() == [False, False, True, False]
        fallbacks += int(batch["subset_fallback"][0])
        assert not batch["subset_fallback"][1:].any()
    assert 10 <= fallbacks <= 35  # the drawn subset lacks the DEM in 7 of 15 draws
    lacking["present"][1] = False
    with pytest.raises(ValueError, match="every modality is no data"):
        dm.draw_batch_modalities(lacking)


def test_batch_draws_are_reproducible_and_only_in_training(quadruplets_root: Path) -> None:
    from types import SimpleNamespace

    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=4, crop_size=16)
    dm.setup("fit")
    loaded = next(iter(dm.train_dataloader()))
    state = dm.state_dict()
    first = [dm.draw_batch_modalities(loaded)["present"] for _ in range(5)]
    dm.load_state_dict(state)
    assert all(torch.equal(a, dm.draw_batch_modalities(loaded)["present"]) for a in first)
    dm.trainer = SimpleNamespace(training=False, global_rank=0)
    assert dm.on_after_batch_transfer(loaded, 0) is loaded
    dm.trainer = SimpleNamespace(training=True, global_rank=0)
    assert "subset_fallback" in dm.on_after_batch_transfer(loaded, 0)
    per_sample = QuadrupletsDataModule(root=str(quadruplets_root), train_modalities_per="sample")
    assert not per_sample.draws_per_batch
    assert not QuadrupletsDataModule(
        root=str(quadruplets_root), train_modalities="all"
    ).draws_per_batch
    with pytest.raises(ValueError, match="train_modalities_per"):
        QuadrupletsDataModule(root=str(quadruplets_root), train_modalities_per="epoch")


def test_datamodule_reads_root_from_environment(quadruplets_root: Path, monkeypatch) -> None:
    monkeypatch.delenv("FUSION_DATA_ROOT", raising=False)
    with pytest.raises(ValueError, match="FUSION_DATA_ROOT"):
        QuadrupletsDataModule()
    monkeypatch.setenv("FUSION_DATA_ROOT", str(quadruplets_root))
    dm = QuadrupletsDataModule()
    dm.setup("validate")
    assert len(dm.val_dataset) == 2


def test_valid_marks_nodata_per_modality(quadruplets_root: Path) -> None:
    s1 = rasterio.open(quadruplets_root / "alpha/s1/alpha_00.tif").read()
    s1[:, 2, 3] = np.nan
    _replace(quadruplets_root / "alpha/s1/alpha_00.tif", s1)
    # A Dynamic World file without a no-data tag: 255 is the layout's no-data value.
    dnw = rasterio.open(quadruplets_root / "alpha/dnw/alpha_00.tif").read()
    dnw[0, 6, 1] = 255
    _replace(quadruplets_root / "alpha/dnw/alpha_00.tif", dnw)
    sample = Quadruplets(quadruplets_root, modality_sampling=["s1", "s2", "dnw"])[0]
    valid = sample["valid"]
    assert valid.shape == (4, 32, 32) and valid.dtype == torch.bool
    assert not valid[0, 2, 3] and valid[1, 2, 3] and valid[3, 2, 3]
    assert not valid[3, 6, 1] and valid[0, 6, 1]
    assert not valid[2].any()  # the DEM is absent
    assert int((~valid[[0, 1, 3]]).sum()) == 2
    # Dynamic World no data gets its own id (9), not class 0 ("water"); the label is kept.
    assert sample["dnw"][0, 6, 1] == 9 and sample["mask"][6, 1] != IGNORE_INDEX
    assert int(sample["dnw"].max()) == 9 and int((sample["dnw"] == 9).sum()) == 1


def test_s2_zero_is_nodata_without_a_tag(quadruplets_root: Path) -> None:
    s2 = rasterio.open(quadruplets_root / "alpha/s2/alpha_00.tif").read()
    s2[:, 4, 4] = 0
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", s2)  # written without nodata tag
    sample = Quadruplets(quadruplets_root)[0]
    assert not sample["valid"][1, 4, 4] and sample["mask"][4, 4] != IGNORE_INDEX


def test_fixed_subset_is_never_swapped(quadruplets_root: Path) -> None:
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", np.zeros((4, 32, 32), np.uint16))
    label = Quadruplets(quadruplets_root)[0]["mask"]
    only_s2 = Quadruplets(quadruplets_root, modality_sampling=["s2"])[0]
    # No other sensor stands in for S2: the sample shows nothing and is flagged by `present`.
    assert not only_s2["present"].any() and not only_s2["valid"].any()
    assert not only_s2["s1"].any() and (only_s2["dnw"] == 9).all()
    assert torch.equal(only_s2["mask"], label)
    s1_s2 = Quadruplets(quadruplets_root, modality_sampling=["s1", "s2"])[0]
    assert s1_s2["present"].tolist() == [True, False, False, False]
    # A tile where no modality holds data: flagged under a fixed subset, refused by a random rule.
    _replace(quadruplets_root / "alpha/s1/alpha_00.tif", np.full((2, 32, 32), np.nan, np.float32))
    assert not Quadruplets(quadruplets_root, modalities=["s1", "s2"])[0]["present"].any()
    with pytest.raises(ValueError, match="alpha/alpha_00.*every modality is no data"):
        Quadruplets(quadruplets_root, modalities=["s1", "s2"], modality_sampling="uniform")[0]


def test_training_draw_is_uniform_over_the_subsets_with_data(quadruplets_root: Path) -> None:
    # S2 and the DEM are no data on this tile: 3 subsets of {s1, dnw} remain, each 1/3.
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", np.zeros((4, 32, 32), np.uint16))
    _replace(quadruplets_root / "alpha/dem/alpha_00.tif", np.full((1, 32, 32), np.nan, np.float32))
    ds = Quadruplets(quadruplets_root, modality_sampling="uniform")
    torch.manual_seed(0)
    draws = 300
    counts = Counter(tuple(ds[0]["present"].tolist()) for _ in range(draws))
    assert set(counts) == {(True, False, False, False), (False, False, False, True),
                           (True, False, False, True)}  # fmt: skip
    expected = draws / 3
    # Chi-square with 2 degrees of freedom: P(X > 13.8) = 0.001. Showing the tile's other
    # modalities when a draw has no data would give {s1, dnw} 7/15 of the draws (chi2 ~ 36).
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < 13.8


def test_mask_ignores_only_the_labels_own_nodata(quadruplets_root: Path) -> None:
    s2 = rasterio.open(quadruplets_root / "alpha/s2/alpha_00.tif").read()
    s2[:, :, :16] = 0  # S2 is cloud / no data on the left half; S1 holds data there
    _replace(quadruplets_root / "alpha/s2/alpha_00.tif", s2)
    masks = {}
    for subset in (["s1", "s2", "dem", "dnw"], ["s1", "s2"], ["s1", "dem"], ["dem"]):
        sample = Quadruplets(quadruplets_root, modality_sampling=subset)[0]
        masks[tuple(subset)] = sample["mask"]
        if "s2" in subset:  # the gap travels in valid
            assert not sample["valid"][1, :, :16].any() and sample["valid"][1, :, 16:].all()
    with rasterio.open(quadruplets_root / "alpha/label/alpha_00.tif") as src:
        label = torch.from_numpy(urban_atlas_to_classes(src.read(1)).astype(np.int64))
    for mask in masks.values():  # every subset is scored on the same pixels
        assert torch.equal(mask, label)


def test_nodata_moves_with_the_augmentation(quadruplets_root: Path) -> None:
    from datamodules.augmentation import JointAugmentation

    s1 = rasterio.open(quadruplets_root / "alpha/s1/alpha_00.tif").read()
    s1[:, 12:20, 12:20] = np.nan  # central: every crop keeps part of it
    _replace(quadruplets_root / "alpha/s1/alpha_00.tif", s1)
    codes = rasterio.open(quadruplets_root / "alpha/label/alpha_00.tif").read()
    codes[:] = 11100
    codes[:, 12:20, 12:20] = 0  # the label is unknown on the same square: a marker that moves
    _replace(quadruplets_root / "alpha/label/alpha_00.tif", codes)
    augmentation = JointAugmentation((24, 24))
    ds = Quadruplets(quadruplets_root, modalities=["s1", "dnw"], augmentation=augmentation)
    for _ in range(5):
        sample = ds[0]
        invalid = ~sample["valid"][0]
        assert invalid.any()
        assert torch.equal(invalid, sample["mask"] == IGNORE_INDEX)
        # Filled pixels stay at the mean (0) inside the region; bilinear resampling blends them
        # with their data neighbours at its edge.
        assert float(sample["s1"][:, invalid].abs().median()) < 1e-5


def test_class_maps_are_never_blended(quadruplets_root: Path) -> None:
    from datamodules.augmentation import JointAugmentation

    # A 0/8 stripe map: bilinear resampling would invent the classes in between.
    stripes = np.tile(np.array([0, 8], dtype=np.uint8), (1, 32, 16))
    _replace(quadruplets_root / "alpha/dnw/alpha_00.tif", stripes)
    ds = Quadruplets(quadruplets_root, augmentation=JointAugmentation((20, 20)))
    for _ in range(5):
        assert set(ds[0]["dnw"].unique().tolist()) <= {0, 8}


def test_loading_without_workers_draws_from_the_datamodule_generator(
    quadruplets_root: Path,
) -> None:
    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=4, crop_size=16)
    dm.setup("fit")
    batches = []
    for global_seed in (1, 2):
        dm.train_generator.manual_seed(11)
        torch.manual_seed(global_seed)
        state = torch.get_rng_state()
        batches.append(next(iter(dm.train_dataloader())))
        assert torch.equal(state, torch.get_rng_state())  # the global generator is untouched
    first, second = batches
    assert first["name"] == second["name"] and torch.equal(first["present"], second["present"])
    assert torch.equal(first["s1"], second["s1"]) and torch.equal(first["mask"], second["mask"])


def test_region_in_two_splits_is_refused(quadruplets_root: Path) -> None:
    splits = {"train": ["alpha", "beta"], "val": ["gamma", "alpha"], "test": ["delta"]}
    (quadruplets_root / "splits.json").write_text(json.dumps(splits))
    with pytest.raises(ValueError, match="region 'alpha' is in both split 'train' and split 'val'"):
        Quadruplets(quadruplets_root, split="test")


def test_datamodule_refuses_splits_sharing_tiles(quadruplets_root: Path) -> None:
    (quadruplets_root / "splits.json").unlink()
    (quadruplets_root / "alpha").rename(quadruplets_root / "train")
    (quadruplets_root / "val").symlink_to(quadruplets_root / "train")  # the same tiles twice
    dm = QuadrupletsDataModule(root=str(quadruplets_root))
    with pytest.raises(ValueError, match="Splits 'train' and 'val' overlap: tile 'train/alpha_00'"):
        dm.setup("fit")


def test_a_real_fit_draws_per_batch_in_training_only(quadruplets_root: Path) -> None:
    import lightning as L

    class Recorder(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(()))
            self.seen: dict[str, list] = {"train": [], "val": []}

        def training_step(self, batch, batch_idx):
            self.seen["train"].append((batch["present"].clone(), "subset_fallback" in batch))
            return self.weight * 0.0 + batch["s1"].mean() * 0.0 + self.weight.square()

        def validation_step(self, batch, batch_idx):
            self.seen["val"].append((batch["present"].clone(), "subset_fallback" in batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = QuadrupletsDataModule(root=str(quadruplets_root), batch_size=3, crop_size=16)
    model = Recorder()
    trainer = L.Trainer(
        max_steps=6,
        limit_val_batches=1,
        val_check_interval=3,
        check_val_every_n_epoch=None,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(model, dm)
    train, val = model.seen["train"], model.seen["val"]
    assert len(train) == 6 and all(flagged for _, flagged in train)
    assert all((present == present[0]).all() for present, _ in train)
    assert len({tuple(present[0].tolist()) for present, _ in train}) > 1  # draws differ
    assert val and all(present.all() and not flagged for present, flagged in val)
