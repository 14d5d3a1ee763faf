"""The files of ``fusion predict-scene``: COGs, their metadata and the quick-look, on tiny rasters.

The module is imported whole (``outputs.<name>``), so that each test fails on its own when a
name it needs is missing.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from matplotlib.backends.backend_agg import FigureCanvasAgg
from rasterio.transform import from_origin
from rasterio.windows import Window

from datamodules.rasters import RasterGrid
from fusion.scene import outputs
from tests.fusion.scene.maps import (
    NAMES,
    UTM,
)


def test_output_paths_name_the_polygon_format(tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    assert outputs.OutputPaths.beside(out, polygons=True).polygons == tmp_path / "map_polygons.gpkg"
    for name in ("gpkg", "fgb", "geojson"):
        paths = outputs.OutputPaths.beside(out, polygons=True, polygon_format=name)
        assert paths.polygons == tmp_path / f"map_polygons.{name}"
    assert outputs.OutputPaths.beside(out, polygon_format="fgb").polygons is None
    with pytest.raises(ValueError, match="shp"):
        outputs.OutputPaths.beside(out, polygons=True, polygon_format="shp")


def scene_writer(folder: Path, grid: RasterGrid, **kwargs) -> outputs.SceneWriter:
    """A writer of a class map, probabilities and a modality map into ``folder/out``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = outputs.OutputPaths.beside(
        folder / "out/map.tif", probabilities=True, modality_map=True, quicklook=False
    )
    return outputs.SceneWriter(folder, grid, paths, NAMES, ("s1", "s2"), **kwargs)


def random_block(grid: RasterGrid, seed: int) -> tuple[Window, np.ndarray, np.ndarray]:
    """The whole grid as one block: probabilities ``[3, H, W]`` and modality bits ``[H, W]``."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.ones(3), (grid.height, grid.width)).transpose(2, 0, 1)
    bits = rng.integers(1, 4, (grid.height, grid.width))
    bits[:3] = 0  # no data
    probabilities[:, -2:, :5] = np.nan  # not predicted
    window = Window(0, 0, grid.width, grid.height)
    return window, probabilities.astype(np.float32), bits


def test_scene_writer_scores_are_the_probability_of_the_predicted_class(tmp_path: Path) -> None:
    grid = RasterGrid(40, 30, UTM.crs, UTM.transform)
    window, probabilities, bits = random_block(grid, 6)
    writer = scene_writer(tmp_path, grid, scores=True)
    writer.write(window, probabilities, bits)
    writer.finish()
    with rasterio.open(writer.temporary["scores"]) as src:
        scores = src.read(1)
        assert src.dtypes[0] == "float32"
    valid = (bits > 0) & np.isfinite(probabilities).all(axis=0)
    assert np.isnan(scores[~valid]).all() and (~valid).sum() == 3 * 40 + 2 * 5
    np.testing.assert_array_equal(scores[valid], probabilities.max(axis=0)[valid])
    finals = {path.name for path in (tmp_path / "out").iterdir()}
    assert finals == {"map.tif", "map_probabilities.tif", "map_modalities.tif"}  # no scores COG


def test_the_class_map_cog_names_its_classes(tmp_path: Path) -> None:
    grid = RasterGrid(40, 30, UTM.crs, UTM.transform)
    writer = scene_writer(tmp_path, grid)
    writer.write(*random_block(grid, 7))
    writer.finish()
    with rasterio.open(writer.paths.classes) as src:
        assert json.loads(src.tags()["CLASS_NAMES"]) == list(NAMES)
        band = src.tags(1)
        assert [band[f"CLASS_{k}"] for k in range(3)] == list(NAMES)
        assert src.descriptions == ("class",)
        assert src.colormap(1)[0][:3] == outputs.class_colours(3)[0]


def test_cog_overviews_take_the_mode_of_categories_and_may_be_bigtiff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = RasterGrid(1024, 8, UTM.crs, UTM.transform)  # wider than a COG block: overviews
    probabilities = np.zeros((3, 8, 1024), np.float32)
    probabilities[2] = 1.0  # class 2 ...
    probabilities[:, ::2, ::2] = [[[0.0]], [[1.0]], [[0.0]]]  # ... but class 1 top left of 2 x 2
    bits = np.full((8, 1024), 3)
    bits[::2, ::2] = 1  # s1 + s2, but s1 alone top left
    copies = []
    copy = rasterio.shutil.copy

    def spy(source, target, **kwargs):
        copies.append({key.upper(): value for key, value in kwargs.items()})
        return copy(source, target, **kwargs)

    monkeypatch.setattr(rasterio.shutil, "copy", spy)
    writer = scene_writer(tmp_path, grid)
    writer.write(Window(0, 0, 1024, 8), probabilities, bits)
    writer.finish()
    assert len(copies) == 3 and all(options["BIGTIFF"] == "IF_SAFER" for options in copies)
    for path, majority in ((writer.paths.classes, 2), (writer.paths.modalities, 3)):
        with rasterio.open(path, overview_level=0) as overview:
            assert overview.shape == (4, 512)
            assert (overview.read(1) == majority).all()  # nearest would take the top left
    with rasterio.open(writer.paths.probabilities, overview_level=0) as overview:
        np.testing.assert_allclose(overview.read(2), 0.25)  # the mean


def test_cogs_on_a_coarser_output_grid_take_modes_and_means(tmp_path: Path) -> None:
    grid = RasterGrid(40, 36, UTM.crs, UTM.transform)
    coarse = RasterGrid(20, 18, UTM.crs, from_origin(500000.0, 5000000.0, 20.0, 20.0))
    window, probabilities, bits = random_block(grid, 9)
    bits[:] = 1
    probabilities[:] = np.nan_to_num(probabilities, nan=1 / 3)
    writer = scene_writer(tmp_path, grid, output_grid=coarse)
    writer.write(window, probabilities, bits)
    writer.finish()
    with rasterio.open(writer.temporary["classes"]) as src:
        fine = src.read(1)  # the temporary files stay on the model's grid
    with rasterio.open(writer.paths.classes) as src:
        assert src.shape == (18, 20) and src.transform == coarse.transform
        assert json.loads(src.tags()["CLASS_NAMES"]) == list(NAMES)
        classes = src.read(1)
    quads = fine.reshape(18, 2, 20, 2).transpose(0, 2, 1, 3).reshape(18, 20, 4)
    counts = (quads == classes[..., None]).sum(-1)  # a most frequent class of each 2 x 2
    np.testing.assert_array_equal(counts, np.stack([(quads == k).sum(-1) for k in range(3)]).max(0))
    with rasterio.open(writer.paths.probabilities) as src:
        means = probabilities.reshape(3, 18, 2, 20, 2).mean(axis=(2, 4))
        np.testing.assert_allclose(src.read(), means, atol=1e-6)


def test_scene_writer_closes_every_file_when_left_by_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = RasterGrid(40, 30, UTM.crs, UTM.transform)
    with pytest.raises(RuntimeError, match="interrupted"):
        with scene_writer(tmp_path / "a", grid) as writer:
            writer.write(*random_block(grid, 8))
            raise RuntimeError("interrupted")
    assert len(writer.files) == 3 and all(file.closed for file in writer.files.values())

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rasterio.shutil, "copy", fail)
    with pytest.raises(OSError, match="disk full"):
        with scene_writer(tmp_path / "b", grid, scores=True) as writer:
            writer.write(*random_block(grid, 8))
            writer.finish()
    assert len(writer.files) == 4 and all(file.closed for file in writer.files.values())
    writer.close()  # again: nothing to do


def legend_boxes(figure) -> list:
    """The window extents of the figure's legends, after drawing it."""
    FigureCanvasAgg(figure)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    return [axis.get_legend().get_window_extent(renderer) for axis in figure.axes]


