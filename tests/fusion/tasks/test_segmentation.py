import logging
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules.datamodule import collate_samples
from fusion.heads import InstancePrediction, MaskPredictions
from fusion.tasks import PretrainTask, SegmentationTask

REPO = Path(__file__).resolve().parents[3]
MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}
BACKBONE = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)
HEAD = dict(
    hidden_dim=32,
    decoder_heads=4,
    encoder_feedforward_dim=64,
    decoder_feedforward_dim=64,
    train_num_points=256,
)


def tiny_task(task: str = "semantic", **kwargs) -> SegmentationTask:
    settings = dict(num_classes=7 if task == "semantic" else 1, num_queries=6, task=task)
    return SegmentationTask(MODALITIES, **{**settings, **BACKBONE, **HEAD, **kwargs})


def sample(index: int, instances: bool = False) -> dict:
    """One sample of the contract: blocky classes, an ignored corner, some modalities absent."""
    generator = torch.Generator().manual_seed(index)
    blocks = torch.randint(0, 7, (4, 4), generator=generator)
    mask = blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)
    mask[:6, :6] = 255
    present = torch.tensor(
        [[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1]][index % 4]
    ).bool()
    item = {
        "s1": torch.randn(2, 32, 32, generator=generator) + mask.clamp(max=6) / 3,
        "s2": torch.randn(4, 32, 32, generator=generator) + mask.clamp(max=6) / 3,
        "dem": torch.randn(1, 32, 32, generator=generator),
        "dnw": blocks.repeat_interleave(8, 0).repeat_interleave(8, 1)[None],
        "present": present,
        "valid": present[:, None, None].expand(4, 32, 32).clone(),
        "mask": mask,
        "name": f"tile{index}",
    }
    if instances:
        buildings = torch.zeros(index % 3 + 1, 32, 32, dtype=torch.bool)
        for n, building in enumerate(buildings):
            building[4 + 9 * n : 10 + 9 * n, 8:20] = True
        item["mask"] = torch.where(mask == 255, 255, buildings.any(0).long())
        item["instance_masks"] = buildings
        item["labels"] = torch.zeros(len(buildings), dtype=torch.long)
        item["boxes"] = torch.zeros(len(buildings), 4)
    return item


def batch(size: int = 4, instances: bool = False) -> dict:
    return collate_samples([sample(i, instances) for i in range(size)])


def capture_logs(task: SegmentationTask) -> dict:
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    return logged


@pytest.mark.parametrize("shares", ["dirichlet", "equal"])
def test_training_step_hides_tokens_and_packs(monkeypatch, shares: str) -> None:
    task = tiny_task(patch_dropout=0.5, patch_dropout_shares=shares)
    logged = capture_logs(task)
    seen = {}
    original = task.backbone.forward_intermediates

    def spy(inputs, present=None, visible=None, pack=None):
        seen.update(inputs=set(inputs), visible=visible, pack=pack)
        return original(inputs, present, visible, pack)

    monkeypatch.setattr(task.backbone, "forward_intermediates", spy)
    data = batch()
    data["present"][:, 2] = False  # no DEM in the whole batch: left out
    loss = task.training_step(data, 0)
    loss.backward()
    assert torch.isfinite(loss) and {"train/loss", "train/loss_class", "train/loss_dice"} <= set(
        logged
    )
    assert seen["inputs"] == {"s1", "s2", "dnw"} and seen["pack"] is True
    shown = {n: data["present"][:, list(MODALITIES).index(n)] for n in seen["visible"]}
    for name, flags in seen["visible"].items():
        assert not flags[~shown[name]].any()
        if shares == "equal":  # half of the 16 tokens of every present modality
            assert flags[shown[name]].sum(1).eq(8).all()
    kept = sum(flags.sum(1) for flags in seen["visible"].values())
    assert kept.tolist() == [8 * int(sum(shown[n][b] for n in shown)) for b in range(len(kept))]
    for module in (task.pyramid, task.head):
        assert all(p.grad is not None for p in module.parameters())
    task.eval()
    data = batch()
    with torch.no_grad():
        task.validation_step(data, 0)
    assert seen["visible"] is None and seen["pack"] is True  # samples lack modalities
    data["valid"][0, 0, :8, :16] = False  # no s1 data in the first two patches of sample 0
    with torch.no_grad():
        task.validation_step(data, 0)
    hidden = ~seen["visible"]["s1"]
    assert hidden[0, :2].all() and hidden.sum() == 2 + 4 * 16 // 4  # + sample 2 lacks s1


