import json
from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules import DFC2023, CocoError, DFC2023DataModule, RasterError
from datamodules.augmentation import JointAugmentation
from datamodules.dfc2023 import SAR_DB_RANGE, CocoImage
from tests.data.dfc2023.data import write_dfc2023
from tests.data.geotiff import write_tif


def test_sample_contract_and_instances(dfc2023_root: Path) -> None:
    ds = DFC2023(dfc2023_root, split="train", image_size=None)
    assert len(ds) == 3
    sample = ds[2]  # two buildings
    assert sample["rgb"].shape == (3, 64, 64) and sample["sar"].shape == (1, 64, 64)
    assert sample["dsm"].shape == (1, 64, 64)
    assert sample["instance_masks"].shape == (2, 64, 64)
    assert sample["instance_masks"].dtype == torch.bool
    assert sample["labels"].tolist() == [0, 0]
    assert sample["boxes"].shape == (2, 4)
    # First building: polygon x 4..16, y 6..16 -> pixels 4..15 x 6..15 (COCO rasterization),
    # a box with exclusive ends: the polygon's own corners.
    assert sample["boxes"][0].tolist() == [4, 6, 16, 16]
    assert sample["boxes"].dtype == torch.float32
    assert set(sample["mask"].unique().tolist()) == {0, 1}
    union = sample["instance_masks"].any(0)
    assert torch.equal(union, sample["mask"] == 1)
    # Buildings are tall in the nDSM fixture.
    dsm_raw = DFC2023(dfc2023_root, image_size=None, normalize=False)[2]["dsm"][0]
    assert dsm_raw[union].min() >= 10 and dsm_raw[~union].max() == 0
    assert ds.classes == ("background", "building")


def test_tile_without_buildings(dfc2023_root: Path) -> None:
    sample = DFC2023(dfc2023_root, image_size=None)[0]
    assert sample["instance_masks"].shape == (0, 64, 64) and sample["boxes"].shape == (0, 4)
    assert not sample["mask"].any()


def test_resize_keeps_instances_consistent(dfc2023_root: Path) -> None:
    sample = DFC2023(dfc2023_root, image_size=32)[3 - 1]
    assert sample["rgb"].shape == (3, 32, 32) and sample["mask"].shape == (32, 32)
    assert sample["instance_masks"].shape == (2, 32, 32)
    assert torch.equal(sample["instance_masks"].any(0), sample["mask"] == 1)


def test_sar_converted_to_clipped_decibels(dfc2023_root: Path) -> None:
    raw = DFC2023(dfc2023_root, image_size=None, normalize=False)[0]["sar"]
    assert raw.min() >= SAR_DB_RANGE[0] and raw.max() <= SAR_DB_RANGE[1]
    assert raw.max() < 0  # gamma(1, 0.05) amplitudes are below 1


def test_augmented_instances_stay_consistent(dfc2023_root: Path) -> None:
    ds = DFC2023(dfc2023_root, image_size=None, augmentation=JointAugmentation((48, 48)))
    torch.manual_seed(0)
    for _ in range(10):
        sample = ds[2]
        assert sample["mask"].shape == (48, 48)
        union = sample["instance_masks"].any(0) if len(sample["labels"]) else torch.zeros(48, 48)
        assert torch.equal(union.bool(), sample["mask"] == 1)
        for mask, box in zip(sample["instance_masks"], sample["boxes"], strict=True):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_thin_instances_have_boxes_of_positive_size(dfc2023_root: Path) -> None:
    # Tile 1's building becomes one pixel wide (x 30..31) and one pixel high (y 40..41).
    _edit_coco(
        dfc2023_root,
        "train",
        lambda c: c["annotations"][0].update(segmentation=[[30, 40, 31, 40, 31, 41, 30, 41]]),
    )
    sample = DFC2023(dfc2023_root, image_size=None)[1]
    assert sample["instance_masks"][0].sum() == 1
    assert sample["boxes"].tolist() == [[30, 40, 31, 41]]
    boxes = torch.cat([DFC2023(dfc2023_root, image_size=None)[i]["boxes"] for i in range(3)])
    assert (boxes[:, 2:] > boxes[:, :2]).all()  # what torchvision's detectors require
    assert sample["labels"].tolist() == [0]  # class ids stay 0..K-1


