"""The ``fusion`` command: one front door to every command of the project.

    fusion --help                       the commands, one line each
    fusion fit --config experiments/pretrain_quad.yaml --data.root /data/quad
    fusion evaluate --config experiments/segment_quad.yaml --ckpt_path last.ckpt
    fusion predict-scene --ckpt_path last.ckpt --s1 s1.tif --s2 s2.tif --out map.tif
    fusion export --ckpt_path last.ckpt --out water_model
    fusion <command> --help             a command's options

``fit``, ``validate``, ``test`` and ``predict`` are Lightning's (`fusion.run.lightning`); the
others are the project's own commands, each in its own module (`COMMANDS`). This module only
dispatches, and turns errors caused by the user's input (a missing data root or file, an
unknown modality, a bad option value) into one line on stderr and exit status 2; ``--debug``
anywhere on the command line, or ``FUSION_DEBUG=1``, shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

LIGHTNING = "fusion.run.lightning:run_lightning"
"""The runner of Lightning's subcommands."""


@dataclass(frozen=True)
class Command:
    """One command of ``fusion``.

    Attributes:
        name: what the user types.
        summary: one line for ``fusion --help``.
        target: ``"module:function"`` called with the command's arguments (the Lightning
            commands get theirs with the command name first).
    """

    name: str
    summary: str
    target: str

    def runner(self) -> Callable[[list[str]], Any]:
        """The function that runs the command (imported only now: ``--help`` stays fast)."""
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


COMMANDS = (
    Command(
        "fit", "train a model from a config (Lightning: --config, --data.root, ...)", LIGHTNING
    ),
    Command("validate", "score a checkpoint on the validation split (Lightning)", LIGHTNING),
    Command("test", "score a checkpoint on the test split (Lightning)", LIGHTNING),
    Command("predict", "run a checkpoint over a DataModule's predict split (Lightning)", LIGHTNING),
    Command(
        "evaluate",
        "score a checkpoint on every modality subset, with contribution tables",
        "fusion.evaluation.command:main",
    ),
    Command(
        "predict-scene",
        "map a whole georeferenced scene from any subset of the modalities",
        "fusion.scene.command:main",
    ),
    Command(
        "export",
        "write a checkpoint as a model folder safe to share (safetensors + card)",
        "fusion.run.model_file:main",
    ),
    Command(
        "reproduce",
        "the paper's tables in miniature within a time budget (resumable)",
        "fusion.reproduce.command:main",
    ),
)
"""Every command, in the order ``fusion --help`` lists them."""

DEBUG_FLAG = "--debug"
DEBUG_VARIABLE = "FUSION_DEBUG"


def usage() -> str:
    """The text of ``fusion --help``."""
    width = max(len(command.name) for command in COMMANDS)
    lines = [
        "usage: fusion <command> [options] [--debug]",
        "",
        "Incomplete multimodal learning for remote-sensing data fusion "
        "(Chen, Zhao, Bruzzone, TGRS 2024).",
        "",
        "commands:",
        *(f"  {command.name:<{width}}  {command.summary}" for command in COMMANDS),
        "",
        "fusion <command> --help shows a command's options. --debug (or FUSION_DEBUG=1) shows",
        "the full traceback of an error instead of its one-line message.",
    ]
    return "\n".join(lines)


USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    ValueError,
    argparse.ArgumentError,
)
"""Errors that bad input raises (our checks name the file, key or value in the message)."""

NONE_REASON = re.compile(r"Expected an? <class '\w*NoneType'>")


def union_reasons(text: str) -> list[str]:
    """The reasons jsonargparse lists under ``Errors:``, without "expected None".

    A reason's more indented lines below its ``- `` line (the cause of "Problem with given
    class_path", for instance) are joined to it.
    """
    if "Errors:" not in text:
        return []
    head, _, rest = text.partition("Errors:")
    indent = len(head.rsplit("\n", 1)[-1])  # the spaces before "Errors:" on its line
    reasons: list[str] = []
    for line in rest.splitlines()[1:]:
        depth = len(line) - len(line.lstrip())
        if not line.strip():
            continue
        if depth <= indent:  # "Given value ..." lines: the list has ended
            break
        if line.strip().startswith("- "):
            reasons.append(line.strip()[2:].strip())
        elif reasons:
            reasons[-1] = f"{reasons[-1].rstrip(':')}: {line.strip()}"
    reasons = [reason for reason in reasons if not NONE_REASON.match(reason)]
    return [re.sub(r"Expected an? <class '([\w.]+)'>", r"expected \1", r) for r in reasons]


