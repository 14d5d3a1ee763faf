"""Tiny DFC2023 Track 2 triplets in the contest layout (run directly to write ./dfc2023)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from tests.data.geotiff import write_tif

SPLITS = ("train", "val", "test")


def building_polygon(x: int, y: int, w: int, h: int) -> list[float]:
    """Axis-aligned rectangle as a COCO polygon covering pixels [x, x+w) x [y, y+h)."""
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def write_dfc2023(
    root: Path,
    size: int = 64,
    tiles_per_split: int = 3,
    seed: int = 0,
    category_id: int = 1,
    first_image_id: int = 1,
) -> Path:
    """Write ``tiles_per_split`` tiles per split with 0..3 rectangular buildings each.

    Tile ``t`` holds ``t % 4`` buildings; its COCO image id is ``first_image_id + t`` and the
    buildings' category id ``category_id`` (the contest's files use 1 for both starts).
    """
    rng = np.random.default_rng(seed)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    annotation_id = 1
    for split in SPLITS:
        images, annotations = [], []
        for t in range(tiles_per_split):
            name = f"P{t:04d}.tif"
            height = np.zeros((size, size), dtype=np.float32)
            for b in range(t % 4):
                x, y = 4 + 18 * b, 6 + 5 * b
                w, h = 12, 10 + b
                height[y : y + h, x : x + w] = 10.0 + b
                annotations.append(
                    {
                        "id": annotation_id,
                        "image_id": first_image_id + t,
                        "category_id": category_id,
                        "segmentation": [building_polygon(x, y, w, h)],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
                annotation_id += 1
            image = {"id": first_image_id + t, "file_name": name, "width": size, "height": size}
            images.append(image)
            origin = (300000.0 + 100 * t, 4000000.0)
            rgb = rng.integers(0, 256, (3, size, size)).astype(np.uint8)
            sar = rng.gamma(1.0, 0.05, (1, size, size)).astype(np.float32)
            for folder, data in (("rgb", rgb), ("sar", sar), ("height", height)):
                write_tif(root / split / folder / name, data, origin=origin, pixel=0.5)
        coco = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": category_id, "name": "building", "supercategory": "building"}],
        }
        (root / "annotations" / f"buildings_only_{split}.json").write_text(json.dumps(coco))
    return root


if __name__ == "__main__":
    print(write_dfc2023(Path(sys.argv[1] if len(sys.argv) > 1 else "dfc2023")))
