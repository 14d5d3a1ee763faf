"""Per-pixel lookup of properties tabulated by UrbanAtlas code."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from datamodules.landcover import URBAN_ATLAS_CODES

CODE_ORDER: tuple[int, ...] = (0, *sorted(URBAN_ATLAS_CODES))
"""Row order of code tables: no data (0) first, then the UrbanAtlas codes ascending."""

_CODE_INDEX = np.zeros(max(CODE_ORDER) + 1, dtype=np.uint8)
_CODE_INDEX[list(CODE_ORDER)] = np.arange(len(CODE_ORDER))


def code_table(values: Mapping[int, Sequence[float]], default: Sequence[float]) -> np.ndarray:
    """Stack per-code values into a table indexed by `code_index`.

    Args:
        values: code -> values (same length for every code).
        default: values of the codes not listed.

    Returns:
        ``float32 [len(CODE_ORDER), len(default)]`` table.
    """
    return np.array([values.get(code, default) for code in CODE_ORDER], dtype=np.float32)


def code_index(codes: np.ndarray) -> np.ndarray:
    """Row of each pixel's code in a `code_table`.

    Args:
        codes: ``uint16 [H, W]`` UrbanAtlas codes (or 0).

    Returns:
        ``uint8 [H, W]`` table rows.
    """
    return _CODE_INDEX[codes]


def is_between(codes: np.ndarray, low: int, high: int) -> np.ndarray:
    """``bool`` mask of the codes in ``low <= code < high`` (an UrbanAtlas level: 11000..12000).

    Args:
        codes: UrbanAtlas codes, any shape.
        low: smallest code included.
        high: first code excluded.

    Returns:
        Boolean mask of the same shape.
    """
    return (codes >= low) & (codes < high)
