"""Tiny Sen1Floods11 chips: one flat chip (run directly to write ./sen1floods11), and several in
the official ``S1Hand/``, ``S2Hand/``, ``LabelHand/`` layout with the defects of real data."""

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


def write_official_chips(root: Path, size: int = 32) -> Path:
    """Chips in the official layout, broken as the shared real chips are.

    - ``Wet_1``, ``Wet_2``: S1 and S2; water (label 1) where VH < -20 dB, the left half.
    - ``Dry_1``: S1 only (no S2 file), a quarter water.
    - ``NoS1_1``: S2 only (no S1 file).
    - ``EmptyS1_1``: an S1 file of NaN only and no S2 file: no modality has data.
    - ``NoLabel_1``: S1, but a label that is -1 (no data) everywhere.
    """
    rng = np.random.default_rng(0)
    chips = {
        "Wet_1": ("s1", "s2"),
        "Wet_2": ("s1", "s2"),
        "Dry_1": ("s1",),
        "NoS1_1": ("s2",),
        "EmptyS1_1": ("nan_s1",),
        "NoLabel_1": ("s1", "no_label"),
    }
    for chip, parts in chips.items():
        water = np.zeros((size, size), dtype=bool)
        water[:, : size // 2 if chip != "Dry_1" else size // 4] = True
        label = water.astype(np.int16)[None]
        if "no_label" in parts:
            label = np.full_like(label, -1)
        vh = np.where(water, -25.0, -12.0) + rng.normal(0, 0.5, water.shape)
        s1 = np.stack([vh + 6.0, vh]).astype(np.float32)
        if "nan_s1" in parts:
            s1 = np.full_like(s1, np.nan)
        s2 = rng.integers(500, 1500, (13, size, size)).astype(np.int16)
        s2[7] = np.where(water, 300, 3000)  # B8 (NIR) dark on water
        files = {"LabelHand": label}
        if "s1" in parts or "nan_s1" in parts:
            files["S1Hand"] = s1
        if "s2" in parts:
            files["S2Hand"] = s2
        for folder, data in files.items():
            write_tif(
                root / folder / f"{chip}_{folder}.tif", data, crs="EPSG:4326", origin=(-3.0, 40.0)
            )
    return root


if __name__ == "__main__":
    print(write_sen1floods11(Path(sys.argv[1] if len(sys.argv) > 1 else "sen1floods11")))
