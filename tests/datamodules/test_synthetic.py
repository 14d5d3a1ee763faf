"""The synthetic datasets: layout, determinism, idempotence, label sanity and informativeness."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio

from datamodules.landcover import LANDCOVER_CLASSES, URBAN_ATLAS_CODES
from datamodules.synthetic import __main__ as cli
from datamodules.synthetic import write_dfc2023, write_quadruplets
from datamodules.synthetic.check import dfc2023_table, quadruplet_table
from datamodules.synthetic.dfc2023.scene import make_scene
from datamodules.synthetic.raster_ops import polygon_mask
from datamodules.synthetic.stamp import STAMP_FILE_NAME, read_stamp

QUAD_MODALITIES = {"s1": (2, "float32"), "s2": (4, "uint16"), "dem": (1, "float32")}
QUAD_MODALITIES |= {"dnw": (1, "uint8"), "label": (1, "uint16")}
DFC_MODALITIES = {"rgb": (3, "uint8"), "sar": (1, "float32"), "height": (1, "float32")}
TINY_REGIONS = ("synthetic_lyon", "synthetic_montpellier", "synthetic_rennes")
INFO_REGIONS = (
    "synthetic_lyon",
    "synthetic_toulouse",
    "synthetic_nantes",
    "synthetic_strasbourg",
    "synthetic_canberra",
    "synthetic_bordeaux",
    "synthetic_montpellier",
    "synthetic_rennes",
)

tiny_quadruplets = partial(
    write_quadruplets, tiles_per_region=3, size=64, regions=TINY_REGIONS, workers=1
)
tiny_dfc2023 = partial(
    write_dfc2023, tiles_per_split={"train": 3, "val": 1, "test": 1}, size=128, workers=1
)


def file_digests(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple]:
    with rasterio.open(path) as source:
        return source.read(), source.profile, source.descriptions


@pytest.fixture(scope="module")
def quad_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_quadruplets(tmp_path_factory.mktemp("quad"))


@pytest.fixture(scope="module")
def dfc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_dfc2023(tmp_path_factory.mktemp("dfc"))


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path: Path) -> None:
    first = file_digests(tiny_quadruplets(tmp_path / "a", seed=3)) | file_digests(
        tiny_dfc2023(tmp_path / "a", seed=3)
    )
    again = file_digests(tiny_quadruplets(tmp_path / "b", seed=3, workers=2)) | file_digests(
        tiny_dfc2023(tmp_path / "b", seed=3, workers=2)
    )
    other = file_digests(tiny_quadruplets(tmp_path / "c", seed=4)) | file_digests(
        tiny_dfc2023(tmp_path / "c", seed=4)
    )
    assert first == again
    rasters = [name for name in first if name.endswith(".tif")]
    assert rasters and all(first[name] != other[name] for name in rasters)


def test_quadruplet_layout_and_grids(quad_dir: Path) -> None:
    splits = json.loads((quad_dir / "splits.json").read_text())
    assert splits == {
        "train": ["synthetic_lyon"],
        "val": ["synthetic_montpellier"],
        "test": ["synthetic_rennes"],
    }
    for region in TINY_REGIONS:
        names = sorted(p.stem for p in (quad_dir / region / "label").glob("*.tif"))
        assert names == [f"{region}_r00_c00", f"{region}_r00_c01", f"{region}_r00_c02"]
        transforms = []
        for name in names:
            grids = set()
            for modality, (bands, dtype) in QUAD_MODALITIES.items():
                data, profile, descriptions = read(quad_dir / region / modality / f"{name}.tif")
                assert data.shape == (bands, 64, 64) and data.dtype == dtype
                assert all(descriptions)
                assert profile["crs"].is_projected
                grids.add((profile["crs"].to_epsg(), tuple(profile["transform"])))
            assert len(grids) == 1, f"{name}: modalities on different grids"
            (epsg, transform), *_ = grids
            assert transform[0] == 10 and transform[4] == -10 and transform[1] == transform[3] == 0
            transforms.append(transform)
        assert [t[2] - transforms[0][2] for t in transforms] == [0, 640, 1280]  # side by side
    lyon = quad_dir / "synthetic_lyon"
    _, s2_profile, s2_bands = read(lyon / "s2" / "synthetic_lyon_r00_c00.tif")
    assert s2_profile["nodata"] == 0 and s2_bands == ("B2", "B3", "B4", "B8")


def test_quadruplet_values_are_plausible(quad_dir: Path) -> None:
    known = set(URBAN_ATLAS_CODES)
    for region in TINY_REGIONS:
        codes = np.concatenate(
            [read(p)[0].ravel() for p in (quad_dir / region / "label").glob("*.tif")]
        )
        assert set(np.unique(codes)) <= known | {0}
        assert (codes == 0).any(), "every region has a strip without UrbanAtlas coverage"
        assert len(set(np.unique(codes)) & known) >= 5
        for path in (quad_dir / region / "dnw").glob("*.tif"):
            assert read(path)[0].max() <= 8
        for path in (quad_dir / region / "s1").glob("*.tif"):
            s1 = read(path)[0]
            assert np.isfinite(s1).all() and -50 < s1.min() and s1.max() < 25
        for path in (quad_dir / region / "s2").glob("*.tif"):
            assert read(path)[0].max() <= 10000


def test_dfc2023_layout_grids_and_coco(dfc_dir: Path) -> None:
    names = []
    for split, count in (("train", 3), ("val", 1), ("test", 1)):
        coco = json.loads((dfc_dir / "annotations" / f"buildings_only_{split}.json").read_text())
        assert coco["categories"] == [{"id": 1, "name": "building", "supercategory": "building"}]
        assert len(coco["images"]) == count
        ids = [a["id"] for a in coco["annotations"]]
        assert len(ids) == len(set(ids))
        image_ids = {image["id"] for image in coco["images"]}
        for image in coco["images"]:
            names.append(image["file_name"])
            grids = set()
            for modality, (bands, dtype) in DFC_MODALITIES.items():
                data, profile, _ = read(dfc_dir / split / modality / image["file_name"])
                assert data.shape == (bands, 128, 128) and data.dtype == dtype
                assert profile["crs"].is_projected and profile["transform"][0] == 0.5
                grids.add((profile["crs"].to_epsg(), tuple(profile["transform"])))
            assert len(grids) == 1
        for annotation in coco["annotations"]:
            polygon = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
            assert annotation["image_id"] in image_ids and annotation["category_id"] == 1
            assert len(polygon) >= 3 and annotation["iscrowd"] == 0 and annotation["area"] > 0
            assert (polygon >= 0).all() and (polygon <= 128).all()
            x, y, w, h = annotation["bbox"]
            assert x == pytest.approx(polygon[:, 0].min()) and w > 0 and h > 0
    assert names == ["P0001.tif", "P0002.tif", "P0003.tif", "P0004.tif", "P0005.tif"]


def test_dfc2023_buildings_stand_out_in_the_ndsm(dfc_dir: Path) -> None:
    building_heights, other_heights = [], []
    for split in ("train", "val", "test"):
        coco = json.loads((dfc_dir / "annotations" / f"buildings_only_{split}.json").read_text())
        for image in coco["images"]:
            height = read(dfc_dir / split / "height" / image["file_name"])[0][0]
            footprint = np.zeros(height.shape, dtype=bool)
            for annotation in coco["annotations"]:
                if annotation["image_id"] == image["id"]:
                    polygon = np.asarray(annotation["segmentation"][0]).reshape(-1, 2)
                    inside = polygon_mask(polygon, height.shape)
                    assert height[inside].mean() > 1.5
                    footprint |= inside
            building_heights.append(height[footprint])
            other_heights.append(height[~footprint])
    assert np.median(np.concatenate(building_heights)) > 3.0
    assert np.median(np.concatenate(other_heights)) < 1.0


def test_dfc2023_tiles_range_from_empty_to_dense() -> None:
    counts = [len(make_scene(np.random.default_rng(seed), 256).buildings) for seed in range(40)]
    assert min(counts) == 0 and max(counts) >= 15


def test_stamp_skips_up_to_date_folder_and_force_rebuilds(quad_dir: Path) -> None:
    stamp = read_stamp(quad_dir)
    assert stamp is not None and stamp["seed"] == 0 and stamp["regions"] == list(TINY_REGIONS)
    probe = quad_dir / TINY_REGIONS[0] / "s2" / f"{TINY_REGIONS[0]}_r00_c00.tif"
    before = probe.stat().st_mtime_ns
    assert tiny_quadruplets(quad_dir.parent) == quad_dir
    assert probe.stat().st_mtime_ns == before
    tiny_quadruplets(quad_dir.parent, force=True)
    assert probe.stat().st_mtime_ns != before
    assert read_stamp(quad_dir) == stamp


def test_foreign_folder_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "dfc2023").mkdir()
    (tmp_path / "dfc2023" / "real_data.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tiny_dfc2023(tmp_path)
    assert (tmp_path / "dfc2023" / "real_data.txt").read_text() == "keep me"


def test_command_line_writes_then_skips(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(cli.WRITERS, "quadruplets", tiny_quadruplets)
    monkeypatch.setitem(cli.WRITERS, "dfc2023", tiny_dfc2023)
    cli.main(["--root", str(tmp_path)])
    first = capsys.readouterr().out
    cli.main(["--root", str(tmp_path), "--dataset", "dfc2023"])
    second = capsys.readouterr().out
    assert "quadruplets: wrote 9 tiles" in first and "dfc2023: wrote 5 tiles" in first
    assert "dfc2023: skipped, up to date: 5 tiles" in second
    assert (tmp_path / "dfc2023" / STAMP_FILE_NAME).is_file()


def test_quadruplet_modalities_carry_different_parts_of_the_truth(tmp_path: Path) -> None:
    dataset = write_quadruplets(
        tmp_path, tiles_per_region=3, size=256, regions=INFO_REGIONS, workers=1
    )
    scores = {score.modalities: score for score in quadruplet_table(dataset, stride=4)}
    classes = {name: index for index, name in enumerate(LANDCOVER_CLASSES)}
    vegetation = [classes[c] for c in ("agriculture", "forest", "herbaceous_open")]
    s1, s2, dem, dnw = (scores[(m,)] for m in ("s1", "s2", "dem", "dnw"))
    everything = scores[("s1", "s2", "dem", "dnw")]
    industrial = classes["industrial_commercial_transport"]
    # Dynamic World says more than the DEM, all four together much more
    assert dnw.accuracy > dem.accuracy + 0.15
    assert everything.accuracy > dem.accuracy + 0.25
    # Sentinel-2 separates the vegetation types, Sentinel-1 the built-up fabric and water
    assert s2.iou[vegetation].mean() > s1.iou[vegetation].mean() + 0.1
    assert s1.iou[classes["urban_fabric"]] > s2.iou[classes["urban_fabric"]] + 0.1
    assert s1.iou[classes["water_wetlands"]] > 0.6
    # the radar and the optical image complement each other
    assert scores[("s1", "s2")].miou > max(s1.miou, s2.miou) + 0.03
    # Dynamic World cannot tell industrial estates from urban fabric; the images can
    assert dnw.iou[industrial] < 0.05
    assert scores[("s1", "s2", "dnw")].iou[industrial] > 0.3


def test_dfc2023_sar_is_the_weakest_modality(tmp_path: Path) -> None:
    dataset = write_dfc2023(
        tmp_path, tiles_per_split={"train": 12, "val": 4, "test": 4}, size=256, workers=1
    )
    scores = {score.modalities: score.iou[1] for score in dfc2023_table(dataset, stride=2)}
    assert scores[("sar",)] < 0.1 < scores[("rgb",)]
    assert scores[("height",)] > 0.4
    assert scores[("rgb", "height")] > scores[("height",)] + 0.01