def test_losses_fall_over_a_few_steps() -> None:
    torch.manual_seed(0)
    task = tiny_task()
    capture_logs(task)
    data = batch()
    optimizer = torch.optim.AdamW(task.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = task.training_step(data, 0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses


def test_semantic_metrics_and_prediction() -> None:
    task = tiny_task().eval()
    logged = capture_logs(task)
    with torch.no_grad():
        task.validation_step(batch(), 0)
        task.on_validation_epoch_end()
        output = task.predict_step(batch(2), 0)
    assert {"val/loss", "val/miou", *(f"val/iou_{k}" for k in range(7))} <= set(logged)
    assert 0 <= float(logged["val/miou"]) <= 1
    assert output["name"] == ["tile0", "tile1"]
    assert output["semantic"].shape == (2, 32, 32) and output["semantic"].dtype == torch.int64


def test_instance_metrics_and_prediction() -> None:
    task = tiny_task("instance", top_k=5).eval()
    logged = capture_logs(task)
    with torch.no_grad():
        task.validation_step(batch(instances=True), 0)
        task.on_validation_epoch_end()
        output = task.predict_step(batch(2, instances=True), 0)
    assert {"val/loss", "val/ap50", "val/ap"} <= set(logged)
    assert 0 <= float(logged["val/ap50"]) <= 1
    instances = output["instances"]
    assert len(instances) == 2 and isinstance(instances[0], InstancePrediction)
    assert instances[0].masks.shape == (5, 32, 32) and instances[0].masks.dtype == torch.bool


def test_unknown_class_ids_are_refused() -> None:
    task = tiny_task(num_classes=3)
    capture_logs(task)
    with pytest.raises(ValueError, match="outside 0..2"):
        task.training_step(batch(), 0)


def save_pretraining_checkpoint(path, modalities=MODALITIES) -> PretrainTask:
    pretrained = PretrainTask(modalities, decoder_dim=32, decoder_heads=2, **BACKBONE)
    torch.save(
        {"state_dict": pretrained.state_dict(), "hyper_parameters": dict(pretrained.hparams)}, path
    )
    return pretrained


def test_pretrained_backbone_is_loaded_alone_with_a_smaller_lr(tmp_path, caplog) -> None:
    path = tmp_path / "pretrain.ckpt"
    pretrained = save_pretraining_checkpoint(path)
    task = tiny_task(pretrained=str(path))
    head_before = {k: v.clone() for k, v in task.head.state_dict().items()}
    task.setup("fit")
    for key, value in pretrained.backbone.state_dict().items():
        assert torch.equal(task.backbone.state_dict()[key], value), key
    assert all(torch.equal(v, head_before[k]) for k, v in task.head.state_dict().items())
    backbone = {id(p) for p in task.backbone.parameters()}
    groups = task.parameter_groups()
    for group in groups:
        in_backbone = {id(p) in backbone for p in group["params"]}
        assert len(in_backbone) == 1
        assert group["lr"] == pytest.approx(1e-5 if in_backbone.pop() else 1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(task.parameters()))
    assert {g["lr"] for g in tiny_task().parameter_groups()} == {1e-4}  # from scratch

    ablation = tiny_task(pretrained=str(path), variant="no_modality_attention")
    with caplog.at_level(logging.WARNING):
        missing, unexpected = ablation.load_pretrained_backbone(path)
    assert missing == [] and "modality_attention.0.q.weight" in unexpected
    assert "unexpected (ignored)" in caplog.text and unexpected[0] in caplog.text


def test_pretrained_checkpoint_with_other_modalities_is_refused(tmp_path) -> None:
    path = tmp_path / "pretrain.ckpt"
    save_pretraining_checkpoint(path, {"s1": 2, "s2": 4})
    task = tiny_task(pretrained=str(path))
    with pytest.raises(ValueError) as error:
        task.setup("fit")
    message = str(error.value)
    assert "s1 (2), s2 (4)]" in message and "dnw (categorical, 9)" in message


class Samples(torch.utils.data.Dataset):
    def __init__(self, count: int, instances: bool) -> None:
        self.count, self.instances = count, instances

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict:
        return sample(index, self.instances)


@pytest.mark.parametrize("task_kind", ["semantic", "instance"])
def test_fits_and_validates_with_a_trainer(task_kind: str, tmp_path) -> None:
    task = tiny_task(task_kind)
    loader = DataLoader(
        Samples(4, task_kind == "instance"), batch_size=2, collate_fn=collate_samples
    )
    trainer = L.Trainer(
        max_steps=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        gradient_clip_val=0.1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(task, loader, loader)
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.lr_lambdas[0].total_steps == 3 and trainer.global_step == 3
    metric = "val/miou" if task_kind == "semantic" else "val/ap50"
    assert metric in trainer.callback_metrics


def test_tiles_without_data_in_the_subset_are_excluded_and_counted() -> None:
    task = tiny_task().eval()
    logged = capture_logs(task)
    full = batch()
    empty = batch()
    empty["present"][:2] = False  # two tiles hold no data in the evaluated subset
    with torch.no_grad():
        task.evaluation_step(empty, "test")
    assert logged["test/excluded_tiles"] == 2.0
    only_kept = task.metrics["test"]["miou"].compute()
    task.metrics["test"]["miou"].reset()
    kept = {k: v[2:] if not isinstance(v, list) else v[2:] for k, v in full.items()}
    with torch.no_grad():
        task.evaluation_step(kept, "test")
    assert logged["test/excluded_tiles"] == 0.0
    torch.testing.assert_close(task.metrics["test"]["miou"].compute(), only_kept)


# -- the empty subset's trivial predictor ------------------------------------------------------


def labels(*runs: tuple[int, int]) -> dict:
    """A one-image batch whose ``mask`` holds ``count`` pixels of ``label`` for each run."""
    values = torch.cat([torch.full((count,), label) for label, count in runs])
    return {"mask": values.reshape(1, 1, -1)}


# Training labels: class 0 is the majority (35 against 25) only when every batch is counted
# (the first and the last alone say class 1) and the 60 ignored pixels are left out (they
# would be the largest "class").
TRAIN = [
    labels((0, 5), (1, 15), (255, 30)),
    labels((0, 30), (255, 20)),
    labels((1, 10), (255, 10)),
]
# Evaluated labels: class 1 is their majority (70 of the 100 labelled pixels).
TEST = [labels((1, 40), (255, 20), (0, 30)), labels((1, 30))]


def test_majority_class_counts_every_batch_and_skips_ignored_pixels() -> None:
    task = tiny_task(num_classes=2)
    assert task.majority_class(TRAIN) == 0
    assert task.majority_class(TEST) == 1
    assert task.majority_class(iter(TRAIN[:2])) == 0  # a generator is read once
    with pytest.raises(ValueError, match="no labelled pixel"):
        task.majority_class([labels((255, 10))])
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        task.majority_class([labels((0, 3), (2, 1))])


def test_trivial_scores_predict_the_given_majority_everywhere() -> None:
    task = tiny_task(num_classes=2)
    assert task.score_names == ("miou", "iou_0", "iou_1")
    # Majority of the evaluated labels themselves: class 1 on 70 of 100 labelled pixels.
    own = task.trivial_scores(TEST)
    assert own == pytest.approx({"miou": 0.35, "iou_0": 0.0, "iou_1": 0.7}, abs=1e-6)
    # Majority of the training split (class 0), scored on the evaluated labels: 30 of 100.
    trained = task.trivial_scores(iter(TEST), majority=task.majority_class(TRAIN))
    assert trained == pytest.approx({"miou": 0.15, "iou_0": 0.3, "iou_1": 0.0}, abs=1e-6)
    with pytest.raises(ValueError, match="majority class 2"):
        task.trivial_scores(TEST, majority=2)


def test_trivial_scores_of_instances_are_zero() -> None:
    task = tiny_task("instance")
    assert task.score_names == ("ap50", "ap")
    assert task.trivial_scores(TEST, majority=0) == {"ap50": 0.0, "ap": 0.0}


# -- semantic metrics through the task's own inference --------------------------------------------


def certain_predictions(mask: Tensor, num_classes: int, classes: list[int]) -> MaskPredictions:
    """Mask2Former outputs that are sure of a segmentation.

    Query ``q`` covers the pixels labelled ``q`` (mask logit +20, else -20) and says class
    ``classes[q]`` (logit +20, the other classes and no-object -20): ``classes = range(K)``
    reproduces ``mask``, a permutation relabels it. The masks are at the label resolution
    (bilinear upsampling from a quarter would blur the block corners).

    Args:
        mask: ``int64 [B, H, W]`` labels, 255 ignored.
        num_classes: K.
        classes: class said by each of the K queries.

    Returns:
        Class logits ``[B, K, K + 1]`` and mask logits ``[B, K, H, W]`` (one decoder stage).
    """
    queries = torch.arange(num_classes)
    mask_logits = torch.where(mask[:, None] == queries[None, :, None, None], 20.0, -20.0)
    class_logits = torch.full((len(mask), num_classes, num_classes + 1), -20.0)
    class_logits[:, queries, torch.tensor(classes)] = 20.0
    return MaskPredictions([class_logits], [mask_logits])


def test_perfect_predictions_score_one_and_swapped_classes_do_not() -> None:
    task = tiny_task()  # 7 classes
    data = batch()  # 4 x 4 blocks of the 7 classes, an ignored 6 x 6 corner
    mask = data["mask"]
    present = set(mask.unique().tolist()) - {255}
    assert present == set(range(7)) and (mask == 255).any()

    perfect = certain_predictions(mask, 7, list(range(7)))
    classes = task.semantic_prediction(perfect, (32, 32))
    assert classes.shape == (4, 32, 32) and classes.dtype == torch.int64
    assert torch.equal(classes[mask != 255], mask[mask != 255])
    logged = capture_logs(task)
    task.update_metrics("test", perfect, data)
    task.log_metrics("test")
    assert float(logged["test/miou"]) == 1.0
    assert all(float(logged[f"test/iou_{k}"]) == 1.0 for k in range(7))

    swapped = certain_predictions(mask, 7, [1, 0, 2, 3, 4, 5, 6])  # classes 0 and 1 exchanged
    task.update_metrics("test", swapped, data)
    task.log_metrics("test")
    assert float(logged["test/iou_0"]) == 0.0 and float(logged["test/iou_1"]) == 0.0
    assert float(logged["test/miou"]) == pytest.approx(5 / 7)
