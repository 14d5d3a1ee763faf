"""Cut a raster to part of its area, the rest no data: a modality that covers half a scene.

    python -m fusion.scene.cut S2.tif S2_left_half.tif [--keep left] [--fraction 0.5]

Keeps the ``--fraction`` of the columns (``left``/``right``) or rows (``top``/``bottom``) on
the kept side and sets every other pixel to the file's no-data value (NaN for floating-point
files without one; ``--nodata`` for integer files without one). The grid, bands and tags are
unchanged. Written strip by strip, so any size works.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
from rasterio.windows import Window

Side = Literal["left", "right", "top", "bottom"]


def cut_raster(
    source: str | Path,
    target: str | Path,
    keep: Side = "left",
    fraction: float = 0.5,
    nodata: float | None = None,
    strip: int = 256,
) -> Path:
    """Copy ``source`` to ``target`` with only one side's ``fraction`` holding data.

    Args:
        source: the raster to cut.
        target: the GeoTIFF to write.
        keep: the side kept.
        fraction: share of the columns (left/right) or rows (top/bottom) kept, in [0, 1].
        nodata: no-data value for a file without one (default: the file's, else NaN for
            floating-point data).
        strip: rows read and written at a time.

    Returns:
        ``target``.

    Raises:
        FileNotFoundError: if ``source`` does not exist.
        ValueError: for a bad side or fraction, or an integer file without a no-data value
            when none is given.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise FileNotFoundError(f"raster not found: {source}")
    if keep not in ("left", "right", "top", "bottom"):
        raise ValueError(f"keep must be left, right, top or bottom, got {keep!r}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    with rasterio.open(source) as src:
        profile = src.profile
        fill = src.nodata if src.nodata is not None else nodata
        if fill is None:
            if not np.issubdtype(np.dtype(src.dtypes[0]), np.floating):
                raise ValueError(f"{source} has no no-data value: pass nodata")
            fill = math.nan
        profile.update(nodata=fill)
        columns = round(src.width * fraction)
        rows = round(src.height * fraction)
        target.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(target, "w", **profile) as dst:
            dst.update_tags(**src.tags())
            for row in range(0, src.height, strip):
                window = Window(0, row, src.width, min(strip, src.height - row))
                data = src.read(window=window)
                line = np.arange(row, row + int(window.height))
                column = np.arange(src.width)
                drop = {
                    "left": np.broadcast_to(column >= columns, data.shape[1:]),
                    "right": np.broadcast_to(column < src.width - columns, data.shape[1:]),
                    "top": np.broadcast_to((line >= rows)[:, None], data.shape[1:]),
                    "bottom": np.broadcast_to((line < src.height - rows)[:, None], data.shape[1:]),
                }[keep]
                data[:, drop] = fill
                dst.write(data, window=window)
    return target


def main(argv: list[str] | None = None) -> Path:
    """Command line: cut one raster."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path)
    parser.add_argument("--keep", choices=("left", "right", "top", "bottom"), default="left")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--nodata", type=float, default=None)
    args = parser.parse_args(argv)
    path = cut_raster(args.source, args.target, args.keep, args.fraction, args.nodata)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
