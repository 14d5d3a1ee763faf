"""Per-modality, per-channel normalization statistics: their stored form and its reader.

Statistics are stored per dataset as ``{modality: {"mean": [...], "std": [...]}}`` (one value per
channel, in the units the loader produces: dB for SAR, reflectance x 10000 for Sentinel-2,
metres for elevation). Categorical modalities have none. Each dataset class carries defaults in
``default_stats``; a JSON file written by `datamodules.normalization` replaces them when it
is passed to the dataset (or DataModule) as ``stats="quad.json"``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

Stats = dict[str, dict[str, list[float]]]
"""``{modality: {"mean": [per channel], "std": [per channel]}}``."""


def load_stats(stats: str | Path | Mapping[str, Mapping[str, list[float]]]) -> Stats:
    """Read statistics from a JSON file, or validate a mapping given directly.

    Args:
        stats: path of a JSON file written by ``python -m datamodules.normalization``, or the
            mapping itself.

    Returns:
        The statistics as plain dicts.

    Raises:
        FileNotFoundError: if the file does not exist.
        ValueError: if an entry lacks ``mean``/``std`` or has a non-positive std.
    """
    if isinstance(stats, str | Path):
        path = Path(stats)
        if not path.is_file():
            raise FileNotFoundError(f"Normalization statistics file not found: {path}")
        stats = json.loads(path.read_text())
    parsed: Stats = {}
    for name, entry in stats.items():
        if "mean" not in entry or "std" not in entry:
            raise ValueError(f"Statistics of {name!r} need 'mean' and 'std', got {sorted(entry)}")
        mean, std = [float(v) for v in entry["mean"]], [float(v) for v in entry["std"]]
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"Statistics of {name!r}: mean {mean} / std {std} are not usable")
        parsed[name] = {"mean": mean, "std": std}
    return parsed
