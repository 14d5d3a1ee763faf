from pathlib import Path

import pytest

from datamodules.stats import load_stats


def test_bad_stats_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'s1'"):
        load_stats({"s1": {"mean": [0.0]}})
    with pytest.raises(ValueError, match="'dem'"):
        load_stats({"dem": {"mean": [0.0], "std": [0.0]}})
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_stats(tmp_path / "nope.json")
