from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from datamodules.quadruplets import Quadruplets
from datamodules.sen1floods11 import Sen1Floods11Chip
from fusion.scene.checks import band_values, value_range_warnings
from fusion.scene.sources import ModalityRaster, reference_grid
from tests.fusion.scene.scenes import ORIGIN, PIXEL, UTM, write


def dataset(cls: type) -> object:
    """The dataset class set up by the base class alone, as predict-scene does."""
    from datamodules.dataset import MultimodalDataset

    instance = cls.__new__(cls)
    MultimodalDataset.__init__(
        instance, root=".", split=cls.splits[-1], modalities=["s1", "s2"], image_size=32
    )
    return instance


def sources(tmp_path: Path, s1: np.ndarray, s2: np.ndarray, cls: type) -> dict:
    affine = from_origin(*ORIGIN, PIXEL, PIXEL)
    s1_path = write(tmp_path / "s1.tif", s1.astype(np.float32), UTM, affine, nodata=np.nan)
    s2_path = write(tmp_path / "s2.tif", s2.astype(np.uint16), UTM, affine, nodata=0)
    grid = reference_grid(s1_path)
    return {
        "s1": ModalityRaster("s1", s1_path, cls.all_modalities["s1"], grid),
        "s2": ModalityRaster("s2", s2_path, cls.all_modalities["s2"], grid),
    }


def realistic(cls: type, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inputs drawn around the training statistics, in the files' units."""
    stats = cls.default_stats
    s1 = np.stack([rng.normal(m, s, (64, 64)) for m, s in zip(*stats["s1"].values(), strict=True)])
    bands = cls.all_modalities["s2"].file_bands or 4
    s2 = np.full((bands, 64, 64), 1000.0)
    for index, band in enumerate(cls.all_modalities["s2"].read_bands or range(1, 5)):
        mean, std = stats["s2"]["mean"][index], stats["s2"]["std"][index]
        s2[band - 1] = np.clip(rng.normal(mean, std, (64, 64)), 1, None)
    return s1, s2


@pytest.mark.parametrize("cls", [Sen1Floods11Chip, Quadruplets])
def test_inputs_like_the_training_data_raise_no_warning(tmp_path: Path, cls: type) -> None:
    s1, s2 = realistic(cls, np.random.default_rng(0))
    assert value_range_warnings(sources(tmp_path, s1, s2, cls), dataset(cls)) == []


@pytest.mark.parametrize("cls", [Sen1Floods11Chip, Quadruplets])
def test_linear_backscatter_is_reported(tmp_path: Path, cls: type) -> None:
    s1, s2 = realistic(cls, np.random.default_rng(1))
    linear = 10 ** (s1 / 10)  # what the model expects in dB, given as power
    warnings = value_range_warnings(sources(tmp_path, linear, s2, cls), dataset(cls))
    assert len(warnings) == 1 and warnings[0].startswith("s1 (") and "s1.tif" in warnings[0]
    assert "dB" in warnings[0]


@pytest.mark.parametrize("cls", [Sen1Floods11Chip, Quadruplets])
def test_the_l2a_offset_is_reported(tmp_path: Path, cls: type) -> None:
    s1, s2 = realistic(cls, np.random.default_rng(2))
    warnings = value_range_warnings(sources(tmp_path, s1, s2 + 1000, cls), dataset(cls))
    assert len(warnings) == 1 and warnings[0].startswith("s2 (")


def test_no_data_pixels_are_left_out_of_the_values(tmp_path: Path) -> None:
    cls = Sen1Floods11Chip
    s1, s2 = realistic(cls, np.random.default_rng(3))
    s1[:, :32] = np.nan  # half the scene without S1
    s2[:, :, :32] = 0  # and without S2
    found = sources(tmp_path, s1, s2, cls)
    values = band_values(found["s1"], dataset(cls))
    assert abs(values[0].mean - np.nanmean(s1[0])) < 0.5
    assert value_range_warnings(found, dataset(cls)) == []


def test_a_flat_dem_is_not_reported(tmp_path: Path) -> None:
    # A plain: elevation near the training mean with a spread 50 x smaller than training's.
    from datamodules.dataset import MultimodalDataset

    affine = from_origin(*ORIGIN, PIXEL, PIXEL)
    flat = 200 + np.random.default_rng(4).normal(0, 5, (1, 64, 64))
    path = write(tmp_path / "dem.tif", flat.astype(np.float32), UTM, affine, nodata=np.nan)
    data = Quadruplets.__new__(Quadruplets)
    MultimodalDataset.__init__(
        data, root=".", split=Quadruplets.splits[-1], modalities=["dem"], image_size=32
    )
    dem = ModalityRaster("dem", path, Quadruplets.all_modalities["dem"], reference_grid(path))
    assert band_values(dem, data)[0].spread < 1 / 20
    assert value_range_warnings({"dem": dem}, data) == []
    high = write(tmp_path / "high.tif", (flat + 3000).astype(np.float32), UTM, affine, np.nan)
    alps = ModalityRaster("dem", high, Quadruplets.all_modalities["dem"], reference_grid(high))
    assert len(value_range_warnings({"dem": alps}, data)) == 1  # 12 standard deviations up


def test_only_the_area_predicted_is_checked(tmp_path: Path) -> None:
    # Values far off on the right half of the files (snow, say); a grid on the left half
    # alone is not reported, the whole scene is.
    from fusion.scene.sources import crop_grid, grid_bounds

    cls = Sen1Floods11Chip
    s1, s2 = realistic(cls, np.random.default_rng(5))
    s2[:, :, 32:] = 9000
    found = sources(tmp_path, s1, s2, cls)
    assert len(value_range_warnings(found, dataset(cls))) == 1
    left, bottom, right, top = grid_bounds(found["s1"].grid)
    half = crop_grid(found["s1"].grid, (left, bottom, (left + right) / 2, top))
    cropped = {
        name: ModalityRaster(name, source.path, cls.all_modalities[name], half)
        for name, source in found.items()
    }
    assert value_range_warnings(cropped, dataset(cls)) == []
