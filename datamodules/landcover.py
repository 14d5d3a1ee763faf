"""Class tables of the quadruplet dataset: UrbanAtlas 2018 labels and Dynamic World maps.

The quadruplet labels are UrbanAtlas 2018 codes (27 classes, five-digit codes such as ``11100``).
The paper merges them into seven classes; the merge below follows the UrbanAtlas hierarchy:
level 1.1 (urban fabric), levels 1.2 + 1.3 (other artificial surfaces), level 1.4 (artificial
vegetated areas), level 2 (agriculture), 3.1 (forest), 3.2 + 3.3 (herbaceous and open land), and
levels 4 + 5 (wetlands and water). Codes outside the table map to `IGNORE_INDEX`.
"""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255
"""Label value excluded from losses and metrics, in every dataset of this package."""

LANDCOVER_CLASSES: tuple[str, ...] = (
    "urban_fabric",
    "industrial_commercial_transport",
    "urban_green_leisure",
    "agriculture",
    "forest",
    "herbaceous_open",
    "water_wetlands",
)
"""The seven merged land-cover classes, in label order 0..6."""

URBAN_ATLAS_CODES: dict[int, tuple[str, int]] = {
    11100: ("Continuous urban fabric (S.L. > 80%)", 0),
    11210: ("Discontinuous dense urban fabric (S.L. 50%-80%)", 0),
    11220: ("Discontinuous medium density urban fabric (S.L. 30%-50%)", 0),
    11230: ("Discontinuous low density urban fabric (S.L. 10%-30%)", 0),
    11240: ("Discontinuous very low density urban fabric (S.L. < 10%)", 0),
    11300: ("Isolated structures", 0),
    12100: ("Industrial, commercial, public, military and private units", 1),
    12210: ("Fast transit roads and associated land", 1),
    12220: ("Other roads and associated land", 1),
    12230: ("Railways and associated land", 1),
    12300: ("Port areas", 1),
    12400: ("Airports", 1),
    13100: ("Mineral extraction and dump sites", 1),
    13300: ("Construction sites", 1),
    13400: ("Land without current use", 1),
    14100: ("Green urban areas", 2),
    14200: ("Sports and leisure facilities", 2),
    21000: ("Arable land (annual crops)", 3),
    22000: ("Permanent crops (vineyards, fruit trees, olive groves)", 3),
    23000: ("Pastures", 3),
    24000: ("Complex and mixed cultivation patterns", 3),
    25000: ("Orchards at the fringe of urban classes", 3),
    31000: ("Forests", 4),
    32000: ("Herbaceous vegetation associations (natural grassland, moors...)", 5),
    33000: ("Open spaces with little or no vegetation (beaches, dunes, bare rocks, glaciers)", 5),
    40000: ("Wetlands", 6),
    50000: ("Water", 6),
}
"""UrbanAtlas 2018 code -> (name, merged class index)."""

DYNAMIC_WORLD_CLASSES: tuple[str, ...] = (
    "water",
    "trees",
    "grass",
    "flooded_vegetation",
    "crops",
    "shrub_and_scrub",
    "built",
    "bare",
    "snow_and_ice",
)
"""Dynamic World V1 ``label`` band values 0..8."""


def urban_atlas_to_classes(codes: np.ndarray) -> np.ndarray:
    """Map UrbanAtlas 2018 codes to the seven merged classes.

    Args:
        codes: integer array of UrbanAtlas codes, any shape.

    Returns:
        ``uint8`` array of the same shape with values 0..6, and `IGNORE_INDEX` where the
        code is not in `URBAN_ATLAS_CODES` (no data, unmapped classes).
    """
    table_codes = np.fromiter(URBAN_ATLAS_CODES, dtype=np.int64)
    table_classes = np.array([c for _, c in URBAN_ATLAS_CODES.values()], dtype=np.uint8)
    order = np.argsort(table_codes)
    table_codes, table_classes = table_codes[order], table_classes[order]
    flat = codes.astype(np.int64, copy=False).ravel()
    where = np.clip(np.searchsorted(table_codes, flat), 0, len(table_codes) - 1)
    known = table_codes[where] == flat
    out = np.where(known, table_classes[where], np.uint8(IGNORE_INDEX)).astype(np.uint8)
    return out.reshape(codes.shape)
