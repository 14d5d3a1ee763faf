import torch

from fusion.tasks.batches import drop_empty_samples


def test_samples_without_any_modality_are_dropped_and_counted() -> None:
    batch = {
        "s1": torch.arange(3.0)[:, None],
        "present": torch.tensor([[True, False], [False, False], [False, True]]),
        "mask": torch.zeros(3, 2, 2),
        "name": ["a", "b", "c"],
        "instance_masks": [torch.zeros(1), torch.zeros(2), torch.zeros(3)],
    }
    kept, dropped = drop_empty_samples(batch)
    assert dropped == 1
    assert kept["name"] == ["a", "c"] and kept["s1"].flatten().tolist() == [0.0, 2.0]
    assert [len(m) for m in kept["instance_masks"]] == [1, 3]
    assert kept["present"].all(dim=0).tolist() == [False, False]
    assert kept["mask"].shape == (2, 2, 2)
    same, none = drop_empty_samples(kept)
    assert none == 0 and same["name"] == ["a", "c"]
