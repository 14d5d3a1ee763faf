"""Tiny Earth-Engine quadruplets in the real layout (run directly to write ./quadruplets)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.data.geotiff import write_tif

REGIONS = {"train": ["alpha", "beta"], "val": ["gamma"], "test": ["delta"]}
CODES = [11100, 12100, 14100, 21000, 31000, 32000, 50000]


def write_quadruplets(root: Path, size: int = 32, tiles_per_region: int = 2, seed: int = 0) -> Path:
    """Write 4 regions x ``tiles_per_region`` tiles of ``size`` px and return the folder."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    (root / "splits.json").write_text(json.dumps(REGIONS))
    for r, region in enumerate(sum(REGIONS.values(), [])):
        for t in range(tiles_per_region):
            name = f"{region}_{t:02d}"
            origin = (500000.0 + 1000 * t, 5000000.0 - 1000 * r)
            codes = rng.choice(CODES, size=(size, size)).astype(np.uint16)
            codes[0, :3] = 0  # unmapped: ignored
            files = {
                "s1": (rng.normal(-12, 4, (2, size, size)).astype(np.float32), None),
                "s2": (rng.integers(100, 4000, (4, size, size)).astype(np.uint16), 0),
                "dem": (rng.normal(300, 50, (1, size, size)).astype(np.float32), None),
                "dnw": (rng.integers(0, 9, (1, size, size)).astype(np.uint8), None),
                "label": (codes, None),
            }
            for folder, (data, nodata) in files.items():
                path = root / region / folder / f"{name}.tif"
                write_tif(path, data, origin=origin, nodata=nodata)
    return root


if __name__ == "__main__":
    print(write_quadruplets(Path(sys.argv[1] if len(sys.argv) > 1 else "quadruplets")))
