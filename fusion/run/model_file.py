"""Model files that are safe to share, and checkpoints loaded without running their code.

A Lightning checkpoint is a pickle. ``torch.load(..., weights_only=False)`` on a file from
someone else can run any code the file's author chose. Two rules keep that from happening:

* `load_checkpoint` reads checkpoints with ``weights_only=True``: tensors, numbers,
  strings and plain containers only, which is all our own checkpoints hold. A file that needs
  more is refused with `UnsafeCheckpointError`, which says why and how to load it anyway
  (``trust=True``, on the command line ``--trust_checkpoint``) for a file you made yourself.
* ``fusion export`` (`export_model`) writes a model as a folder with the weights in
  safetensors (``model.safetensors``: raw tensors, nothing to execute) and everything else in
  a JSON card (``card.json``): the task and its hyper-parameters (architecture, variant,
  modalities), the data pipeline that trained it (DataModule, band order, units, no-data values,
  normalization statistics, classes, tile and image size, hence the scale), the checkpoint's
  monitored metric and the commit. `load_checkpoint` reads such a folder too, so
  ``predict-scene``, ``evaluate`` and ``pretrained:`` accept it, and it never unpickles.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import pickle
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from safetensors.torch import load_file, save_file

if TYPE_CHECKING:
    from datamodules.datamodule import MultimodalDataModule

WEIGHTS_FILE = "model.safetensors"
"""The exported weights, inside the model folder."""

CARD_FILE = "card.json"
"""The exported model card, inside the model folder."""

CARD_FORMAT = 1
"""Version of the card's layout."""


