"""How much each modality contributes: exact Shapley values and pairwise interactions.

A subset table gives a score v(S) for every non-empty modality subset S; with the score of the
empty subset (a trivial predictor that sees no input, see `fusion.evaluation.command`) it is a
cooperative game over the M modalities. The Shapley value of modality i is its marginal
contribution averaged over all orders in which modalities can be added:

    phi_i = sum over S not containing i of |S|! (M - |S| - 1)! / M! * (v(S + i) - v(S))

and the values add up to v(all) - v(empty) (efficiency). The Shapley interaction index of a
pair (i, j) averages how much more (positive) or less (negative) the two add together than
apart:

    I_ij = sum over S without i, j of |S|! (M - |S| - 2)! / (M - 1)! *
           (v(S + i + j) - v(S + i) - v(S + j) + v(S))

With M <= 5 modalities the sums run over at most 16 subsets, so both are exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from math import factorial
from pathlib import Path

import numpy as np


def _game(
    scores: Mapping[frozenset[str], float], players: Sequence[str], empty_score: float
) -> dict[frozenset[str], float]:
    game = {frozenset(): float(empty_score)}
    for size in range(1, len(players) + 1):
        for subset in itertools.combinations(players, size):
            key = frozenset(subset)
            if key not in scores:
                raise ValueError(f"the table has no score for the subset {sorted(key)}")
            game[key] = float(scores[key])
    return game


def shapley_values(
    scores: Mapping[frozenset[str], float], players: Sequence[str], empty_score: float = 0.0
) -> dict[str, float]:
    """Exact Shapley value of every modality.

    Args:
        scores: Score of every non-empty subset of ``players``, keyed by frozenset of names.
        players: The modalities.
        empty_score: Score of the empty subset (the trivial predictor).

    Returns:
        Modality -> Shapley value; the values sum to ``v(all) - empty_score``.

    Raises:
        ValueError: If a subset's score is missing.
    """
    game = _game(scores, players, empty_score)
    count = len(players)
    values = {}
    for player in players:
        others = [p for p in players if p != player]
        total = 0.0
        for size in range(count):
            weight = factorial(size) * factorial(count - size - 1) / factorial(count)
            for subset in itertools.combinations(others, size):
                base = frozenset(subset)
                total += weight * (game[base | {player}] - game[base])
        values[player] = total
    return values


def interaction_indices(
    scores: Mapping[frozenset[str], float], players: Sequence[str], empty_score: float = 0.0
) -> dict[tuple[str, str], float]:
    """Shapley interaction index of every pair of modalities.

    Args:
        scores: Score of every non-empty subset of ``players``, keyed by frozenset of names.
        players: The modalities.
        empty_score: Score of the empty subset.

    Returns:
        ``(i, j)`` (in ``players`` order) -> interaction; positive when the pair adds more
        together than apart.
    """
    game = _game(scores, players, empty_score)
    count = len(players)
    indices = {}
    for first, second in itertools.combinations(players, 2):
        others = [p for p in players if p not in (first, second)]
        total = 0.0
        for size in range(count - 1):
            weight = factorial(size) * factorial(count - size - 2) / factorial(count - 1)
            for subset in itertools.combinations(others, size):
                base = frozenset(subset)
                total += weight * (
                    game[base | {first, second}]
                    - game[base | {first}]
                    - game[base | {second}]
                    + game[base]
                )
        indices[(first, second)] = total
    return indices


def contributions_text(
    values: Mapping[str, float], interactions: Mapping[tuple[str, str], float], metric: str
) -> str:
    """A Markdown summary: Shapley values (largest first) and the pairwise interactions."""
    lines = [f"Shapley values of {metric} (sum = v(all) - v(empty)):", ""]
    lines += ["| modality | Shapley value |", "|---|---|"]
    for name, value in sorted(values.items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {value:+.3f} |")
    lines += ["", f"Pairwise Shapley interaction indices of {metric}:", ""]
    lines += ["| pair | interaction |", "|---|---|"]
    for (first, second), value in interactions.items():
        lines.append(f"| {first} + {second} | {value:+.3f} |")
    return "\n".join(lines) + "\n"


def plot_contributions(
    values: Mapping[str, float],
    interactions: Mapping[tuple[str, str], float],
    path: str | Path,
    metric: str,
) -> None:
    """Bar chart of the Shapley values beside a matrix of the pairwise interactions."""
    from matplotlib.figure import Figure

    names = list(values)
    matrix = np.zeros((len(names), len(names)))
    for (first, second), value in interactions.items():
        i, j = names.index(first), names.index(second)
        matrix[i, j] = matrix[j, i] = value
    figure = Figure(figsize=(9, 3.6))
    bars, grid = figure.subplots(1, 2)
    bars.bar(names, [values[name] for name in names], color="tab:blue")
    bars.axhline(0, color="black", linewidth=0.8)
    bars.set_title(f"Shapley value ({metric})")
    limit = max(1e-6, float(np.abs(matrix).max()))
    image = grid.imshow(matrix, cmap="RdBu", vmin=-limit, vmax=limit)
    grid.set_xticks(range(len(names)), names)
    grid.set_yticks(range(len(names)), names)
    for i, j in itertools.product(range(len(names)), repeat=2):
        if i != j:
            grid.text(j, i, f"{matrix[i, j]:+.3f}", ha="center", va="center", fontsize=8)
    grid.set_title("pairwise interaction")
    figure.colorbar(image, ax=grid, shrink=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
