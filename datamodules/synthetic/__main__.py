"""Write the embedded synthetic datasets: ``python -m datamodules.synthetic --root data``.

Each dataset is skipped when its folder's stamp shows it was generated with the same version,
seed and sizes; ``--force`` regenerates it anyway.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from datamodules.synthetic.dfc2023 import write_dfc2023
from datamodules.synthetic.quadruplets import write_quadruplets
from datamodules.synthetic.stamp import STAMP_FILE_NAME, read_stamp

WRITERS: dict[str, Callable[..., Path]] = {
    "quadruplets": write_quadruplets,
    "dfc2023": write_dfc2023,
}


def main(argv: list[str] | None = None) -> None:
    """Generate the requested datasets and print one line per dataset.

    Args:
        argv: command-line arguments (default: ``sys.argv[1:]``).
    """
    parser = argparse.ArgumentParser(description="Write the synthetic quadruplet and DFC2023 data.")
    parser.add_argument("--root", type=Path, default=Path("data"), help="data folder")
    parser.add_argument("--dataset", choices=[*WRITERS, "all"], default="all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    args = parser.parse_args(argv)
    names = list(WRITERS) if args.dataset == "all" else [args.dataset]
    for name in names:
        folder = args.root / name
        before = (folder / STAMP_FILE_NAME).stat().st_mtime_ns if read_stamp(folder) else None
        start = time.perf_counter()
        WRITERS[name](args.root, seed=args.seed, force=args.force, workers=args.workers)
        seconds = time.perf_counter() - start
        written = (folder / STAMP_FILE_NAME).stat().st_mtime_ns != before
        action = "wrote" if written else "skipped, up to date:"
        print(f"{name}: {action} {_summary(folder)} in {folder} ({seconds:.1f} s)")


def _summary(folder: Path) -> str:
    """Tile counts from a dataset folder's stamp."""
    stamp = read_stamp(folder) or {}
    if "tiles_per_region" in stamp:
        regions = len(stamp["regions"])
        total = regions * stamp["tiles_per_region"]
        return (
            f"{total} tiles ({regions} regions x {stamp['tiles_per_region']}, {stamp['size']} px)"
        )
    if "tiles_per_split" in stamp:
        counts = ", ".join(f"{split} {count}" for split, count in stamp["tiles_per_split"].items())
        return f"{sum(stamp['tiles_per_split'].values())} tiles ({counts}; {stamp['size']} px)"
    return "nothing"


if __name__ == "__main__":
    main()
