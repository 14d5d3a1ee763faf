import os
import tracemalloc
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import pytest
import rasterio
import shapely
import torch
from scipy import ndimage

from datamodules.rasters import RasterGrid
from fusion.scene import SceneModel, load_scene_model, predict_scene
from fusion.scene.cut import cut_raster
from fusion.scene.polygons import write_polygons
from fusion.scene.predict import SceneTiles
from tests.fusion.scene.scenes import PIXEL, save_checkpoint, tiny_task, write_s1, write_s2

WIDTH, HEIGHT = 160, 96  # 5 x 9 tiles of 32 reference pixels, half a tile apart
TILE = 32


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scene")
    s2 = write_s2(folder / "s2.tif", WIDTH, HEIGHT)
    with rasterio.open(s2) as src:
        half = src.width / 2
    return {
        "s1": write_s1(folder / "s1.tif", WIDTH, HEIGHT),  # EPSG:32633, the reference
        "s2": s2,  # EPSG:4326
        "s2_left": cut_raster(s2, folder / "s2_left.tif", "left", 0.5),
        "half_column": half,
        "checkpoint": save_checkpoint(tiny_task(), folder / "run/checkpoints/last.ckpt"),
    }


@pytest.fixture(scope="module")
def model(scene: dict) -> SceneModel:
    torch.set_num_threads(1)
    # float32: the comparisons between runs are to 1e-5 (bf16 is tested in test_pipeline)
    return load_scene_model(scene["checkpoint"], precision="32-true")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_maps_lie_on_the_reference_grid(scene: dict, model: SceneModel, tmp_path: Path) -> None:
    for reference in ("s1", "s2"):
        result = predict_scene(
            model,
            {"s1": scene["s1"], "s2": scene["s2"]},
            tmp_path / reference / "map.tif",
            reference=reference,
            probabilities="float32",
            modality_map=True,
            progress=False,
        )
        with rasterio.open(scene[reference]) as src:
            grid = (src.crs, src.transform, src.width, src.height)
        for path in (result.paths.classes, result.paths.probabilities, result.paths.modalities):
            with rasterio.open(path) as src:
                assert (src.crs, src.transform, src.width, src.height) == grid
                assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert result.paths.quicklook.stat().st_size > 1000
    with rasterio.open(result.paths.classes) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == 255
        assert src.colormap(1)[1][:3] != src.colormap(1)[0][:3]
    assert grid[0] == rasterio.crs.CRS.from_epsg(4326)  # the second run: on the S2 grid


def test_constant_scene_gives_constant_map(tmp_path: Path) -> None:
    # A model whose queries share one class distribution predicts it everywhere for any
    # input, however its masks vary: the map must then be constant across tile borders.
    task = tiny_task()
    with torch.no_grad():
        task.head.class_head.weight.zero_()
        task.head.class_head.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    model = load_scene_model(
        save_checkpoint(task, tmp_path / "run/checkpoints/last.ckpt"), precision="32-true"
    )
    result = predict_scene(
        model,
        {
            "s1": write_s1(tmp_path / "s1.tif", WIDTH, HEIGHT, constant=0.5),
            "s2": write_s2(tmp_path / "s2.tif", WIDTH, HEIGHT, constant=0.5),
        },
        tmp_path / "out/map.tif",
        probabilities="float32",
        progress=False,
    )
    assert (read(result.paths.classes) == 1).all()
    probabilities = read(result.paths.probabilities)
    expected = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    np.testing.assert_allclose(
        probabilities, expected[:, None, None] + 0 * probabilities, atol=1e-5
    )