def worker_error(text: str) -> str | None:
    """The original message of an error re-raised from a DataLoader worker, else None.

    torch re-raises a worker's error as "Caught X in DataLoader worker process 0. Original
    Traceback (most recent call last): ... X: <message>"; the message is the last line.
    """
    if not text.startswith("Caught ") or "Original Traceback" not in text:
        return None
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    return re.sub(r"^[\w.]+: ", "", last, count=1)


def user_error_message(error: BaseException) -> str | None:
    """The one-line message of an error caused by the user's input; None for other errors.

    jsonargparse reports a value that fits no accepted type, or a class that failed to build,
    as a list of attempts ("Does not validate against any of the Union subtypes ... Errors:
    - <reason> - Expected a NoneType ... Given value: abc"); the option, the reason that is
    not "None" and the given value are kept.
    """
    if not isinstance(error, USER_ERRORS) and type(error).__name__ != "UnsafeCheckpointError":
        return None
    text = str(error).strip() or type(error).__name__
    text = worker_error(text) or text
    reasons = union_reasons(text)
    key = re.match(r'Parser key "([^"]+)"', text)
    given = re.search(r"^\s*Given value: (.*)$", text, re.MULTILINE)
    if key:
        reason = reasons[0] if reasons else text.splitlines()[-1].strip()
        first = f"--{key.group(1)}: {reason}"
        value = given.group(1).strip() if given else ""
        if reasons and value and not value.startswith(("NestedArg(", "Namespace(", '"NestedArg(')):
            first += f", got {value!r}"
    elif reasons:
        first = reasons[0]
    else:
        first = text.splitlines()[0]
    if isinstance(error, OSError) and error.filename and str(error.filename) not in first:
        first = f"{first}: {error.filename}"
    return first


def main(args: Sequence[str] | None = None) -> Any:
    """Run a command and return what it returns (for Python callers and tests).

    Errors propagate (see `run` for the console's one-line messages).

    Args:
        args: the command line without the program name (default ``sys.argv[1:]``).

    Returns:
        The Lightning CLI object, the subset results of ``evaluate``, the
        `fusion.scene.SceneResult` of ``predict-scene``, the folder of ``export``, ...

    Raises:
        SystemExit: after printing the usage, for ``--help``, no command or an unknown one.
    """
    args = [a for a in (sys.argv[1:] if args is None else list(args)) if a != DEBUG_FLAG]
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if args else 2)
    commands = {command.name: command for command in COMMANDS}
    if args[0] not in commands:
        print(usage(), file=sys.stderr)
        known = ", ".join(commands)
        print(f"\nfusion: error: unknown command {args[0]!r} (one of: {known})", file=sys.stderr)
        raise SystemExit(2)
    command = commands[args[0]]
    return command.runner()(args if command.target == LIGHTNING else args[1:])


def run(args: Sequence[str] | None = None) -> int:
    """The console entry point: `main`, with one-line messages for bad input; the exit status.

    Returns:
        0 on success, 2 for an error caused by the input (its message printed on one line),
        or the status of a ``SystemExit`` (e.g. argparse's usage errors).
    """
    args = sys.argv[1:] if args is None else list(args)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        main(args)
    except Exception as error:  # noqa: BLE001 - only user errors are shortened, others re-raised
        message = user_error_message(error)
        if debug or message is None:
            raise
        name = args[0] if args else "fusion"
        print(f"fusion {name}: error: {message}", file=sys.stderr)
        print(f"(rerun with {DEBUG_FLAG} for the full traceback)", file=sys.stderr)
        return 2
    return 0
