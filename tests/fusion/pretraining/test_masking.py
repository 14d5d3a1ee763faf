import pytest
import torch

from fusion.pretraining.masking import (
    sample_patch_dropout,
    sample_visible_tokens,
    split_token_count,
)


def test_visible_count_is_exact_per_sample() -> None:
    torch.manual_seed(0)
    present = torch.tensor(
        [[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0]], dtype=torch.bool
    ).repeat(50, 1)
    visible = sample_visible_tokens(present, num_positions=64, visible_fraction=0.5)
    assert visible.shape == (200, 4, 64)
    counts = visible.sum(dim=(1, 2))
    expected = (present.sum(1) * 64 * 0.5).round().long()
    assert torch.equal(counts, expected)
    # Absent modalities get nothing.
    assert not visible[~present].any()


def test_rounding_of_odd_totals() -> None:
    torch.manual_seed(1)
    present = torch.ones(300, 3, dtype=torch.bool)
    visible = sample_visible_tokens(present, num_positions=7, visible_fraction=0.3)
    assert (visible.sum(dim=(1, 2)) == round(0.3 * 21)).all()


def test_mean_share_is_uniform_over_modalities() -> None:
    torch.manual_seed(2)
    present = torch.ones(4000, 4, dtype=torch.bool)
    visible = sample_visible_tokens(present, num_positions=256, visible_fraction=0.5)
    share = visible.sum(-1).float() / 512
    assert torch.allclose(share.mean(0), torch.full((4,), 0.25), atol=0.01)
    # Dirichlet(1) shares are spread out, not all equal: a Beta(1, 3) share has variance
    # 0.0375, lowered to about 0.025 by the cap at 256 of the 512 tokens (share <= 1/2).
    assert 0.02 < float(share.var(0).mean()) < 0.032


def test_positions_are_uniform_within_a_modality() -> None:
    torch.manual_seed(3)
    present = torch.ones(3000, 2, dtype=torch.bool)
    visible = sample_visible_tokens(present, num_positions=16, visible_fraction=0.5)
    rate = visible.float().mean(0)  # [2, 16]: each position visible half the time
    assert torch.allclose(rate, torch.full_like(rate, 0.5), atol=0.05)


def test_surplus_goes_to_the_other_modalities() -> None:
    counts = split_token_count(460, torch.tensor([0.9, 0.1, 0.0]), capacity=256)
    assert counts.tolist() == [256, 204, 0]
    counts = split_token_count(10, torch.tensor([1.0, 1.0, 1.0]), capacity=4)
    assert counts.tolist() == [4, 3, 3] or sorted(counts.tolist()) == [3, 3, 4]
    assert int(split_token_count(768, torch.tensor([5.0, 1e-9, 1.0]), 256).min()) == 256


def test_high_fraction_with_few_modalities() -> None:
    torch.manual_seed(4)
    present = torch.tensor([[1, 1]], dtype=torch.bool).repeat(500, 1)
    visible = sample_visible_tokens(present, num_positions=10, visible_fraction=0.9)
    assert (visible.sum(dim=(1, 2)) == 18).all() and (visible.sum(-1) >= 8).all()


def test_fraction_must_be_positive() -> None:
    with pytest.raises(ValueError, match="visible_fraction"):
        sample_visible_tokens(torch.ones(1, 2, dtype=torch.bool), 4, visible_fraction=0.0)
    with pytest.raises(ValueError, match="do not fit"):
        split_token_count(9, torch.tensor([1.0, 1.0]), capacity=4)


def test_only_tokens_with_data_are_visible() -> None:
    torch.manual_seed(5)
    present = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool).repeat(100, 1)
    available = torch.rand(200, 3, 16) < 0.6
    available[:, 2, :] = False  # a present modality without any token of data
    available[::2, 2, :5] = True
    visible = sample_visible_tokens(present, 16, visible_fraction=0.5, available=available)
    assert not (visible & ~available).any() and not visible[~present].any()
    usable = available & present[..., None]
    expected = (usable.sum((1, 2)) * 0.5).round().long()
    assert torch.equal(visible.sum((1, 2)), expected)
    # Everything available is shown at fraction 1.
    full = sample_visible_tokens(present, 16, visible_fraction=1.0, available=available)
    assert torch.equal(full, usable)


def test_per_modality_capacity() -> None:
    counts = split_token_count(7, torch.tensor([1.0, 1.0, 1.0]), torch.tensor([1, 0, 8]))
    assert counts.tolist() == [1, 0, 6]
    with pytest.raises(ValueError, match="do not fit"):
        split_token_count(10, torch.tensor([1.0, 1.0]), torch.tensor([4, 5]))


def test_patch_dropout_dirichlet_keeps_a_fixed_count_per_sample() -> None:
    torch.manual_seed(0)
    present = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.bool).repeat(40, 1)
    kept = sample_patch_dropout(present, 16, 0.25, "dirichlet", alpha=1.0)
    assert kept.shape == (120, 3, 16)
    assert kept.sum(dim=(1, 2)).eq(24).all()  # 3/4 of 2 x 16 in every sample: no padding
    assert not kept[~present].any()
    per_modality = kept.sum(-1)[present].float()
    assert per_modality.std() > 2  # Dirichlet shares vary between samples and modalities


def test_patch_dropout_equal_keeps_the_share_of_each_modality() -> None:
    torch.manual_seed(0)
    present = torch.tensor([[True, False], [True, True]])
    kept = sample_patch_dropout(present, 16, 0.25, "equal")
    assert kept.sum(-1).tolist() == [[12, 0], [12, 12]]
    assert not torch.equal(kept[1, 0], kept[1, 1])
    available = torch.ones(2, 2, 16, dtype=torch.bool)
    available[1, 1, :8] = False
    kept = sample_patch_dropout(present, 16, 0.25, "equal", available=available)
    assert not kept[1, 1, :8].any()
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        sample_patch_dropout(present, 16, 1.0)
    with pytest.raises(ValueError, match="shares"):
        sample_patch_dropout(present, 16, 0.5, "uniform")


def test_a_sample_with_data_keeps_at_least_one_token() -> None:
    present = torch.tensor([[True, False]])
    available = torch.zeros(1, 2, 4, dtype=torch.bool)
    available[0, 0, 2] = True  # one token with data: 0.5 of it rounds to 0
    kept = sample_patch_dropout(present, 4, 0.5, "dirichlet", available=available)
    assert kept.sum() == 1 and kept[0, 0, 2]