def test_nodata_areas_stay_nodata(scene: dict, model: SceneModel, tmp_path: Path) -> None:
    with rasterio.open(scene["s1"]) as src:
        s1, profile = src.read(), src.profile
    s1[:, 30:70, 100:150] = np.nan  # a hole of S1 over the half without S2
    s1[:, 0:20, 0:30] = np.nan  # a hole of S1 where S2 has data
    with rasterio.open(tmp_path / "s1_holes.tif", "w", **profile) as dst:
        dst.write(s1)
    result = predict_scene(
        model,
        {"s1": tmp_path / "s1_holes.tif", "s2": scene["s2_left"]},
        tmp_path / "out/map.tif",
        probabilities="uint8",
        modality_map=True,
        progress=False,
    )
    classes, bits = read(result.paths.classes)[0], read(result.paths.modalities)[0]
    np.testing.assert_array_equal(bits & 1 == 1, ~np.isnan(s1[0]))
    nodata = (bits & 2 == 0) & np.isnan(s1[0])
    assert nodata[30:70, 120:150].all() and not nodata[0:20, 0:30].any()
    np.testing.assert_array_equal(classes == 255, nodata)
    np.testing.assert_array_equal(read(result.paths.probabilities) == 255, np.stack([nodata] * 2))
    assert set(np.unique(classes[~nodata])) <= {0, 1}

    alone = predict_scene(model, {"s2": scene["s2_left"]}, tmp_path / "s2/map.tif", progress=False)
    with rasterio.open(scene["s2_left"]) as src:
        empty = src.read(1) == 0
    np.testing.assert_array_equal(read(alone.paths.classes)[0] == 255, empty)


def test_partial_coverage_uses_the_modalities_present(
    scene: dict, model: SceneModel, tmp_path: Path
) -> None:
    def probabilities(name: str, **rasters: Path) -> tuple[np.ndarray, np.ndarray, dict]:
        result = predict_scene(
            model,
            rasters,
            tmp_path / name / "map.tif",
            probabilities="float32",
            modality_map=True,
            progress=False,
            quicklook=name == "half",
        )
        return read(result.paths.probabilities), read(result.paths.modalities)[0], result.subsets

    both, _, _ = probabilities("both", s1=scene["s1"], s2=scene["s2"])
    s1_only, _, _ = probabilities("s1", s1=scene["s1"])
    half, bits, subsets = probabilities("half", s1=scene["s1"], s2=scene["s2_left"])
    assert subsets[("s1", "s2")] > 0 and subsets[("s1",)] > 0
    with_s2 = (bits & 2 > 0).any(axis=0).nonzero()[0]
    without = (bits & 2 == 0).any(axis=0).nonzero()[0]
    # Columns whose every tile lies wholly on one side of S2's (slanted) edge.
    left = slice(0, without.min() - TILE)
    right = slice(with_s2.max() + TILE, WIDTH)
    assert left.stop > 20 and WIDTH - right.start > 20
    np.testing.assert_allclose(half[:, :, left], both[:, :, left], atol=1e-5)
    np.testing.assert_allclose(half[:, :, right], s1_only[:, :, right], atol=1e-5)
    # The modalities change the prediction, so the comparisons above could fail.
    assert np.abs(both - s1_only)[:, :, left].max() > 1e-3
    assert np.abs(both - s1_only)[:, :, right].max() > 1e-3


def test_memory_stays_flat_as_the_scene_grows(model: SceneModel, tmp_path: Path) -> None:
    peaks = []
    for side in (256, 512):  # 4x the area, 64 then 256 tiles
        rasters = {
            "s1": write_s1(tmp_path / f"s1_{side}.tif", side, side),
            "s2": write_s2(tmp_path / f"s2_{side}.tif", side, side),
        }
        tracemalloc.start()
        predict_scene(
            model, rasters, tmp_path / f"{side}/map.tif", overlap=0.0, progress=False,
            quicklook=False,
        )  # fmt: skip
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    # A scene held whole would take 4 x the memory: probabilities alone are 2 MB at 512.
    assert peaks[1] < 1.15 * peaks[0], peaks


