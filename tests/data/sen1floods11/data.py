"""A tiny Sen1Floods11 chip in the official flat layout (run directly to write ./sen1floods11)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from tests.data.geotiff import write_tif


def write_sen1floods11(root: Path, size: int = 64, chip: str = "Spain_1", seed: int = 0) -> Path:
    """Write one ``size x size`` chip: S1 (2 bands dB), S2 L1C (13 bands) and a water label."""
    rng = np.random.default_rng(seed)
    label = rng.integers(-1, 2, (1, size, size)).astype(np.int16)  # -1 no data, 0, 1 water
    s1 = rng.normal(-12, 4, (2, size, size)).astype(np.float32)
    s2 = rng.integers(100, 4000, (13, size, size)).astype(np.uint16)
    for suffix, data in (("S1Hand", s1), ("S2Hand", s2), ("LabelHand", label)):
        write_tif(root / f"{chip}_{suffix}.tif", data, crs="EPSG:4326", origin=(-3.0, 40.0))
    return root


if __name__ == "__main__":
    print(write_sen1floods11(Path(sys.argv[1] if len(sys.argv) > 1 else "sen1floods11")))
