"""Evaluation of one model over every modality subset (the paper's Tables I to IV)."""

from fusion.evaluation.subsets import (
    SubsetResult,
    evaluate_subsets,
    subsets_in_table_order,
    write_subset_tables,
)

__all__ = ["SubsetResult", "evaluate_subsets", "subsets_in_table_order", "write_subset_tables"]
