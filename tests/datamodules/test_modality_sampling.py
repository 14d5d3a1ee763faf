from collections import Counter

import pytest
import torch

from datamodules.modality_sampling import (
    FixedSubset,
    IndependentDrop,
    UniformSubsets,
    all_subsets,
    check_modalities,
    make_modality_sampler,
)

MODALITIES = ("s1", "s2", "dem", "dnw")


def test_uniform_over_all_nonempty_subsets() -> None:
    torch.manual_seed(1)
    sampler = UniformSubsets(MODALITIES)
    draws = 30_000
    counts = Counter(sampler.sample() for _ in range(draws))
    assert len(counts) == 2 ** len(MODALITIES) - 1
    assert (False,) * 4 not in counts
    expected = draws / 15
    # Binomial standard deviation is about 42 here; 5 sigma.
    assert all(abs(c - expected) < 5 * (expected * (1 - 1 / 15)) ** 0.5 for c in counts.values())
    # Chi-square with 14 degrees of freedom: P(X > 36.1) = 0.001.
    chi2 = sum((c - expected) ** 2 / expected for c in counts.values())
    assert chi2 < 36.1


def test_independent_drop_rates_and_never_empty() -> None:
    torch.manual_seed(2)
    sampler = IndependentDrop(MODALITIES, {"s1": 0.5, "dem": 0.2})
    draws = [sampler.sample() for _ in range(20_000)]
    assert all(any(d) for d in draws)
    kept = torch.tensor(draws, dtype=torch.float).mean(0)
    # s2 and dnw are never dropped, so the empty-set redraw never triggers.
    assert kept[1] == 1 and kept[3] == 1
    assert abs(kept[0] - 0.5) < 0.02 and abs(kept[2] - 0.8) < 0.02


def test_fixed_subset_and_specs() -> None:
    assert FixedSubset(MODALITIES, ["dnw", "s1"]).sample() == (True, False, False, True)
    assert make_modality_sampler("all", MODALITIES).sample() == (True,) * 4
    assert make_modality_sampler("s2", MODALITIES).sample() == (False, True, False, False)
    assert isinstance(make_modality_sampler(0.3, MODALITIES), IndependentDrop)
    assert isinstance(make_modality_sampler("uniform", MODALITIES), UniformSubsets)


@pytest.mark.parametrize(
    ("spec", "message"),
    [([], "empty"), (["s3"], "Unknown modality"), ("sometimes", "Unknown modality sampling")],
)
def test_bad_specs_are_named(spec, message) -> None:
    with pytest.raises(ValueError, match=message):
        make_modality_sampler(spec, MODALITIES)


def test_drop_probability_must_be_below_one() -> None:
    with pytest.raises(ValueError, match="'s1'"):
        IndependentDrop(MODALITIES, {"s1": 1.0})


def test_check_modalities_rejects_repeats() -> None:
    with pytest.raises(ValueError, match="repeat"):
        check_modalities(["s1", "s1"], MODALITIES)


def test_all_subsets() -> None:
    subsets = all_subsets(MODALITIES)
    assert len(subsets) == 15 and len(set(subsets)) == 15
    assert subsets[0] == MODALITIES and subsets[-1] == ("dnw",)
