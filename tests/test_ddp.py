"""Distributed data parallel on CPU: two processes (gloo) train a few steps through the real
command line with ``experiments/ddp.yaml``, pretraining started by Lightning's own launcher and
segmentation by torchrun, and end with the same weights; the learning rate and the steps count
both processes. Each process writes what it saw (`tests.ddp_probe.RecordRank`).

Also, in one process: which parameters a batch without a modality leaves without gradients,
the reason for ``find_unused_parameters: true``.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from datamodules import QuadrupletsDataModule
from fusion.tasks import PretrainTask, SegmentationTask
from tests.data.quadruplets.data import write_quadruplets
from tests.tiny_models import (
    TINY_BACKBONE,
    TINY_DECODER,
    TINY_HEAD,
    model_arguments,
    quiet_run_arguments,
)

REPO = Path(__file__).resolve().parents[1]
MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}
BATCH = 2  # per process; 8 training tiles -> 2 batches per process and epoch
LIGHTNING_LAUNCHER = [sys.executable, "-m", "fusion"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.fixture(scope="module")
def ddp_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Quadruplets with 8 training tiles (2 regions x 4)."""
    return write_quadruplets(tmp_path_factory.mktemp("ddp") / "quadruplets", tiles_per_region=4)


def run_two_processes(
    launcher: list[str], config: str, sizes: dict[str, Any], root: Path, out: Path, *extra: str
) -> list[dict[str, Any]]:
    """Train with two CPU processes through ``python -m fusion fit``; the records of both ranks.

    The whole process group is killed if the run takes more than five minutes (a hang).
    """
    probe = {"class_path": "tests.ddp_probe.RecordRank", "init_args": {"out_dir": str(out)}}
    args = [*launcher, "fit", "--config", f"experiments/{config}.yaml"]
    args += ["--config", "experiments/ddp.yaml", "--data.root", str(root)]
    args += ["--data.init_args.image_size", "32", "--data.init_args.batch_size", str(BATCH)]
    args += ["--data.init_args.num_workers", "0"]
    args += model_arguments(sizes) + quiet_run_arguments(out, "run")
    args += [
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "2",
        "--trainer.strategy.init_args.process_group_backend", "gloo",
        "--trainer.precision", "32-true",
        "--trainer.max_epochs", "10",
        "--trainer.num_sanity_val_steps", "0",
        f"--trainer.callbacks+={json.dumps(probe)}",
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        args,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"two-process run hung:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    return [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]


def check_same_weights_and_distinct_draws(ranks: list[dict[str, Any]]) -> list[str]:
    """Both processes start and end with the same weights, having drawn different modality
    subsets and token masks; returns the names of the tensors that training changed."""
    assert [rank["global_rank"] for rank in ranks] == [0, 1]
    assert all(rank["world_size"] == 2 for rank in ranks)
    first, second = ranks
    for key in ("initial", "final"):
        assert first[key].keys() == second[key].keys()
        different = [n for n in first[key] if not torch.equal(first[key][n], second[key][n])]
        assert not different, f"{key} weights differ between the processes: {different}"
    presence = [torch.stack(rank["present"]) for rank in ranks]
    assert not torch.equal(*presence), "both processes drew the same modality subsets"
    assert not torch.equal(first["rng_state"], second["rng_state"]), "same token-mask draws"
    return [n for n in first["final"] if not torch.equal(first["final"][n], first["initial"][n])]


def test_pretraining_with_lightnings_launcher(ddp_data: Path, tmp_path: Path) -> None:
    sizes = {**TINY_BACKBONE, **TINY_DECODER, "base_lr": 1e-3}
    accumulate = 2
    extra = ["--trainer.max_steps", "2", "--trainer.accumulate_grad_batches", str(accumulate)]
    launcher = LIGHTNING_LAUNCHER
    ranks = run_two_processes(launcher, "pretrain_quad", sizes, ddp_data, tmp_path, *extra)
    changed = check_same_weights_and_distinct_draws(ranks)
    assert {"backbone.fusion_tokens", "backbone.blocks.0.attn.qkv.weight"} <= set(changed)
    for rank in ranks:
        assert (rank["strategy"], rank["cluster"]) == ("DDPStrategy", "LightningEnvironment")
        assert rank["global_step"] == 2
        # lr = base_lr * batch per process * accumulation * processes / 256
        assert rank["peak_lr"] == [pytest.approx(1e-3 * BATCH * accumulate * 2 / 256)] * 2
        assert rank["num_training_batches"] == 2  # each process sees half of the 8 tiles
        assert rank["schedule_steps"] == 2
    # Rank 0 alone drew the reconstruction figure, and the validation loss is logged.
    run = next((tmp_path / "run").glob("version_*"))
    assert list((run / "figures").glob("reconstruction_epoch*.png"))
    assert "val/loss" in next(csv.DictReader((run / "metrics.csv").open())).keys()


def test_segmentation_with_torchrun(ddp_data: Path, tmp_path: Path) -> None:
    sizes = {**TINY_BACKBONE, **TINY_HEAD, "lr": 1e-4}
    ranks = run_two_processes(
        TORCHRUN + ["-m", "fusion"], "segment_quad", sizes, ddp_data, tmp_path,
        "--trainer.max_steps", "3",
    )  # fmt: skip
    changed = check_same_weights_and_distinct_draws(ranks)
    # Segmentation never uses the backbone's final norm and pooling: DDP finds them unused on
    # every process, they keep no gradient, and AdamW leaves them exactly as they were.
    unused = {n for n in ranks[0]["final"] if n.startswith(("backbone.norm.", "backbone.pooling."))}
    assert unused and not unused & set(changed)
    assert "backbone.blocks.0.attn.qkv.weight" in changed
    for rank in ranks:
        assert (rank["strategy"], rank["cluster"]) == ("DDPStrategy", "TorchElasticEnvironment")
        assert rank["global_step"] == 3
        assert rank["peak_lr"] == pytest.approx([1e-4] * len(rank["peak_lr"]))  # not scaled
        assert rank["num_training_batches"] == 2
        assert rank["schedule_steps"] == 3


def batch_without(absent: str, size: int = 4) -> dict[str, torch.Tensor]:
    """A batch in which ``absent`` is missing from every sample and the others from some."""
    present = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 1], [0, 1, 1, 1], [1, 1, 1, 0]]).bool()
    present[:, list(MODALITIES).index(absent)] = False
    return {
        "s1": torch.randn(size, 2, 32, 32),
        "s2": torch.randn(size, 4, 32, 32),
        "dem": torch.randn(size, 1, 32, 32),
        "dnw": torch.randint(0, 9, (size, 1, 32, 32)),
        "present": present,
        "mask": torch.randint(0, 7, (size, 32, 32)),
    }


