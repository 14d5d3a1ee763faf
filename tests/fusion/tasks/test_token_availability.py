"""Token-level absence: patches without data are hidden, in pretraining and in prediction."""

import pytest
import torch

from fusion.tasks.batches import token_availability
from tests.fusion.tasks.test_pretrain import MODALITIES, batch, tiny_task

NAMES = tuple(MODALITIES)


def batch_with_gaps() -> dict:
    """The pretraining test batch with ``valid``: S2 has no data on the left half (grid columns
    0 and 1 of the 4 x 4 patch grid) and on half of the patch at grid row 0, column 2."""
    data = batch()
    valid = data["present"][:, :, None, None].expand(-1, -1, 32, 32).clone()
    valid[:, 1, :, :16] = False
    valid[:, 1, :8, 16:20] = False
    data["valid"] = valid
    return data


def test_a_patch_is_available_when_one_pixel_holds_data() -> None:
    data = batch_with_gaps()
    available = token_availability(data, NAMES, ["s1", "s2"], patch_size=8)
    assert set(available) == {"s1", "s2"}
    grid = available["s2"].view(4, 4, 4)  # [B, rows, cols]
    has_s2 = data["present"][:, 1]
    assert not grid[:, :, :2].any()  # all no data: hidden
    assert torch.equal(grid[:, 0, 2], has_s2)  # partly covered: stays visible
    assert torch.equal(grid[:, :, 2:], has_s2[:, None, None].expand(-1, 4, 2))
    assert torch.equal(available["s1"], data["present"][:, :1].expand(-1, 16))
    assert token_availability(batch(), NAMES, ["s1"], 8) is None  # no valid: no gaps known
    with pytest.raises(ValueError, match="not divisible by the patch size 5"):
        token_availability(data, NAMES, ["s1"], patch_size=5)


def test_pretraining_shows_only_tokens_with_data() -> None:
    task = tiny_task()
    task.log = lambda *a, **k: None
    data = batch_with_gaps()
    available = token_availability(data, NAMES, NAMES, 8)
    for stage in ("train", "val"):
        loss, parts = task.shared_step(data, stage, 0)
        assert torch.isfinite(loss)
        for name in NAMES:
            assert not (parts.visible[name] & ~available[name]).any()
        shown = torch.stack([parts.visible[m] for m in NAMES], 1).sum((1, 2))
        expected = (torch.stack([available[m] for m in NAMES], 1).sum((1, 2)) * 0.5).round()
        assert torch.equal(shown, expected.long())


def test_prediction_ignores_pixels_of_hidden_patches() -> None:
    task = tiny_task().eval()
    data = batch_with_gaps()
    with torch.no_grad():
        before = task.predict_step(data, 0)
        changed = {**data, "s2": data["s2"].clone()}
        changed["s2"][:, :, :, :16] = 1e3  # only pixels of the fully hidden patches
        after = task.predict_step(changed, 0)
        changed["s2"][:, :, 16:, 16:] += 1.0  # pixels that hold data do count
        moved = task.predict_step(changed, 0)
    torch.testing.assert_close(before["fusion"], after["fusion"])
    torch.testing.assert_close(before["fusion_vectors"]["s2"], after["fusion_vectors"]["s2"])
    assert not torch.allclose(before["fusion"], moved["fusion"])


def test_categorical_nodata_is_neither_input_class_nor_target() -> None:
    task = tiny_task()
    task.log = lambda *a, **k: None
    data = batch_with_gaps()
    data["dnw"][:, :, 8:16, :] = 9  # Dynamic World no data on the second patch row
    data["valid"][:, 3, 8:16, :] = False
    loss, _ = task.shared_step(data, "train", 0)
    assert torch.isfinite(loss)
    # Without `valid`, the no-data id still never reaches the cross-entropy.
    present = {m: data["present"][:, i] for i, m in enumerate(NAMES)}
    inputs = {"dnw": data["dnw"]}
    hidden = {"dnw": torch.zeros(4, 16, dtype=torch.bool)}
    fusion = torch.randn(4, 16, 32)
    without_valid, _ = task.reconstruction_losses(inputs, present, fusion, hidden)
    valid = {"dnw": data["valid"][:, 3]}
    relabelled = {"dnw": data["dnw"].clamp(max=8)}
    with_valid, _ = task.reconstruction_losses(relabelled, present, fusion, hidden, valid)
    torch.testing.assert_close(without_valid["dnw"], with_valid["dnw"])


def test_a_sample_without_any_modality_passes_through() -> None:
    # An evaluation tile whose fixed subset has no data: `present` all False (item 1's flag).
    task = tiny_task()
    task.log = lambda *a, **k: None
    data = batch_with_gaps()
    data["present"][1] = False
    data["valid"][1] = False
    loss, parts = task.shared_step(data, "val", 0)
    assert torch.isfinite(loss) and not any(parts.visible[m][1].any() for m in NAMES)
    with torch.no_grad():
        assert torch.isfinite(task.eval().predict_step(data, 0)["fusion"]).all()