def quicklook(classes: int, shape: tuple[int, int]):
    """A quick-look figure of random classes and of every combination of three modalities."""
    rng = np.random.default_rng(classes)
    class_map = rng.integers(0, classes, shape).astype(np.uint8)
    class_map[:2] = outputs.CLASS_NODATA
    bits = rng.integers(0, 8, shape)
    names = [f"class number {k}" for k in range(classes)]
    return outputs.quicklook_figure(class_map, bits, names, ("s1", "s2", "dem"), "a title")


@pytest.mark.parametrize("classes", [2, 12, 30])
@pytest.mark.parametrize("shape", [(60, 60), (20, 120), (120, 20)])
def test_quicklook_legends_lie_inside_the_figure(classes: int, shape: tuple[int, int]) -> None:
    figure = quicklook(classes, shape)
    boxes = legend_boxes(figure)
    assert len(boxes) == 2
    for box, axis in zip(boxes, figure.axes, strict=True):
        assert box.x0 >= 0 and box.y0 >= 0, box
        assert box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height, box
        assert box.y1 <= axis.get_window_extent().y0 + 0.5  # below its map
    assert boxes[0].x1 <= boxes[1].x0  # side by side


def test_quicklook_maps_keep_their_size_whatever_the_number_of_classes() -> None:
    heights = []
    for classes in (2, 12, 30):
        figure = quicklook(classes, (60, 60))
        legend_boxes(figure)
        heights.append([axis.get_window_extent().height for axis in figure.axes])
    # the figure grows with the legends instead of shrinking the maps
    np.testing.assert_allclose(heights, [heights[0]] * 3, rtol=0.05)
