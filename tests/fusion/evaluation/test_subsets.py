import csv
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from fusion.evaluation import evaluate_subsets, subsets_in_table_order, write_subset_tables

WEIGHTS = {"s1": 0.2, "s2": 0.3, "dem": 0.05, "dnw": 0.4}


class SubsetData(L.LightningDataModule):
    """Batches that say which modalities they show, like the real DataModules' ``present``."""

    modalities = tuple(WEIGHTS)

    def __init__(self) -> None:
        super().__init__()
        self.shown = list(self.modalities)
        self.switches = 0

    def set_eval_modalities(self, spec: list[str]) -> None:
        self.shown = list(spec)
        self.switches += 1

    def test_dataloader(self) -> DataLoader:
        present = torch.tensor([name in self.shown for name in self.modalities])
        return DataLoader([{"present": present}] * 3, batch_size=None)


class AdditiveScore(L.LightningModule):
    """Scores each batch with the summed weights of the modalities it shows."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = torch.tensor(list(WEIGHTS.values()))

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self.log("test/score", (self.weights * batch["present"]).sum(), batch_size=1)


def test_table_order_follows_the_paper() -> None:
    assert subsets_in_table_order(["rgb", "sar", "dsm"]) == [
        ("sar", "rgb", "dsm"),
        ("sar", "rgb"),
        ("sar", "dsm"),
        ("rgb", "dsm"),
        ("sar",),
        ("rgb",),
        ("dsm",),
    ]
    quad = subsets_in_table_order(["dnw", "dem", "s2", "s1"])
    assert len(quad) == 15 and quad[0] == ("s1", "s2", "dem", "dnw")
    assert quad[1:5] == [
        ("s1", "s2", "dem"),
        ("s1", "s2", "dnw"),
        ("s1", "dem", "dnw"),
        ("s2", "dem", "dnw"),
    ]
    assert subsets_in_table_order(["s1", "s2"]) == [("s1", "s2"), ("s1",), ("s2",)]
    with pytest.raises(ValueError, match="distinct"):
        subsets_in_table_order([])


def test_every_subset_is_scored_and_written(tmp_path: Path) -> None:
    data, model = SubsetData(), AdditiveScore()
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    results = evaluate_subsets(trainer, model, data, progress=lambda items, **kw: items)
    assert len(results) == 15 and data.switches == 15
    for result in results:
        expected = sum(WEIGHTS[name] for name in result.modalities)
        assert result.metrics["test/score"] == pytest.approx(expected)

    paths = write_subset_tables(results, tmp_path, {"score": "test/score"}, title="toy")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [row["modalities"] for row in rows][:2] == ["s1+s2+dem+dnw", "s1+s2+dem"]
    assert len(rows) == 15
    markdown = paths["markdown"].read_text().splitlines()
    assert markdown[2] == "| Multimodal input | score |"
    assert markdown[4] == "| S1, S2, DEM, DNW | 0.950 |" and len(markdown) == 4 + 15
    assert paths["png"].stat().st_size > 1000


def test_bad_subsets_are_refused() -> None:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(ValueError, match="not a non-empty subset"):
        evaluate_subsets(trainer, AdditiveScore(), SubsetData(), subsets=[["s1", "rgb"]])
    with pytest.raises(ValueError, match="stage"):
        evaluate_subsets(trainer, AdditiveScore(), SubsetData(), stage="fit")
