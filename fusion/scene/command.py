"""``fusion predict-scene``: a segmentation model and rasters per modality in, maps out.

    fusion predict-scene --ckpt_path runs/.../checkpoints/last.ckpt \
        --s1 scene_s1.tif --s2 tile_a.tif tile_b.tif --out maps/scene.tif \
        [--reference s2] [--probabilities [float32|uint8]] [--modality_map] [--overwrite] \
        [--bounds LEFT BOTTOM RIGHT TOP] [--resolution R] [--polygons gpkg|fgb|geojson]

Give ``--<modality> PATH [PATH ...]`` per available modality, named as in the checkpoint
(several files are mosaicked; GDAL paths such as ``/vsicurl/https://...`` work); any
non-empty subset works, in any CRS and resolution. The maps lie on the grid of the first given
modality (``--reference`` to choose another). See `fusion.scene.predict` for the steps and
`fusion.scene.outputs` for the files written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fusion.run.model_file import add_checkpoint_options
from fusion.scene.pipeline import load_scene_model
from fusion.scene.predict import SceneResult, predict_scene


def build_parser() -> argparse.ArgumentParser:
    """The options other than the modality rasters."""
    parser = argparse.ArgumentParser(
        prog="fusion predict-scene",
        description=__doc__.splitlines()[0],
        epilog="--<modality> PATH: a raster of that modality (e.g. --s1 s1.tif --s2 s2.tif).",
        allow_abbrev=False,
    )
    add_checkpoint_options(parser, "segmentation checkpoint, or a model folder of `fusion export`")
    parser.add_argument("--out", type=Path, required=True, help="class map to write (.tif)")
    parser.add_argument(
        "--reference", default=None, help="modality whose grid the maps use (default: first)"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the run's config.yaml (default: the one beside the checkpoint's folder)",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=None,
        help="model pixels per reference pixel (default: image_size / tile_size of the run)",
    )
    parser.add_argument(
        "--tile_size", "--tile-size", type=int, default=None,
        help="tile side in model pixels (default: the model's img_size)",
    )  # fmt: skip
    parser.add_argument(
        "--overlap", type=float, default=0.5, help="share of a tile shared with the next one"
    )
    parser.add_argument(
        "--batch_size", "--batch-size", type=int, default=None,
        help="tiles per forward pass (default: sized to the device)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int, default=None,
        help="loader processes reading tiles while the model runs (default: from the CPUs)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="cpu, cuda, ... (default: auto)")
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "32-true", "bf16-mixed", "16-mixed"),
        help="autocast of the model (default: what training would use on the device)",
    )
    parser.add_argument(
        "--bounds", type=float, nargs=4, default=None,
        metavar=("LEFT", "BOTTOM", "RIGHT", "TOP"),
        help="predict this box only (reference CRS units)",
    )  # fmt: skip
    parser.add_argument(
        "--resolution", type=float, default=None,
        help="pixel size of the written maps, reference CRS units (model runs at the reference's)",
    )  # fmt: skip
    parser.add_argument(
        "--polygons", choices=("gpkg", "fgb", "geojson"), default="gpkg",
        help="polygon file format of instance models (geojson: WGS84 lon/lat)",
    )  # fmt: skip
    parser.add_argument(
        "--probabilities",
        nargs="?",
        const="float32",
        choices=("float32", "uint8"),
        default=None,
        help="also write per-class probabilities (float32, or uint8 percent)",
    )
    parser.add_argument(
        "--modality_map", "--modality-map", action="store_true",
        help="also write the per-pixel bit-map of the modalities used",
    )  # fmt: skip
    parser.add_argument(
        "--no_quicklook", "--no-quicklook", action="store_true", help="skip the PNG quick-look"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def modality_rasters(rest: list[str], names: tuple[str, ...]) -> dict[str, list[str]]:
    """``--<modality> PATH [PATH ...]`` in command-line order; several paths are mosaicked.

    A modality may also be repeated (``--s2 a.tif --s2 b.tif``). Paths are kept as given
    (strings), so that GDAL paths such as ``/vsicurl/https://...`` reach GDAL unchanged.

    Raises:
        ValueError: for a modality the checkpoint does not know, a missing path or an
            argument that is not an option.
    """
    rasters: dict[str, list[str]] = {}
    tokens = list(rest)
    while tokens:
        token = tokens.pop(0)
        if not token.startswith("--"):
            raise ValueError(f"unexpected argument {token!r}")
        name, _, value = token[2:].partition("=")
        if name not in names:
            raise ValueError(
                f"modality {name!r} is not one of the checkpoint's modalities ({', '.join(names)})"
            )
        values = [value] if value else []
        while tokens and not tokens[0].startswith("--"):
            values.append(tokens.pop(0))
        if not values:
            raise ValueError(f"--{name} needs a raster path")
        rasters.setdefault(name, []).extend(values)
    return rasters


def main(argv: list[str]) -> SceneResult:
    """Run the command; ``argv`` without the leading ``predict-scene``."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    model = load_scene_model(
        args.ckpt_path,
        args.config,
        args.scale,
        args.tile_size,
        args.device,
        trust=args.trust_checkpoint,
        precision=args.precision,
    )
    rasters = modality_rasters(rest, model.modality_names)
    result = predict_scene(
        model,
        rasters,
        args.out,
        reference=args.reference,
        overlap=args.overlap,
        batch_size=args.batch_size,
        probabilities=args.probabilities,
        modality_map=args.modality_map,
        quicklook=not args.no_quicklook,
        overwrite=args.overwrite,
        progress=not args.quiet,
        workers=args.workers,
        bounds=args.bounds,
        resolution=args.resolution,
        polygon_format=args.polygons,
    )
    subsets = ", ".join(f"{' + '.join(s)}: {n}" for s, n in sorted(result.subsets.items()))
    print(
        f"{result.predicted} of {result.tiles} tiles predicted in {result.seconds:.1f} s "
        f"({subsets or 'none'}); data pipeline: {model.source}, scale {model.scale:g}, "
        f"{model.precision} on {model.device}, batch {result.batch_size}, "
        f"{result.workers} loader worker(s)"
    )
    print("Wrote " + ", ".join(str(path) for path in result.paths.all()))
    return result
