"""Procedurally generated stand-ins for the paper's two datasets, in their real on-disk layouts.

`write_quadruplets` writes Sentinel-1 / Sentinel-2 / DEM / Dynamic World tiles with
UrbanAtlas labels for fourteen invented regions (``synthetic_<city>``), `write_dfc2023`
writes RGB / SAR / nDSM tiles with COCO building polygons. The scenes are procedural (terrain,
rivers, towns, fields, buildings with shadows and radar layover), not noise, and each modality
carries a different part of the truth, so that modality subsets differ in accuracy as they do in
the paper. Generation is deterministic for a seed and takes seconds; a stamp file makes it
idempotent. Command line: ``python -m datamodules.synthetic --root data``.
"""

from datamodules.synthetic.dfc2023 import write_dfc2023
from datamodules.synthetic.quadruplets import write_quadruplets

__all__ = ["write_dfc2023", "write_quadruplets"]
