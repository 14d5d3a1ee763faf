"""MS COCO annotation files for the synthetic DFC2023 tiles (one category: building)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.synthetic.dfc2023.footprints import clip_to_image, polygon_area

CATEGORIES = [{"id": 1, "name": "building", "supercategory": "building"}]


@dataclass(frozen=True)
class TileAnnotations:
    """The image entry and building polygons of one tile, before ids are assigned.

    Attributes:
        file_name: bare file name, e.g. ``P0001.tif``.
        width: image width, pixels.
        height: image height, pixels.
        polygons: building footprints ``[N, 2]`` already clipped to the image.
    """

    file_name: str
    width: int
    height: int
    polygons: list[np.ndarray]


def visible_footprints(polygons: Sequence[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    """Clip footprints to the image, dropping those with fewer than 3 vertices left.

    Args:
        polygons: footprints ``[N, 2]`` in pixel coordinates, possibly beyond the image.
        width: image width.
        height: image height.

    Returns:
        The clipped footprints.
    """
    clipped = [clip_to_image(polygon, width, height) for polygon in polygons]
    return [polygon for polygon in clipped if len(polygon) >= 3]


def coco_document(tiles: Sequence[TileAnnotations], first_image_id: int = 1) -> dict[str, Any]:
    """Assemble a COCO instance-segmentation document.

    Image ids count up from ``first_image_id`` in tile order; annotation ids count up from 1
    and are unique within the document. ``area`` is the polygon's area and ``bbox`` its
    bounding box ``[x, y, width, height]``, both in pixels.

    Args:
        tiles: the tiles, in order.
        first_image_id: id of the first image.

    Returns:
        The document (``images``, ``annotations``, ``categories``).
    """
    images, annotations = [], []
    for image_id, tile in enumerate(tiles, start=first_image_id):
        images.append(
            {
                "id": image_id,
                "file_name": tile.file_name,
                "width": tile.width,
                "height": tile.height,
            }
        )
        for polygon in tile.polygons:
            x_min, y_min = polygon.min(axis=0)
            x_max, y_max = polygon.max(axis=0)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": 1,
                    "segmentation": [[round(float(v), 2) for v in polygon.ravel()]],
                    "bbox": [
                        round(float(v), 2) for v in (x_min, y_min, x_max - x_min, y_max - y_min)
                    ],
                    "area": round(polygon_area(polygon), 2),
                    "iscrowd": 0,
                }
            )
    return {"images": images, "annotations": annotations, "categories": CATEGORIES}


def write_coco(path: Path, document: dict[str, Any]) -> None:
    """Write a COCO document as compact JSON (folder created when missing).

    Args:
        path: output file.
        document: the document.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n")