class UnsafeCheckpointError(ValueError):
    """A checkpoint that only unpickling could load, refused because that can run code."""


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` is an exported model (a folder with a card and safetensors weights)."""
    path = Path(path)
    return path.is_dir() and (path / CARD_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def load_checkpoint(path: str | Path, trust: bool = False) -> dict[str, Any]:
    """A checkpoint's contents, or an exported model's in the same shape, never unpickled.

    Args:
        path: a Lightning checkpoint file, or a folder written by `export_model`.
        trust: load a checkpoint that needs unpickling anyway (only for files you trust).

    Returns:
        A mapping with at least ``state_dict`` and ``hyper_parameters``; an exported model adds
        its ``card`` (and the card's ``data`` section under ``data``).

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        UnsafeCheckpointError: if the checkpoint holds objects that only unpickling restores
            and ``trust`` is False.
        ValueError: for a folder that is not an exported model, an unreadable card, or a file
            that is not a PyTorch checkpoint (or a damaged one).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if not is_model_folder(path):
            raise ValueError(f"{path} is a folder without {CARD_FILE} and {WEIGHTS_FILE}")
        card = read_card(path)
        return {
            "state_dict": load_file(path / WEIGHTS_FILE),
            "hyper_parameters": dict(card["hyper_parameters"]),
            "data": card.get("data"),
            "card": card,
        }
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise ValueError(
            f"{path} is not a PyTorch checkpoint (not a zip archive: another kind of file, "
            f"a truncated download, or a checkpoint older than torch 1.6)"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, RuntimeError, OSError) as error:
        raise ValueError(f"{path} is a damaged or truncated checkpoint ({error})") from error
    except pickle.UnpicklingError as error:
        if not trust:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else "unknown"
            raise UnsafeCheckpointError(
                f"{path} holds Python objects that only unpickling can restore ({reason}); "
                "unpickling a file can run any code its author put in it. If you made this "
                "file yourself or trust its source, load it with --trust_checkpoint, or "
                "export it once (fusion export --trust_checkpoint) and share the export."
            ) from None
    return torch.load(path, map_location="cpu", weights_only=False)  # trusted by the user


def read_card(folder: Path) -> dict[str, Any]:
    """The JSON card of an exported model.

    Raises:
        ValueError: if it is not valid JSON, has an unknown format or lacks its task.
    """
    try:
        card = json.loads((folder / CARD_FILE).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{folder / CARD_FILE} is not valid JSON: {error}") from error
    if card.get("format") != CARD_FORMAT or "hyper_parameters" not in card:
        raise ValueError(
            f"{folder / CARD_FILE} is not a model card of format {CARD_FORMAT} "
            f"(format {card.get('format')!r})"
        )
    return card


def export_model(
    checkpoint_path: str | Path,
    out: str | Path,
    config: str | Path | None = None,
    trust: bool = False,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint as a shareable model folder (safetensors weights + JSON card).

    Args:
        checkpoint_path: the Lightning checkpoint.
        out: the folder to write (created).
        config: the run's ``config.yaml`` (default: the one ``fusion fit`` writes two folders
            up from the checkpoint, if it exists); its ``data`` section and the DataModule's
            statistics, bands and classes go into the card.
        trust: read a checkpoint that needs unpickling (see `load_checkpoint`).
        overwrite: replace an existing export in ``out``.

    Returns:
        The folder.

    Raises:
        FileExistsError: if ``out`` holds files and ``overwrite`` is False.
        ValueError: if the checkpoint has no hyper-parameters or they are not JSON data.
    """
    checkpoint_path, out = Path(checkpoint_path), Path(out)
    checkpoint = load_checkpoint(checkpoint_path, trust)
    if "card" in checkpoint:
        raise ValueError(f"{checkpoint_path} is already an exported model")
    hparams = checkpoint.get("hyper_parameters")
    if not hparams:
        raise ValueError(f"{checkpoint_path} has no hyper_parameters: not a task checkpoint")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} is not empty (pass overwrite to replace the export)")
    card = {
        "format": CARD_FORMAT,
        "task": hparams.get("_class_path", ""),
        "hyper_parameters": _json_data(hparams, "hyper_parameters"),
        "data": _data_card(checkpoint_path, config),
        "training": _training_card(checkpoint),
        "metrics": _metrics_card(checkpoint_path),
        "source_checkpoint": checkpoint_path.name,
        "commit": _commit(),
    }
    out.mkdir(parents=True, exist_ok=True)
    state = {key: value.contiguous() for key, value in checkpoint["state_dict"].items()}
    save_file(state, out / WEIGHTS_FILE, metadata={"format": str(CARD_FORMAT)})
    (out / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    return out


def _json_data(value: Any, where: str) -> Any:
    """``value`` as JSON data (tuples become lists); refuses anything else, naming where."""
    if isinstance(value, Mapping):
        return {str(k): _json_data(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ValueError(f"{where} holds a {type(value).__name__}, which a JSON card cannot keep")


def datamodule_from_section(data: Mapping[str, Any]) -> MultimodalDataModule:
    """The DataModule of a config's ``data`` section (``class_path``, ``init_args``); reads no data.

    Raises:
        ValueError: if the class cannot be imported.
    """
    module_name, _, class_name = data["class_path"].rpartition(".")
    try:
        datamodule_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"unknown DataModule {data['class_path']!r}: {error}") from error
    kwargs = dict(data.get("init_args") or {})
    kwargs["root"] = "."  # never read here, and where the run read its data may not exist here
    return datamodule_class(**kwargs)


def _data_card(checkpoint_path: Path, config: str | Path | None) -> dict[str, Any] | None:
    """The run's data section, with its DataModule's modalities, statistics and classes."""
    if config is None:
        beside = checkpoint_path.resolve().parent.parent / "config.yaml"
        config = beside if beside.is_file() else None
    if config is None:
        return None
    config = Path(config)
    if not config.is_file():
        raise FileNotFoundError(f"run config not found: {config}")
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    if "class_path" not in data:
        return None
    datamodule = datamodule_from_section(data)
    info = datamodule.dataset_class.all_modalities
    modalities = {
        name: {
            "bands": info[name].bands,
            "description": info[name].description,
            "classes": info[name].classes,
            "file_bands": info[name].file_bands,
            "read_bands": info[name].read_bands,
            "nodata": info[name].nodata,
        }
        for name in datamodule.modalities
    }
    init_args = dict(data.get("init_args") or {})
    init_args.pop("root", None)  # where the data was is not part of the model
    return {
        "class_path": data["class_path"],
        "init_args": _json_data(init_args, "data.init_args"),
        "modalities": _json_data(modalities, "data.modalities"),
        "normalization": _json_data(datamodule.normalization_stats, "data.normalization"),
        "classes": list(datamodule.classes),
    }


def _training_card(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Epoch, step and the best monitored score the checkpoint's callbacks kept."""
    record: dict[str, Any] = {
        "epoch": checkpoint.get("epoch"),
        "global_step": checkpoint.get("global_step"),
        "lightning": checkpoint.get("pytorch-lightning_version"),
    }
    for name, state in (checkpoint.get("callbacks") or {}).items():
        if str(name).startswith("ModelCheckpoint") and isinstance(state, Mapping):
            score = state.get("best_model_score")
            if score is not None:
                record["monitor"] = state.get("monitor")
                record["best_score"] = float(score)
    return record


def _metrics_card(checkpoint_path: Path) -> dict[str, float]:
    """The last logged value of each validation and test metric of the run, if it logged any.

    Read from the CSV logger's ``metrics.csv`` beside the ``checkpoints/`` folder (where
    ``fusion fit`` and ``fusion test`` with the CSV logger write it); empty without one.
    """
    path = checkpoint_path.resolve().parent.parent / "metrics.csv"
    if not path.is_file():
        return {}
    last: dict[str, float] = {}
    with path.open(newline="") as file:
        for row in csv.DictReader(file):
            for key, value in row.items():
                if key and key.startswith(("val/", "test/")) and value not in ("", None):
                    try:
                        last[key] = float(value)
                    except ValueError:
                        continue
    return dict(sorted(last.items()))


def _commit() -> str | None:
    """The repository commit the export was made at, or None outside a git checkout."""
    try:
        from fusion.reproduce.provenance import git_state

        return git_state(Path(__file__).resolve().parents[1]).get("commit")
    except Exception:  # noqa: BLE001 - provenance is a nicety, never a reason to fail
        return None


def add_checkpoint_options(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--ckpt_path`` (described by ``what``) and ``--trust_checkpoint`` to a command."""
    parser.add_argument("--ckpt_path", type=Path, required=True, help=what)
    parser.add_argument(
        "--trust_checkpoint",
        action="store_true",
        help="load a checkpoint that needs unpickling (can run code: only files you trust)",
    )


def main(argv: Sequence[str] = ()) -> Path:
    """``fusion export``: write a checkpoint as a model folder safe to share.

    Returns:
        The folder written.
    """
    parser = argparse.ArgumentParser(
        prog="fusion export",
        description="Write a checkpoint as a model folder safe to share: safetensors weights "
        "and a JSON card (task, modalities, normalization, classes, data pipeline, commit).",
        allow_abbrev=False,
    )
    add_checkpoint_options(parser, "the Lightning checkpoint")
    parser.add_argument("--out", type=Path, required=True, help="the model folder to write")
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="the run's config.yaml (default: the one beside the checkpoint's folder)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    args = parser.parse_args(list(argv))
    out = export_model(args.ckpt_path, args.out, args.config, args.trust_checkpoint, args.overwrite)
    card = read_card(out)
    data = card.get("data") or {}
    print(
        f"Wrote {out / WEIGHTS_FILE} and {out / CARD_FILE}: {card['task'] or 'task'} on "
        f"{', '.join(data.get('modalities', {})) or 'modalities of the hyper-parameters'}"
        + ("" if data else " (no run config found: the card has no data pipeline; pass --config)")
    )
    return out
