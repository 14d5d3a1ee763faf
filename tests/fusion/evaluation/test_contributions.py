import itertools
from pathlib import Path

import pytest

from fusion.evaluation.contributions import (
    contributions_text,
    interaction_indices,
    plot_contributions,
    shapley_values,
)

PLAYERS = ("a", "b", "c")


def table(value) -> dict[frozenset[str], float]:
    return {
        frozenset(subset): value(set(subset))
        for size in range(1, 4)
        for subset in itertools.combinations(PLAYERS, size)
    }


def test_additive_game_gives_each_its_weight_and_no_interaction() -> None:
    weights = {"a": 0.5, "b": 0.2, "c": -0.1}
    scores = table(lambda s: 0.1 + sum(weights[p] for p in s))
    values = shapley_values(scores, PLAYERS, empty_score=0.1)
    assert values == pytest.approx(weights)
    assert all(v == pytest.approx(0) for v in interaction_indices(scores, PLAYERS, 0.1).values())


def test_hand_computed_game() -> None:
    # v: a=1, b=0, c=0, ab=3, ac=1, bc=0, abc=4, empty=0.
    values = {"a": 1, "b": 0, "c": 0, "ab": 3, "ac": 1, "bc": 0, "abc": 4}
    scores = table(lambda s: values["".join(sorted(s))])
    phi = shapley_values(scores, PLAYERS)
    # phi_a = 1/3*(1-0) + 1/6*(3-0) + 1/6*(1-0) + 1/3*(4-0) = 1/3 + 1/2 + 1/6 + 4/3 = 7/3
    # phi_b = 1/3*0 + 1/6*(3-1) + 1/6*0 + 1/3*(4-1) = 1/3 + 1 = 4/3
    # phi_c = 1/3*0 + 1/6*(1-1) + 1/6*0 + 1/3*(4-3) = 1/3
    assert phi == pytest.approx({"a": 7 / 3, "b": 4 / 3, "c": 1 / 3})
    assert sum(phi.values()) == pytest.approx(scores[frozenset(PLAYERS)] - 0)  # efficiency
    pairs = interaction_indices(scores, PLAYERS)
    # I_ab = 1/2*(3-1-0+0) + 1/2*(4-1-0+0) = 2.5; I_ac = 1/2*(1-1-0) + 1/2*(4-3-0+0) = 0.5
    # I_bc = 1/2*(0-0-0+0) + 1/2*(4-3-1+1) = 0.5
    assert pairs == pytest.approx({("a", "b"): 2.5, ("a", "c"): 0.5, ("b", "c"): 0.5})


def test_efficiency_with_a_trivial_predictor_score() -> None:
    scores = table(lambda s: len(s) ** 2 / 10)
    phi = shapley_values(scores, PLAYERS, empty_score=0.05)
    assert sum(phi.values()) == pytest.approx(0.9 - 0.05)
    assert phi["a"] == pytest.approx(phi["b"]) == pytest.approx(phi["c"])  # symmetry


def test_missing_subset_is_named(tmp_path: Path) -> None:
    scores = table(lambda s: 1.0)
    del scores[frozenset({"a", "c"})]
    with pytest.raises(ValueError, match=r"\['a', 'c'\]"):
        shapley_values(scores, PLAYERS)


def test_text_and_plot(tmp_path: Path) -> None:
    scores = table(lambda s: len(s) / 3)
    values, pairs = shapley_values(scores, PLAYERS), interaction_indices(scores, PLAYERS)
    text = contributions_text(values, pairs, "mIoU")
    assert "| a | +0.333 |" in text and "| a + b | +0.000 |" in text
    plot_contributions(values, pairs, tmp_path / "c.png", "mIoU")
    assert (tmp_path / "c.png").stat().st_size > 1000
