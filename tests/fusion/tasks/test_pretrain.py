import pytest
import torch

from fusion.tasks import PretrainTask
from fusion.tasks.pretrain import default_reconstruction_loss

MODALITIES = {"s1": 2, "s2": 4, "dem": 1, "dnw": ("categorical", 9)}


def tiny_task(**kwargs) -> PretrainTask:
    settings = dict(
        img_size=32,
        patch_size=8,
        embed_dim=32,
        depth=2,
        num_heads=2,
        decoder_dim=32,
        decoder_heads=2,
    )
    return PretrainTask(MODALITIES, **{**settings, **kwargs})


def batch(size: int = 4) -> dict:
    torch.manual_seed(0)
    return {
        "s1": torch.randn(size, 2, 32, 32),
        "s2": torch.randn(size, 4, 32, 32),
        "dem": torch.randn(size, 1, 32, 32),
        "dnw": torch.randint(0, 9, (size, 1, 32, 32)),
        "present": torch.tensor(
            [[1, 1, 1, 1], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 0, 1]], dtype=torch.bool
        )[:size],
        "mask": torch.zeros(size, 32, 32, dtype=torch.long),
    }


def test_default_losses_follow_eq4() -> None:
    assert tiny_task().loss_kinds == {"s1": "mse", "s2": "mse", "dem": "l1", "dnw": "ce"}
    assert default_reconstruction_loss("DSM", False) == "l1"
    with pytest.raises(ValueError, match="'rgb'"):
        tiny_task(reconstruction_losses={"rgb": "l1"})


def test_backbone_variant_names_the_paper_baselines() -> None:
    assert tiny_task().backbone.variant == "proposed"
    multivit = tiny_task(variant="multivit")
    assert multivit.hparams.variant == "multivit"
    assert multivit.backbone.attention == "full" and multivit.backbone.modality_attention is None
    with pytest.raises(ValueError, match="unknown backbone variant"):
        tiny_task(variant="full")


def test_step_logs_every_term_and_backpropagates() -> None:
    task = tiny_task()
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    loss, parts = task.shared_step(batch(), "train", 0)
    loss.backward()
    assert torch.isfinite(loss)
    expected = {"train/loss", "train/reconstruction", "train/contrastive"}
    expected |= {f"train/reconstruction_{m}" for m in MODALITIES}
    assert expected <= set(logged)
    total = logged["train/reconstruction"] + logged["train/contrastive"]
    torch.testing.assert_close(logged["train/loss"], total)
    assert all(p.grad is not None for p in task.decoders.parameters())
    # The visible token count is half of the present tokens of each sample (16 positions).
    visible = torch.stack([parts.visible[m] for m in MODALITIES], 1).sum((1, 2))
    assert visible.tolist() == [32, 16, 16, 24]


def test_reconstruction_only_switch() -> None:
    task = tiny_task(contrastive=False)
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    task.shared_step(batch(), "train", 0)
    assert "train/contrastive" not in logged
    torch.testing.assert_close(logged["train/loss"], logged["train/reconstruction"])


def test_loss_ignores_visible_target_pixels() -> None:
    task = tiny_task()
    data = batch()
    present = {m: data["present"][:, i] for i, m in enumerate(MODALITIES)}
    inputs = {m: data[m] for m in MODALITIES}
    torch.manual_seed(1)
    visible = task.draw_visibility(present, 16)
    fusion = torch.randn(4, 16, 32)
    before, _ = task.reconstruction_losses(inputs, present, fusion, visible)
    changed = {}
    for name, image in inputs.items():
        seen = visible[name].view(4, 1, 4, 4).repeat_interleave(8, 2).repeat_interleave(8, 3)
        absent = ~present[name].view(4, 1, 1, 1)
        untouched = ~seen & ~absent
        noise = torch.randint_like(image, 0, 9) if image.dtype == torch.long else image + 50
        changed[name] = torch.where(untouched, image, noise)
    after, _ = task.reconstruction_losses(changed, present, fusion, visible)
    for name in MODALITIES:
        torch.testing.assert_close(before[name], after[name])
    # And the loss does react to hidden pixels.
    hidden_changed = {
        n: torch.where(changed[n] == inputs[n], inputs[n] + 1, inputs[n]) for n in ("s1",)
    }
    moved, _ = task.reconstruction_losses(hidden_changed, present, fusion, visible)
    assert not torch.allclose(moved["s1"], before["s1"])


def test_validation_masks_repeat_and_leave_global_state() -> None:
    task = tiny_task().eval()
    task.log = lambda *a, **k: None
    data = batch()
    state = torch.get_rng_state()
    _, first = task.shared_step(data, "val", 3)
    assert torch.equal(state, torch.get_rng_state())
    _, second = task.shared_step(data, "val", 3)
    assert all(torch.equal(first.visible[m], second.visible[m]) for m in first.visible)


def test_figure() -> None:
    task = tiny_task()
    task.log = lambda *a, **k: None
    _, parts = task.shared_step(batch(), "val", 0)
    task._figure_batch = parts.detached()
    figure = task.reconstruction_figure()
    assert len(figure.axes) == 4 * 6


def test_absent_modality_for_whole_batch_is_left_out() -> None:
    task = tiny_task()
    task.log = lambda *a, **k: None
    data = batch()
    data["present"][:, 2] = False  # no DEM anywhere
    loss, parts = task.shared_step(data, "train", 0)
    assert "dem" not in parts.inputs and torch.isfinite(loss)


def test_pixels_without_data_stay_out_of_the_loss() -> None:
    task = tiny_task()
    data = batch()
    present = {m: data["present"][:, i] for i, m in enumerate(MODALITIES)}
    valid = {m: present[m][:, None, None].expand(-1, 32, 32).clone() for m in MODALITIES}
    valid["s2"][:, :8, :8] = False  # s2 has no data in one corner patch
    visible = {m: torch.zeros(4, 16, dtype=torch.bool) for m in MODALITIES}
    fusion = torch.randn(4, 16, 32)
    inputs = {m: data[m] for m in MODALITIES}
    first, _ = task.reconstruction_losses(inputs, present, fusion, visible, valid)
    inputs["s2"] = inputs["s2"].clone()
    inputs["s2"][:, :, :8, :8] = -1e4
    second, _ = task.reconstruction_losses(inputs, present, fusion, visible, valid)
    torch.testing.assert_close(first["s2"], second["s2"])
    unmasked, _ = task.reconstruction_losses(inputs, present, fusion, visible)
    assert float(unmasked["s2"]) > 1e3 * float(first["s2"])


def test_each_contrastive_term_is_logged() -> None:
    task = tiny_task()
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    task.shared_step(batch(), "train", 0)
    terms = [
        logged[f"train/contrastive_{m}"] for m in MODALITIES if f"train/contrastive_{m}" in logged
    ]
    assert len(terms) >= 2
    torch.testing.assert_close(logged["train/contrastive"], torch.stack(terms).sum())


def test_predict_returns_features() -> None:
    task = tiny_task().eval()
    data = batch()
    data["name"] = ["a", "b", "c", "d"]
    with torch.no_grad():
        out = task.predict_step(data, 0)
    assert out["fusion"].shape == (4, 16, 32) and out["name"] == ["a", "b", "c", "d"]
    assert set(out["modality_vectors"]) == set(MODALITIES)
    assert out["fusion_vectors"]["s2"].shape == (4, 32)
    assert not out["modality_vectors"]["s2"][1].any()  # sample 1 has no s2