def test_instance_model_writes_building_polygons(tmp_path: Path) -> None:
    model = load_scene_model(save_checkpoint(tiny_task("instance"), tmp_path / "run/m.ckpt"))
    assert len(model.class_names) == 2  # background first
    result = predict_scene(
        model,
        {"s1": write_s1(tmp_path / "s1.tif", WIDTH, HEIGHT)},
        tmp_path / "out/map.tif",
        progress=False,
    )
    assert result.paths.polygons == tmp_path / "out/map_polygons.gpkg"
    with rasterio.open(result.paths.classes) as src:
        classes, transform, crs = src.read(1), src.transform, src.crs
    objects = classes == 1
    count = ndimage.label(objects)[1]  # 4-connected, as rasterio's shapes
    assert 0.05 < objects.mean() < 0.95 and count > 20
    grid = RasterGrid(WIDTH, HEIGHT, crs, transform)
    seams = write_polygons(
        result.paths.classes, tmp_path / "seams.fgb", grid, model.class_names, block=32
    )
    for path in (result.paths.polygons, tmp_path / "seams.fgb"):
        assert pyogrio.read_info(path)["crs"] == "EPSG:32633"
        meta, _, geometries, values = pyogrio.raw.read(path)
        fields = dict(zip(meta["fields"], values, strict=True))
        polygons = shapely.from_wkb(geometries)
        # One polygon per object (merged across the seams of the polygonized blocks) ...
        assert len(polygons) == count
        # ... covering exactly its pixels, in the reference CRS, its area in square metres.
        pixels = objects.sum() * transform.a**2
        assert sum(p.area for p in polygons) == pytest.approx(pixels)
        assert fields["area_m2"].sum() == pytest.approx(pixels)
        left, top = transform.c, transform.f
        area = shapely.box(left, top - HEIGHT * PIXEL, left + WIDTH * PIXEL, top)
        assert all(area.contains(p) for p in polygons)
        assert set(fields["class_id"]) == {1} and set(fields["class"]) == {model.class_names[1]}
    # predict-scene gives each polygon the mean probability of its class over its pixels
    scores = pyogrio.raw.read(result.paths.polygons, columns=["score"])[3][0]
    assert ((0.5 <= scores) & (scores <= 1)).all()
    assert result.polygons == seams == count


def test_loader_workers_read_the_tiles_and_change_nothing(
    scene: dict, model: SceneModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "readers.txt"
    original = SceneTiles.__getitem__

    def noting_reader(self, index):
        with open(log, "a") as file:
            file.write(f"{os.getpid()}\n")
        return original(self, index)

    monkeypatch.setattr(SceneTiles, "__getitem__", noting_reader)
    maps = {}
    for workers in (0, 2):
        log.write_text("")
        result = predict_scene(
            model,
            {"s1": scene["s1"], "s2": scene["s2_left"]},
            tmp_path / f"{workers}/map.tif",
            probabilities="float32",
            modality_map=True,
            progress=False,
            quicklook=False,
            workers=workers,
        )
        readers = set(log.read_text().split())
        assert result.workers == workers
        if workers:  # every tile read in the worker processes, none in this one
            assert len(readers) == workers and str(os.getpid()) not in readers
        else:
            assert readers == {str(os.getpid())}
        maps[workers] = [read(p) for p in (result.paths.probabilities, result.paths.modalities)]
    for with_workers, in_process in zip(maps[2], maps[0], strict=True):
        np.testing.assert_array_equal(with_workers, in_process)


def open_files_under(folder: Path) -> list[str]:
    """Files under ``folder`` this process holds open (Linux)."""
    found = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")
def test_a_failing_run_closes_its_files(
    scene: dict, model: SceneModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion.scene.predict as module

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(module, "write_quicklook", broken)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rasters = {name: inputs / f"{name}.tif" for name in ("s1", "s2")}
    for name, path in rasters.items():
        path.write_bytes(scene[name].read_bytes())
    with pytest.raises(RuntimeError, match="disk full"):
        predict_scene(model, rasters, tmp_path / "out/map.tif", progress=False, workers=0)
    assert open_files_under(tmp_path) == []
    assert list((tmp_path / "out").iterdir()) == []  # no partial outputs, no temporary folder
