from pathlib import Path

import numpy as np
import pytest
import rasterio

from fusion.scene.cut import cut_raster, main
from tests.fusion.scene.scenes import write_s1, write_s2


def test_cut_keeps_one_side(tmp_path: Path) -> None:
    source = write_s2(tmp_path / "s2.tif", 60, 40)
    target = main([str(source), str(tmp_path / "half.tif"), "--keep", "left"])
    with rasterio.open(source) as src, rasterio.open(target) as dst:
        original, cut = src.read(), dst.read()
        assert (dst.crs, dst.transform, dst.nodata) == (src.crs, src.transform, 0)
    half = round(original.shape[2] / 2)
    np.testing.assert_array_equal(cut[:, :, :half], original[:, :, :half])
    assert (cut[:, :, half:] == 0).all()

    floats = write_s1(tmp_path / "s1.tif", 30, 20)
    bottom = cut_raster(floats, tmp_path / "bottom.tif", keep="bottom", fraction=0.25, strip=7)
    with rasterio.open(bottom) as dst:
        data = dst.read()
    assert np.isnan(data[:, :15]).all() and np.isfinite(data[:, 15:]).all()
    with pytest.raises(ValueError, match="keep must be"):
        cut_raster(floats, tmp_path / "x.tif", keep="middle")
