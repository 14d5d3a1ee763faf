"""Where a result came from: the code's commit, the packages, the machine and the numerics."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "lightning", "torchmetrics", "torchgeo", "transformers", "timm", "numpy")
"""Packages whose versions can change the numbers."""


def _git(*args: str, cwd: Path | None = None) -> str | None:
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout


def git_state(cwd: Path | None = None) -> dict[str, Any]:
    """The commit of the working tree and whether it differs from it.

    Returns:
        ``{"commit": sha or "unknown", "dirty": bool, "diff_sha": str}``: ``diff_sha`` hashes
        the uncommitted changes (tracked files against the commit, and untracked files that
        git does not ignore), so that two runs from the same dirty tree are recognised as the
        same code and a run from another dirty tree is not.
    """
    commit = _git("rev-parse", "HEAD", cwd=cwd)
    if commit is None:
        return {"commit": "unknown", "dirty": True, "diff_sha": "unknown"}
    diff = _git("diff", "HEAD", "--binary", cwd=cwd) or ""
    untracked = (_git("ls-files", "--others", "--exclude-standard", cwd=cwd) or "").split()
    digest = hashlib.sha256(diff.encode())
    for name in sorted(untracked):
        path = (cwd or Path()) / name
        digest.update(name.encode())
        if path.is_file():
            digest.update(path.read_bytes())
    dirty = bool(diff.strip() or untracked)
    return {
        "commit": commit.strip(),
        "dirty": dirty,
        "diff_sha": digest.hexdigest()[:16] if dirty else "",
    }


def package_versions() -> dict[str, str]:
    """Python's and the numerically relevant packages' versions (``"absent"`` if missing)."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def machine_record() -> dict[str, Any]:
    """The machine class, CPU model, usable cores and the precision training picks there."""
    from fusion.run.hardware import choose_precision, detect_hardware

    hardware = detect_hardware()
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpu_model": model,
        "cpu_class": hardware.cpu_class,
        "hardware": asdict(hardware),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "precision": choose_precision(hardware).precision,
    }
