import pytest
import torch

from fusion.heads import instance_targets, semantic_targets


def test_semantic_targets_one_mask_per_class_present_ignore_excluded() -> None:
    mask = torch.tensor([[[0, 0, 2], [2, 255, 255]], [[255, 255, 255], [255, 255, 255]]])
    first, empty = semantic_targets(mask, num_classes=3)
    assert first.labels.tolist() == [0, 2] and first.labels.dtype == torch.int64
    assert first.masks.dtype == torch.float32
    assert first.masks.tolist() == [[[1, 1, 0], [0, 0, 0]], [[0, 0, 1], [1, 0, 0]]]
    assert first.valid.tolist() == [[True, True, True], [True, False, False]]
    assert empty.masks.shape == (0, 2, 3) and empty.labels.numel() == 0 and not empty.valid.any()


def test_semantic_targets_reject_unknown_ids() -> None:
    with pytest.raises(ValueError, match=r"\[3\].*0\.\.2"):
        semantic_targets(torch.tensor([[[0, 3]]]), num_classes=3)


def test_instance_targets_take_the_ignore_mask() -> None:
    masks = [torch.zeros(2, 4, 4, dtype=torch.bool), torch.zeros(0, 4, 4, dtype=torch.bool)]
    labels = [torch.tensor([0, 0]), torch.zeros(0, dtype=torch.long)]
    mask = torch.zeros(2, 4, 4, dtype=torch.long)
    mask[0, 0] = 255
    first, second = instance_targets(masks, labels, 1, mask)
    assert first.masks.dtype == torch.float32 and first.labels.dtype == torch.int64
    assert first.valid.sum() == 12 and second.valid.all() and second.masks.shape == (0, 4, 4)
    assert instance_targets(masks, labels, 1)[0].valid.all()
    with pytest.raises(ValueError, match="outside 0..0"):
        instance_targets(masks, [torch.tensor([0, 1]), labels[1]], 1)
