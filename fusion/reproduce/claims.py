"""The paper's claims checked against the result tables by a fixed rule (``claims.md``).

The rule: on one modality subset, column A is *above* column B when its mean over seeds
exceeds B's by more than the larger of the two standard deviations over seeds, *below* in the
opposite case, and *level* otherwise. Only columns that trained the same number of steps are
compared (a classical baseline, which trains nothing, with any column), and only with at least
two seeds each (one seed has no spread: "cannot tell"). A claim may also compare a column on
one subset with a column (itself included) on another, e.g. S1 + S2 against S1 alone. A
claim over several subsets counts the subsets above, level and below, and its verdict follows
from the counts alone, so prose about the results can quote the verdict and cannot outrun it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fusion.reproduce.runs import ProtocolRuns
from fusion.reproduce.tables import Cell, Column

EMPTY_TOLERANCE = 0.005
"""How close to the empty subset's score a mean counts as having learned nothing."""

RULE = (
    "A column is *above* another on a subset when its mean over seeds exceeds the other's by "
    "more than the larger of their two standard deviations over seeds, *below* in the "
    "opposite case, and *level* otherwise; only columns trained for the same number of steps "
    "are compared (a threshold baseline, which trains nothing, with any column), and only with "
    "two or more seeds each. Where both columns score the empty "
    f"subset's score (within {EMPTY_TOLERANCE}) on every subset compared, neither learned "
    "anything and the claim cannot be told."
)


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, as a comparison of two columns.

    Attributes:
        text: The claim.
        tables: The paper's tables it comes from.
        table: Which of our tables holds the columns (``table_main``, ``table_ablations``).
        first: Title of the column claimed better (or not worse).
        second: Title of the other column (may be ``first``, with ``against``).
        subsets: ``"complete"`` (all modalities), ``"incomplete"``, ``"all"``, or one subset
            as the tables name it (``"s1"``).
        kind: ``"above"`` (first better) or ``"not_below"`` (first at least as good).
        against: The subset of ``second`` that each subset of ``first`` is compared with;
            ``""`` compares like with like.
        datasets: The datasets the claim is made for; ``()`` for every dataset.
    """

    text: str
    tables: str
    table: str
    first: str
    second: str
    subsets: str
    kind: str
    against: str = ""
    datasets: tuple[str, ...] = ()


CLAIMS: tuple[Claim, ...] = (
    Claim("The proposed model beats MultiViT with complete inputs", "I, II", "table_main",
          "Sup. Proposed", "Sup. MultiViT", "complete", "above"),
    Claim("The proposed model beats MultiViT on incomplete inputs", "I, II", "table_main",
          "Sup. Proposed", "Sup. MultiViT", "incomplete", "above"),
    Claim("Random modality combination is needed for incomplete inputs", "III, IV",
          "table_ablations", "w/ all", "w/o Random", "incomplete", "above"),
    Claim("Random modality combination costs nothing on complete inputs", "III, IV",
          "table_ablations", "w/ all", "w/o Random", "complete", "not_below"),
    Claim("Modality attention helps", "III, IV", "table_ablations", "w/ all",
          "w/o Attention", "all", "above"),
    Claim("Masked self-attention helps on incomplete inputs", "III, IV", "table_ablations",
          "w/ all", "w/o Mask", "incomplete", "above"),
    Claim("Pretraining with contrastive alignment (G. & C.) beats reconstruction only (G.)",
          "I, II", "table_main", "Fine. w/ G. & C.", "Fine. w/ G.", "all", "above"),
    Claim("Fine-tuning after G. & C. pretraining is at least as good as training from scratch",
          "I, II", "table_main", "Fine. w/ G. & C.", "Sup. Proposed", "all", "not_below"),
    Claim("From S1 alone, the proposed model is at least as good as the -20 dB threshold",
          "goal", "table_main", "Sup. Proposed", "Threshold (-20 dB / NDWI 0)", "s1",
          "not_below", datasets=("sen1floods11_chips",)),
    Claim("With S1 + S2, the proposed model is at least as good as with S1 alone", "goal",
          "table_main", "Sup. Proposed", "Sup. Proposed", "s1+s2", "not_below", against="s1",
          datasets=("sen1floods11_chips",)),
    Claim("The proposed model is at least as good as MultiViT on every subset", "goal",
          "table_main", "Sup. Proposed", "Sup. MultiViT", "all", "not_below",
          datasets=("sen1floods11_chips",)),
)  # fmt: skip
"""The claims checked: the paper's, in the order of its text, then the project's goals for the
real chips ("goal": the water IoU a model should reach against a classical baseline and
against itself with fewer modalities)."""


def compare(first: Cell, second: Cell) -> str:
    """``"above"``, ``"below"`` or ``"level"`` by `RULE` (both cells with two seeds or more)."""
    margin = max(first.std, second.std)
    difference = first.mean - second.mean
    if difference > margin:
        return "above"
    if difference < -margin:
        return "below"
    return "level"


def verdict(claim: Claim, counts: Mapping[str, int]) -> str:
    """The verdict of a claim from its counts of subsets above, level and below."""
    above, level, below = counts["above"], counts["level"], counts["below"]
    total = above + level + below
    if claim.kind == "not_below":
        if below == 0:
            return "holds" + (f" ({above} of {total} above)" if above else "")
        return f"does not hold (below on {below} of {total})"
    if above == total:
        return "holds" + (f" on all {total}" if total > 1 else "")
    if below == 0 and above > 0:
        return f"holds on {above} of {total}, level on the rest"
    if above == 0 and below == 0:
        return "cannot be told apart (level)"
    if above == 0:
        return f"reversed (below on {below} of {total})"
    return f"mixed ({above} above, {below} below of {total})"


def subsets_of(claim: Claim, rows: Sequence[str]) -> list[str]:
    """The table rows a claim looks at (the complete set is the longest row)."""
    if not rows:
        return []
    complete = max(rows, key=lambda row: row.count("+"))
    if claim.subsets == "complete":
        return [complete]
    if claim.subsets == "incomplete":
        return [row for row in rows if row != complete]
    if claim.subsets == "all":
        return list(rows)
    return [row for row in rows if row == claim.subsets]


def trains(column: Column) -> bool:
    """Whether the column's runs trained (a baseline's did not: its steps compare with none)."""
    return column.stage.kind != "baseline"


def check_claim(
    claim: Claim, columns: Sequence[Column], empty: float | None = None
) -> tuple[str, str]:
    """The verdict and its evidence for one dataset's columns.

    Args:
        claim: The claim.
        columns: The columns of the table the claim reads.
        empty: The empty subset's score (the majority class everywhere), if known.

    Returns:
        ``(verdict, evidence)``, e.g. ``("holds on 9 of 14, level on the rest",
        "above 9, level 5, below 0")``.
    """
    by_title = {column.title: column for column in columns}
    first, second = by_title.get(claim.first), by_title.get(claim.second)
    if first is None or second is None:
        return "not in this protocol", ""
    if trains(first) and trains(second) and len(first.steps | second.steps) > 1:
        return "not comparable", f"steps {sorted(first.steps)} against {sorted(second.steps)}"
    if claim.against:  # each subset of the first column against one subset of the second
        if claim.against not in second.scores:
            return "cannot tell", "no finished runs"
        rows = subsets_of(claim, list(first.scores))
        pairs = [(r, claim.against) for r in rows]
    else:
        rows = subsets_of(claim, [r for r in first.scores if r in second.scores])
        pairs = [(r, r) for r in rows]
    cells = [(Cell.of(first.scores[a]), Cell.of(second.scores[b])) for a, b in pairs]
    if not cells:
        return "cannot tell", "no finished runs"
    if min(min(a.n, b.n) for a, b in cells) < 2:
        return "cannot tell", "fewer than two seeds"
    if empty is not None and all(
        abs(c.mean - empty) <= EMPTY_TOLERANCE for pair in cells for c in pair
    ):
        return "cannot tell", f"both columns at the empty subset's score {empty:.3f}"
    counts = {"above": 0, "level": 0, "below": 0}
    for a, b in cells:
        counts[compare(a, b)] += 1
    evidence = f"above {counts['above']}, level {counts['level']}, below {counts['below']}"
    if len(cells) == 1:
        a, b = cells[0]
        evidence += f" ({a.mean:.3f} ± {a.std:.3f} against {b.mean:.3f} ± {b.std:.3f})"
    else:
        mean_a = sum(a.mean for a, _ in cells) / len(cells)
        mean_b = sum(b.mean for _, b in cells) / len(cells)
        evidence += f"; means {mean_a:.3f} against {mean_b:.3f}"
    return verdict(claim, counts), evidence


def write_claims(
    protocol: ProtocolRuns,
    columns: Mapping[str, Mapping[str, Sequence[Column]]],
    empties: Mapping[str, float | None] | None = None,
) -> Path:
    """Writes ``claims.md``: every claim on every dataset of the run, with the rule.

    Args:
        protocol: The protocol (for the commit and the output folder).
        columns: Dataset -> table name -> its columns (`fusion.reproduce.tables`).
        empties: Dataset -> the empty subset's score, where known.

    Returns:
        The path written.
    """
    code = protocol.code
    lines = [
        f"Generated from the result tables of commit `{code['commit'][:10]}`"
        f"{' (uncommitted changes)' if code['dirty'] else ''} by `fusion/reproduce/claims.py`.",
        "",
        f"Rule: {RULE}",
        "",
        "| claim (paper's tables) | dataset | verdict | subsets above / level / below |",
        "|---|---|---|---|",
    ]
    for claim in CLAIMS:
        for dataset, tables in columns.items():
            if claim.datasets and dataset not in claim.datasets:
                continue
            empty = (empties or {}).get(dataset)
            result, evidence = check_claim(claim, tables.get(claim.table, []), empty)
            if result == "not in this protocol":
                continue
            lines.append(f"| {claim.text} ({claim.tables}) | {dataset} | {result} | {evidence} |")
    path = protocol.out_dir / "claims.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path
