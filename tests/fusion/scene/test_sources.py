from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.io
import rasterio.shutil
import rasterio.warp
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from datamodules.dfc2023 import DFC2023
from datamodules.sen1floods11 import Sen1Floods11Chip
from fusion.scene.sources import (
    ModalityRaster,
    crop_grid,
    grid_bounds,
    reference_grid,
    resample_grid,
    tile_windows,
    window_query,
)
from tests.fusion.scene.scenes import ORIGIN, PIXEL, UTM, pattern, write, write_s1, write_s2

S1, S2 = Sen1Floods11Chip.all_modalities["s1"], Sen1Floods11Chip.all_modalities["s2"]


def test_reprojected_modality_lies_on_the_reference_grid(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    s2 = ModalityRaster("s2", write_s2(tmp_path / "s2.tif", 96, 64), S2, grid)
    assert s2.warped and s2.crs == grid.crs
    window = rasterio.windows.Window(40, 16, 32, 32)
    data, valid = s2.read_window(window)
    assert data.shape == (4, 32, 32) and valid.all()  # bands 2, 3, 4, 8 of 13
    cols, rows = np.meshgrid(np.arange(40, 72) + 0.5, np.arange(16, 48) + 0.5)
    expected = 300 + 3000 * pattern(ORIGIN[0] + cols * PIXEL, ORIGIN[1] - rows * PIXEL)
    assert np.abs(data[0] - expected).mean() < 15  # band 2 (odd): 300 + 3000 * field
    assert np.abs(data[1] - (3300 - expected + 300)).mean() < 15  # band 3 (even)


def test_reference_modality_is_read_as_it_is(tmp_path: Path) -> None:
    path = write_s1(tmp_path / "s1.tif", 96, 64)
    grid = reference_grid(path)
    s1 = ModalityRaster("s1", path, S1, grid)
    assert not s1.warped
    with rasterio.open(path) as src:
        raw = src.read()
    data, valid = s1.read_window(rasterio.windows.Window(-8, 40, 32, 32))  # hangs over 2 edges
    np.testing.assert_array_equal(data[:, :24, 8:], raw[:, 40:64, :24])
    assert valid[:24, 8:].all() and not valid[24:].any() and not valid[:, :8].any()


def test_nodata_and_the_footprint_edge_are_invalid(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    data = np.full((13, 20, 30), 1000, dtype=np.uint16)
    data[:, :5, :5] = 0  # the file's no-data value
    # A small S2 patch in UTM 10 m pixels, its corner at reference pixel (row 10, col 50).
    origin = (ORIGIN[0] + 50 * PIXEL, ORIGIN[1] - 10 * PIXEL)
    path = write(tmp_path / "patch.tif", data, UTM, from_origin(*origin, PIXEL, PIXEL), nodata=0)
    patch = ModalityRaster("s2", path, S2, grid)
    assert not patch.warped and patch.offset == (50, 10)
    values, valid = patch.read_window(rasterio.windows.Window(40, 0, 32, 32))
    expected = np.zeros((32, 32), dtype=bool)
    expected[10:30, 10:32] = True
    expected[10:15, 10:15] = False
    np.testing.assert_array_equal(valid, expected)
    assert (values[:, valid] == 1000).all()
    assert patch.read_window(rasterio.windows.Window(0, 32, 32, 32)) is None  # misses it


def test_integer_file_without_nodata_is_valid_on_its_footprint(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    rgb = DFC2023.all_modalities["rgb"]  # uint8 RGB, no no-data value
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", *grid_bounds(grid))
    step = (east - west) / 200  # the file covers 40% of the scene from its left edge
    path = write(
        tmp_path / "rgb.tif",
        np.full((3, 300, 100), 7, np.uint8),
        "EPSG:4326",
        from_origin(west - 20 * step, north + 20 * step, step, step),
        nodata=None,
    )
    source = ModalityRaster("rgb", path, rgb, grid)
    assert source.warped and source.nodata is None
    data, valid = source.read_window(rasterio.windows.Window(0, 0, 96, 64))
    assert valid[:, :36].all() and not valid[:, 41:].any()
    assert (data[:, valid] == 7).all()


def test_refuses_a_wrong_band_count_and_no_overlap(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    four = write(
        tmp_path / "four.tif",
        np.ones((4, 8, 8), np.uint16),
        UTM,
        from_origin(*ORIGIN, PIXEL, PIXEL),
        nodata=0,
    )
    with pytest.raises(ValueError, match=r"four.tif: the s2 modality has 13 band\(s\).* 4"):
        ModalityRaster("s2", four, S2, grid)
    far = write(
        tmp_path / "far.tif",
        np.ones((13, 8, 8), np.uint16),
        UTM,
        from_origin(ORIGIN[0] + 5000, ORIGIN[1], PIXEL, PIXEL),
        nodata=0,
    )
    with pytest.raises(ValueError, match="far.tif .s2. does not overlap"):
        ModalityRaster("s2", far, S2, grid)
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        ModalityRaster("s2", tmp_path / "missing.tif", S2, grid)


@pytest.mark.parametrize(("width", "height"), [(160, 96), (100, 70), (20, 50), (32, 32)])
def test_tiles_cover_the_scene(tmp_path: Path, width: int, height: int) -> None:
    path = write_s1(tmp_path / "s1.tif", width, height)
    tiles = tile_windows(ModalityRaster("s1", path, S1, reference_grid(path)), 32, 16)
    covered = np.zeros((height + 64, width + 64), dtype=int)
    windows = list(tiles)
    assert len(windows) == len(tiles) == len({(w.row_off, w.col_off) for w in windows})
    for window in windows:
        assert window.width == window.height == 32
        covered[
            32 + window.row_off : 64 + window.row_off, 32 + window.col_off : 64 + window.col_off
        ] += 1
    assert (covered[32 : 32 + height, 32 : 32 + width] > 0).all()
    if width >= 32 and height >= 32:  # every tile inside the scene, half a tile apart
        assert covered.sum() == covered[32 : 32 + height, 32 : 32 + width].sum()
        for offsets in (tiles.rows, tiles.cols):
            assert ((np.diff(offsets) > 0) & (np.diff(offsets) <= 16)).all()
    if (width, height) == (160, 96):
        assert tiles.rows == (0, 16, 32, 48, 64) and len(tiles.cols) == 9


@pytest.mark.parametrize(
    ("crs", "origin", "pixel"),
    [("EPSG:4326", (-3.0, 40.0), 8.98e-5), (UTM, (500000.1, 5000000.3), 0.3), (UTM, ORIGIN, PIXEL)],
)
@pytest.mark.parametrize("side", [32, 33, 47, 64])
def test_a_scene_from_one_tile_up_always_gets_its_tiles(
    tmp_path: Path, crs: str, origin: tuple[float, float], pixel: float, side: int
) -> None:
    data = np.zeros((2, side, side), dtype=np.float32)
    path = write(tmp_path / "s1.tif", data, crs, from_origin(*origin, pixel, pixel), nodata=None)
    tiles = tile_windows(ModalityRaster("s1", path, S1, reference_grid(path)), 32, 16)
    covered = np.zeros((side, side), dtype=bool)
    for window in tiles:
        covered[window.row_off : window.row_off + 32, window.col_off : window.col_off + 32] = True
    assert covered.all(), (crs, pixel, side, tiles.rows, tiles.cols)


def test_only_the_used_bands_are_read_and_warped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    s2 = ModalityRaster("s2", write_s2(tmp_path / "s2.tif", 96, 64), S2, grid)
    assert s2.warped
    reads = []
    original = rasterio.io.DatasetReader.read

    def spy(self, indexes=None, *args, **kwargs):
        reads.append((self.name, indexes, kwargs.get("window")))
        return original(self, indexes, *args, **kwargs)

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    data, valid = s2.read_window(rasterio.windows.Window(40, 16, 32, 32))
    assert valid.all() and data.shape == (4, 32, 32)
    assert reads and all(list(indexes) == [2, 3, 4, 8] for _, indexes, _ in reads)
    # Only the part of the file under the tile (plus a margin) is read, not the whole file.
    with rasterio.open(s2.path) as src:
        assert all(w.width * w.height < src.width * src.height / 2 for _, _, w in reads)


def test_several_files_are_mosaicked_first_given_first(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    # Two halves in two CRSs: the left in UTM 33 on the grid, the right in EPSG:4326 (warped),
    # overlapping by 8 columns where the first file given wins.
    left = write(
        tmp_path / "left.tif",
        np.full((13, 64, 52), 1000, np.uint16),
        UTM,
        from_origin(*ORIGIN, PIXEL, PIXEL),
        nodata=0,
    )
    west, south, east, north = transform_bounds(UTM, "EPSG:4326", *grid_bounds(grid))
    step = 1e-4
    start = west + (east - west) * 44 / 96  # from column 44 on
    columns = int(np.ceil((east - start) / step)) + 5
    lines = int(np.ceil((north - south) / step)) + 10
    right = write(
        tmp_path / "right.tif",
        np.full((13, lines, columns), 2000, np.uint16),
        "EPSG:4326",
        from_origin(start, north + 5 * step, step, step),
        nodata=0,
    )
    mosaic = ModalityRaster("s2", [left, right], S2, grid)
    data, valid = mosaic.read_window(rasterio.windows.Window(0, 0, 96, 64))
    assert valid.all()
    assert (data[:, :, :52] == 1000).all()  # the left file, also where both cover
    assert (data[:, 2:-2, 56:] == 2000).all()  # the right file beyond the left one
    swapped = ModalityRaster("s2", [right, left], S2, grid)
    data, _ = swapped.read_window(rasterio.windows.Window(0, 0, 96, 64))
    assert (data[:, 2:-2, 48:52] == 2000).all()  # now the right file wins where both cover
    with pytest.raises(ValueError, match="given twice"):
        ModalityRaster("s2", [left, left], S2, grid)


def test_gdal_paths_are_read(tmp_path: Path) -> None:
    local = write_s1(tmp_path / "s1.tif", 64, 48)
    memory = "/vsimem/test_sources/s1.tif"
    rasterio.shutil.copy(local, memory)
    try:
        grid = reference_grid(memory)
        source = ModalityRaster("s1", memory, S1, grid)
        data, valid = source.read_window(rasterio.windows.Window(0, 0, 32, 32))
        with rasterio.open(local) as src:
            np.testing.assert_array_equal(
                data, src.read(window=rasterio.windows.Window(0, 0, 32, 32))
            )
        assert valid.all()
    finally:
        rasterio.shutil.delete(memory)
    with pytest.raises(FileNotFoundError, match="/vsimem/test_sources/none.tif"):
        ModalityRaster("s1", "/vsimem/test_sources/none.tif", S1, grid)


def test_bounds_crop_and_resolution_resample_the_grid(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    left, bottom, right, top = grid_bounds(grid)
    crop = crop_grid(grid, (left + 15, bottom + 101, left + 305, top - 9))
    assert (crop.width, crop.height) == (30, 54)  # snapped outward to whole pixels
    assert (crop.transform.c, crop.transform.f) == (left + 10, top - 0)
    beyond = crop_grid(grid, (left - 100, bottom, right, top))  # reaches past the raster
    assert beyond.width == 106 and beyond.transform.c == left - 100
    coarse = resample_grid(grid, 30.0)
    assert (coarse.width, coarse.height) == (32, 22) and coarse.transform.a == 30.0
    with pytest.raises(ValueError, match="empty"):
        crop_grid(grid, (left, bottom, left, top))
    with pytest.raises(ValueError, match="positive"):
        resample_grid(grid, 0)


def test_tiles_at_a_file_edge_are_warped_as_the_whole_scene(tmp_path: Path) -> None:
    # A 3 m file (finer than the 10 m grid) whose edges lie inside the scene: every tile, at
    # the edge or not, must equal one warp of the whole file padded with no data (GDAL sizes
    # its smoothing from the source window; a window cut at the file's edge smoothed less).
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    data = np.random.default_rng(0).normal(-15, 3, (2, 200, 250)).astype(np.float32)
    affine = from_origin(ORIGIN[0] + 95, ORIGIN[1] - 47, 3.0, 3.0)  # edges off the pixel grid
    fine = ModalityRaster("s1", write(tmp_path / "fine.tif", data, UTM, affine, np.nan), S1, grid)
    pad = 50
    whole = np.full((2, grid.height, grid.width), np.nan, np.float32)
    rasterio.warp.reproject(
        np.pad(data, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan),
        whole,
        src_transform=affine * rasterio.Affine.translation(-pad, -pad),
        src_crs=UTM,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=UTM,
        dst_nodata=np.nan,
        resampling=rasterio.enums.Resampling.bilinear,
    )
    for row in range(0, 64 - 16, 8):
        for col in range(0, 96 - 16, 8):
            read = fine.read_window(rasterio.windows.Window(col, row, 16, 16))
            expected = whole[:, row : row + 16, col : col + 16]
            holds = np.isfinite(expected).all(axis=0)
            if read is None:
                assert not holds.any()
                continue
            values, valid = read
            np.testing.assert_array_equal(valid, holds)
            np.testing.assert_allclose(values[:, valid], expected[:, holds], atol=1e-4)


def test_read_window_reads_what_torchgeo_s_query_reads(tmp_path: Path) -> None:
    grid = reference_grid(write_s1(tmp_path / "s1.tif", 96, 64))
    s2 = ModalityRaster("s2", write_s2(tmp_path / "s2.tif", 40, 30), S2, grid)  # a corner only
    for col, row in ((0, 0), (30, 20), (60, 40), (-20, -20), (200, 0)):
        window = rasterio.windows.Window(col, row, 32, 32)
        read = s2.read_window(window)
        try:
            image = s2[window_query(window, grid)]["image"].numpy()
        except IndexError:
            assert read is None
            continue
        assert read is not None
        np.testing.assert_array_equal(read[0], image[:-1])
        np.testing.assert_array_equal(read[1], image[-1] > 0.5)
