"""``fusion predict-scene`` through the real command line, and its refusals."""

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.transform import from_origin

from fusion.cli import main
from fusion.scene.command import modality_rasters
from tests.fusion.scene.scenes import (
    ORIGIN,
    PIXEL,
    UTM,
    save_checkpoint,
    tiny_task,
    write,
    write_s1,
    write_s2,
)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("command")
    return {
        "ckpt": save_checkpoint(tiny_task(), folder / "run/checkpoints/last.ckpt"),
        "s1": write_s1(folder / "s1.tif", 64, 48),
        "s2": write_s2(folder / "s2.tif", 64, 48),
    }


def run(files: dict, out: Path, *args: str):
    return main(["predict-scene", "--ckpt_path", str(files["ckpt"]), "--out", str(out), *args])


def test_predicts_on_the_first_given_modalitys_grid(
    files: dict, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "maps/scene.tif"
    result = run(
        files, out, "--s2", str(files["s2"]), f"--s1={files['s1']}", "--modality-map",
        "--probabilities", "uint8", "--quiet",
    )  # fmt: skip
    assert result.paths.all() == [
        out,
        tmp_path / "maps/scene_probabilities.tif",
        tmp_path / "maps/scene_modalities.tif",
        tmp_path / "maps/scene.png",
    ]
    assert all(path.is_file() for path in result.paths.all())
    with rasterio.open(out) as src, rasterio.open(files["s2"]) as s2:
        assert (src.crs, src.transform, src.shape) == (s2.crs, s2.transform, s2.shape)
    with rasterio.open(tmp_path / "maps/scene_probabilities.tif") as src:
        assert src.dtypes == ("uint8", "uint8") and src.descriptions == ("not_water", "water")
    printed = capsys.readouterr().out
    assert "tiles predicted" in printed and "Wrote" in printed
    # --reference picks another grid
    result = run(files, tmp_path / "s1.tif", "--s2", str(files["s2"]), "--s1", str(files["s1"]),
                 "--reference", "s1", "--quiet", "--no-quicklook")  # fmt: skip
    with rasterio.open(result.paths.classes) as src, rasterio.open(files["s1"]) as s1:
        assert (src.crs, src.transform, src.shape) == (s1.crs, s1.transform, s1.shape)
    assert result.paths.quicklook is None


def test_refuses_an_unknown_modality(files: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"modality 'dem' is not one of .* \(s1, s2\)"):
        run(files, tmp_path / "map.tif", "--s1", str(files["s1"]), "--dem", str(files["s1"]))
    assert modality_rasters(
        ["--s1", "a.tif", "--s2", "b.tif", "c.tif", "--s1=/vsicurl/https://x/d.tif"], ("s1", "s2")
    ) == {"s1": ["a.tif", "/vsicurl/https://x/d.tif"], "s2": ["b.tif", "c.tif"]}
    with pytest.raises(ValueError, match="--s2 needs a raster path"):
        modality_rasters(["--s2"], ("s1", "s2"))
    with pytest.raises(ValueError, match=r"reference 's2' is not one of the given .*\(s1\)"):
        run(files, tmp_path / "map.tif", "--s1", str(files["s1"]), "--reference", "s2")


def test_refuses_rasters_that_do_not_overlap(files: dict, tmp_path: Path) -> None:
    far = write(
        tmp_path / "far_s2.tif",
        np.ones((13, 16, 16), np.uint16),
        UTM,
        from_origin(ORIGIN[0] + 10_000, ORIGIN[1], PIXEL, PIXEL),
        nodata=0,
    )
    with pytest.raises(ValueError, match=r"far_s2.tif \(s2\) does not overlap"):
        run(files, tmp_path / "map.tif", "--s1", str(files["s1"]), "--s2", str(far))


def test_refuses_a_band_count_that_does_not_match(files: dict, tmp_path: Path) -> None:
    three = write(
        tmp_path / "s1_three.tif",
        np.zeros((3, 16, 16), np.float32),
        UTM,
        from_origin(*ORIGIN, PIXEL, PIXEL),
        nodata=None,
    )
    with pytest.raises(ValueError, match=r"s1_three.tif: the s1 modality has 2 band\(s\)"):
        run(files, tmp_path / "map.tif", "--s1", str(three))


def test_refuses_an_existing_output_unless_overwrite(files: dict, tmp_path: Path) -> None:
    out = tmp_path / "map.tif"
    (tmp_path / "map.png").write_text("an older quick-look")
    with pytest.raises(FileExistsError, match=r"map.png exists \(pass --overwrite"):
        run(files, out, "--s1", str(files["s1"]), "--quiet")
    assert not out.exists()
    run(files, out, "--s1", str(files["s1"]), "--quiet", "--overwrite")
    assert out.is_file()
    with pytest.raises(ValueError, match="s1.tif would overwrite an input"):
        run(files, files["s1"], "--s1", str(files["s1"]), "--overwrite")
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        run(files, tmp_path / "other.tif", "--s1", str(tmp_path / "missing.tif"))


def test_a_png_class_map_is_refused_before_its_quicklook_overwrites_it(
    files: dict, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"map.png: the class map is a GeoTIFF"):
        run(files, tmp_path / "map.png", "--s1", str(files["s1"]), "--quiet")
    assert not (tmp_path / "map.png").exists()


def test_a_failing_run_leaves_the_previous_outputs_as_they_were(
    files: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fusion.scene.predict as predict_module

    out = tmp_path / "maps/scene.tif"
    run(files, out, "--s1", str(files["s1"]), "--modality-map", "--quiet")
    before = {path.name: path.read_bytes() for path in out.parent.iterdir()}
    assert set(before) == {"scene.tif", "scene_modalities.tif", "scene.png"}

    def broken_quicklook(*args, **kwargs) -> None:
        raise RuntimeError("disk full while drawing the quick-look")

    monkeypatch.setattr(predict_module, "write_quicklook", broken_quicklook)
    with pytest.raises(RuntimeError, match="disk full"):
        run(files, out, "--s2", str(files["s2"]), "--modality-map", "--quiet", "--overwrite")
    after = {path.name: path.read_bytes() for path in out.parent.iterdir()}
    assert after == before  # nothing replaced, nothing half-written, no temporary left
    fresh = tmp_path / "other/scene.tif"
    with pytest.raises(RuntimeError, match="disk full"):
        run(files, fresh, "--s1", str(files["s1"]), "--quiet")
    assert list(fresh.parent.iterdir()) == []  # a rerun is not stopped by a partial set
    monkeypatch.undo()
    run(files, fresh, "--s1", str(files["s1"]), "--quiet")
    assert fresh.is_file()


def test_mosaics_files_and_reads_gdal_paths(files: dict, tmp_path: Path) -> None:
    # S1 from GDAL's in-memory file system, S2 as two files: its left and right halves.
    memory = "/vsimem/test_command/s1.tif"
    rasterio.shutil.copy(files["s1"], memory)
    with rasterio.open(files["s2"]) as src:
        data, profile = src.read(), src.profile
    halves = []
    for side, columns in (
        ("left", slice(0, data.shape[2] // 2)),
        ("right", slice(data.shape[2] // 2, None)),
    ):
        part = np.zeros_like(data)
        part[:, :, columns] = data[:, :, columns]
        halves.append(tmp_path / f"s2_{side}.tif")
        with rasterio.open(halves[-1], "w", **profile) as dst:
            dst.write(part)
    try:
        mosaic = run(files, tmp_path / "mosaic/map.tif", "--s1", memory, "--s2", *map(str, halves),
                     "--probabilities", "--quiet", "--workers", "1")  # fmt: skip
    finally:
        rasterio.shutil.delete(memory)
    whole = run(files, tmp_path / "whole/map.tif", "--s1", str(files["s1"]), "--s2",
                str(files["s2"]), "--probabilities", "--quiet", "--workers", "0")  # fmt: skip
    assert mosaic.subsets == whole.subsets == {("s1", "s2"): whole.predicted}
    # The same maps but at the halves' seam, where each half's interpolation lacks the other
    # half's pixels (the mosaic's values there are tested in test_sources).
    with (
        rasterio.open(mosaic.paths.probabilities) as a,
        rasterio.open(whole.paths.probabilities) as b,
    ):
        assert np.abs(a.read() - b.read()).max() < 0.02
    with rasterio.open(mosaic.paths.classes) as a, rasterio.open(whole.paths.classes) as b:
        assert (a.read() == b.read()).mean() > 0.99


def test_bounds_and_resolution_choose_the_output_grid(files: dict, tmp_path: Path) -> None:
    left, top = ORIGIN
    bounds = (left + 100, top - 400, left + 500, top - 40)  # 40 x 36 pixels of the 64 x 48
    result = run(files, tmp_path / "box/map.tif", "--s1", str(files["s1"]), "--bounds",
                 *map(str, bounds), "--probabilities", "--modality-map", "--quiet")  # fmt: skip
    for path in result.paths.all()[:-1]:
        with rasterio.open(path) as src:
            assert src.bounds == bounds and src.res == (PIXEL, PIXEL)
    coarse = run(files, tmp_path / "coarse/map.tif", "--s1", str(files["s1"]), "--bounds",
                 *map(str, bounds), "--resolution", "20", "--probabilities", "--quiet")  # fmt: skip
    with rasterio.open(coarse.paths.classes) as src, rasterio.open(result.paths.classes) as fine:
        assert src.bounds == bounds and src.res == (20.0, 20.0) and src.shape == (18, 20)
        # Each coarse pixel is a most frequent class of its 2 x 2 fine pixels (mode).
        blocks = fine.read(1).reshape(18, 2, 20, 2).transpose(0, 2, 1, 3).reshape(18, 20, 4)
        counts = (blocks == src.read(1)[..., None]).sum(-1)
        most = np.stack([(blocks == k).sum(-1) for k in np.unique(blocks)]).max(0)
        np.testing.assert_array_equal(counts, most)
    with (
        rasterio.open(coarse.paths.probabilities) as src,
        rasterio.open(result.paths.probabilities) as fine,
    ):
        means = fine.read().reshape(2, 18, 2, 20, 2).mean(axis=(2, 4))
        np.testing.assert_allclose(src.read(), means, atol=1e-5)
    with pytest.raises(ValueError, match="empty"):
        run(
            files,
            tmp_path / "bad/map.tif",
            "--s1",
            str(files["s1"]),
            "--bounds",
            "1",
            "1",
            "1",
            "1",
        )


def test_warns_about_values_far_from_training(files: dict, tmp_path: Path, caplog) -> None:
    with rasterio.open(files["s1"]) as src:
        data, profile = src.read(), src.profile
    linear = tmp_path / "s1_linear.tif"
    with rasterio.open(linear, "w", **profile) as dst:
        dst.write(10 ** (data / 10))
    with caplog.at_level("WARNING"):
        result = run(files, tmp_path / "map.tif", "--s1", str(linear), "--quiet", "--no-quicklook")
    assert len(result.warnings) == 1 and "s1_linear.tif" in result.warnings[0]
    assert result.warnings[0] in caplog.text


def test_a_modality_outside_the_bounds_is_left_out_with_a_warning(
    files: dict, tmp_path: Path
) -> None:
    # S2 covers only the left third; --bounds on the right predicts from S1 alone.
    with rasterio.open(files["s2"]) as src:  # its left third, as a file of that extent
        data, profile = src.read(), src.profile
    data = data[:, :, : data.shape[2] // 3]
    profile.update(width=data.shape[2])
    left = tmp_path / "s2_left.tif"
    with rasterio.open(left, "w", **profile) as dst:
        dst.write(data)
    left_edge, top = ORIGIN
    bounds = (left_edge + 400, top - 480, left_edge + 640, top)
    result = run(files, tmp_path / "map.tif", "--s1", str(files["s1"]), "--s2", str(left),
                 "--bounds", *map(str, bounds), "--quiet", "--no-quicklook")  # fmt: skip
    assert result.subsets == {("s1",): result.predicted} and result.predicted > 0
    assert any("s2" in w and "outside --bounds" in w for w in result.warnings)
    with pytest.raises(ValueError, match="does not overlap the area predicted"):
        run(
            files,
            tmp_path / "ref.tif",
            "--s2",
            str(left),
            "--s1",
            str(files["s1"]),
            "--bounds",
            *map(str, bounds),
            "--quiet",
        )  # fmt: skip  (the reference itself)