def without_gradient(task: torch.nn.Module, loss: torch.Tensor) -> set[str]:
    """Names of the trainable parameters that ``loss`` gives no gradient."""
    loss.backward()
    return {name for name, p in task.named_parameters() if p.requires_grad and p.grad is None}


def test_an_absent_modality_leaves_parameters_without_gradients() -> None:
    """What ``find_unused_parameters: true`` in experiments/ddp.yaml is for (its comment)."""
    pretrain = PretrainTask(MODALITIES, **TINY_BACKBONE, **TINY_DECODER)
    pretrain.log = lambda *args, **kwargs: None
    loss, _ = pretrain.shared_step(batch_without("dem"), "train", 0)
    assert without_gradient(pretrain, loss) == {
        name
        for name, _ in pretrain.named_parameters()
        if name.startswith(("backbone.patch_embeds.dem.", "decoders.dem."))
    }
    recon_only = PretrainTask(MODALITIES, **TINY_BACKBONE, **TINY_DECODER, contrastive=False)
    recon_only.log = lambda *args, **kwargs: None
    loss, _ = recon_only.shared_step(batch_without("dnw"), "train", 0)
    assert without_gradient(recon_only, loss) == {  # only the contrastive loss uses pooling
        name
        for name, _ in recon_only.named_parameters()
        if name.startswith(("backbone.patch_embeds.dnw.", "decoders.dnw.", "backbone.pooling."))
    }
    segment = SegmentationTask(MODALITIES, num_classes=7, **TINY_BACKBONE, **TINY_HEAD)
    segment.log = lambda *args, **kwargs: None
    loss, _ = segment.shared_step(batch_without("s1"), "train")
    assert without_gradient(segment, loss) == {
        name
        for name, _ in segment.named_parameters()
        if name.startswith(("backbone.patch_embeds.s1.", "backbone.norm.", "backbone.pooling."))
    }


def test_each_process_draws_its_own_modality_subsets(quadruplets_root: Path) -> None:
    """Rank r seeds the training loader's generator apart, also when resuming rank 0's state."""
    modules = []
    for rank in (0, 1):
        datamodule = QuadrupletsDataModule(root=quadruplets_root, batch_size=2)
        datamodule.trainer = SimpleNamespace(global_rank=rank)
        datamodule.setup("fit")
        modules.append(datamodule)
    states = [m.train_generator.get_state() for m in modules]
    assert not torch.equal(*states)
    saved = modules[0].state_dict()
    for datamodule in modules:
        datamodule.load_state_dict(saved)
    assert torch.equal(modules[0].train_generator.get_state(), saved["train_generator"])
    assert not torch.equal(modules[1].train_generator.get_state(), saved["train_generator"])