def _edit_coco(root: Path, split: str, edit) -> None:
    path = root / "annotations" / f"buildings_only_{split}.json"
    coco = json.loads(path.read_text())
    edit(coco)
    path.write_text(json.dumps(coco))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(images=[]), "'images' is empty"),
        (lambda c: c.pop("annotations"), "'annotations'"),
        (lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3]]), "malformed polygon"),
        (lambda c: c["annotations"][0].update(segmentation=[]), "segmentation is empty"),
        (lambda c: c["annotations"][0].update(segmentation=[[1, 2, 3, "a", 5, 6]]), "non-numeric"),
        (lambda c: c["annotations"][0].update(image_id=999), "unknown image_id 999"),
        (lambda c: c["annotations"][0].update(category_id=7), "unknown category_id 7"),
        (lambda c: c["images"][0].pop("file_name"), "lacks \\['file_name'\\]"),
    ],
)
def test_malformed_coco_is_named(dfc2023_root: Path, edit, message: str) -> None:
    _edit_coco(dfc2023_root, "train", edit)
    with pytest.raises(CocoError, match=f"buildings_only_train.json.*{message}"):
        DFC2023(dfc2023_root, split="train")


def test_invalid_json(dfc2023_root: Path) -> None:
    (dfc2023_root / "annotations/buildings_only_val.json").write_text("{not json")
    with pytest.raises(CocoError, match="not valid JSON"):
        DFC2023(dfc2023_root, split="val")


def test_coco_referencing_missing_tiles(dfc2023_root: Path) -> None:
    _edit_coco(dfc2023_root, "train", lambda c: c["images"][1].update(file_name="P9999.tif"))
    with pytest.raises(FileNotFoundError, match="references 3 missing.*train/rgb/P9999.tif"):
        DFC2023(dfc2023_root, split="train")


def test_missing_annotation_file(dfc2023_root: Path) -> None:
    (dfc2023_root / "annotations/buildings_only_test.json").unlink()
    with pytest.raises(FileNotFoundError, match="buildings_only_test.json"):
        DFC2023(dfc2023_root, split="test")


def test_coco_size_must_match_tiles(dfc2023_root: Path) -> None:
    _edit_coco(dfc2023_root, "train", lambda c: c["images"][0].update(width=128))
    with pytest.raises(RasterError, match="P0000.tif.*128x64"):
        DFC2023(dfc2023_root, split="train")[0]


def test_sar_nodata_is_ignored(dfc2023_root: Path) -> None:
    path = dfc2023_root / "train/sar/P0002.tif"
    sar = np.full((1, 64, 64), 0.1, np.float32)
    sar[0, 8, 8] = np.nan
    write_tif(path, sar, origin=(300200.0, 4000000.0), pixel=0.5)
    sample = DFC2023(dfc2023_root, image_size=None)[2]
    assert not sample["valid"][1, 8, 8] and sample["valid"][1].sum() == 64 * 64 - 1
    assert torch.isfinite(sample["sar"]).all()
    assert sample["mask"][8, 8] == 1  # the label is known there: RGB and DSM still see it


def test_datamodule_collates_instances(dfc2023_root: Path) -> None:
    dm = DFC2023DataModule(root=str(dfc2023_root), batch_size=3, image_size=32)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["rgb"].shape == (3, 3, 32, 32)
    assert [len(labels) for labels in batch["labels"]] == [0, 1, 2]
    assert batch["instance_masks"][2].shape == (2, 32, 32)
    assert dm.classes == ("background", "building")


def test_instances_can_be_left_out(dfc2023_root: Path) -> None:
    sample = DFC2023(dfc2023_root, image_size=None, instances=False)[2]
    assert "instance_masks" not in sample and "labels" not in sample
    assert set(sample["mask"].unique().tolist()) == {0, 1}


def test_coco_ids_and_annotation_size_of_each_tile(tmp_path: Path) -> None:
    root = write_dfc2023(tmp_path / "ids", category_id=7, first_image_id=40)
    ds = DFC2023(root, split="val", image_size=32)  # samples at 32, annotations at 64
    assert [ds.coco_image(i) for i in range(3)] == [CocoImage(40 + i, 64, 64) for i in range(3)]
    assert ds.coco_image(2).size == (64, 64) and ds[2]["mask"].shape == (32, 32)
    assert ds.category_ids == (7,)
    assert ds[2]["labels"].tolist() == [0, 0]

    # Two categories with ids out of order and not 1..K: labels follow the sorted ids, and
    # category_ids inverts the mapping.
    def add_category(coco: dict) -> None:
        coco["categories"].insert(0, {"id": 12, "name": "tower"})
        coco["annotations"][-1]["category_id"] = 12

    _edit_coco(root, "val", add_category)
    ds = DFC2023(root, split="val", image_size=None)
    assert ds.category_ids == (7, 12)
    assert ds.classes == ("background", "building", "tower")
    assert ds[2]["labels"].tolist() == [0, 1]
    assert [ds.category_ids[k] for k in ds[2]["labels"].tolist()] == [
        a["category_id"] for a in json.loads(ds.annotation_file.read_text())["annotations"][-2:]
    ]
