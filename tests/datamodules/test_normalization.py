import json
from pathlib import Path

import numpy as np
import rasterio

from datamodules import Quadruplets
from datamodules.normalization import compute_stats, main
from datamodules.stats import load_stats


def test_compute_stats_matches_numpy(quadruplets_root: Path) -> None:
    stats = compute_stats(Quadruplets(quadruplets_root, split="train"))
    assert set(stats) == {"s1", "s2", "dem"}
    files = sorted(quadruplets_root.glob("[ab]*/s1/*.tif"))
    pixels = np.concatenate([rasterio.open(f).read().reshape(2, -1) for f in files], axis=1)
    np.testing.assert_allclose(stats["s1"]["mean"], pixels.mean(1), rtol=1e-5)
    np.testing.assert_allclose(stats["s1"]["std"], pixels.std(1), rtol=1e-4)


def test_command_writes_json_that_datasets_read(quadruplets_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "stats.json"
    main(["quadruplets", "--root", str(quadruplets_root), "--split", "val", "--out", str(out)])
    stats = json.loads(out.read_text())
    assert len(stats["s2"]["mean"]) == 4
    ds = Quadruplets(quadruplets_root, split="val", stats=out)
    assert ds.stats == load_stats(stats)
    sample = ds[0]
    assert abs(float(sample["s1"].mean())) < 0.5
