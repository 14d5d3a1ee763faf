import re

import pytest
import torch

from tests.fusion.backbone.fixtures import make_inputs, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def test_unknown_modality_is_named_with_the_known_ones(model) -> None:
    inputs = {**make_inputs(names=("s1",)), "rgb": torch.randn(3, 3, 32, 32)}
    message = "unknown modality 'rgb'; the model knows ['s1', 's2', 'dem', 'dnw']"
    with pytest.raises(ValueError, match=re.escape(message)):
        model(inputs)


def test_empty_input(model) -> None:
    with pytest.raises(ValueError, match="input dict is empty"):
        model({})


def test_wrong_channel_count(model) -> None:
    with pytest.raises(
        ValueError, match=re.escape("'s2' expects [B, 4, H, W], got shape [3, 3, 32, 32]")
    ):
        model({"s2": torch.randn(3, 3, 32, 32)})


def test_sizes_not_divisible_by_the_patch(model) -> None:
    with pytest.raises(ValueError, match="divisible by the patch size 8, got H=30, W=32"):
        model({"s1": torch.randn(3, 2, 30, 32)})


def test_sizes_differ_between_modalities(model) -> None:
    inputs = {"s1": torch.randn(3, 2, 32, 32), "dem": torch.randn(3, 1, 32, 48)}
    with pytest.raises(
        ValueError, match="share batch size, H and W; got s1: B=3, H=32, W=32, dem: B=3, H=32, W=48"
    ):
        model(inputs)


@pytest.mark.parametrize("bad_id", [-1, 10])
def test_categorical_ids_out_of_range(model, bad_id: int) -> None:
    class_map = torch.zeros(3, 32, 32, dtype=torch.long)
    class_map[0, 0, 0] = bad_id
    message = r"'dnw' has 9 classes \(ids 0..8, and 9 for no data\), but its ids span"
    with pytest.raises(ValueError, match=message):
        model({"dnw": class_map})


def test_categorical_nodata_id_is_accepted(model) -> None:
    class_map = torch.randint(0, 9, (3, 32, 32))
    class_map[:, :8, :8] = 9  # no data, not class 0
    assert torch.isfinite(model({"dnw": class_map}).fusion).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bool])
def test_categorical_dtype(model, dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"'dnw' expects integer class ids, got {dtype}"):
        model({"dnw": torch.zeros(3, 32, 32, dtype=dtype)})


def test_categorical_shape(model) -> None:
    with pytest.raises(
        ValueError, match=re.escape("class ids [B, H, W] or [B, 1, H, W], got shape [3, 2, 32, 32]")
    ):
        model({"dnw": torch.zeros(3, 2, 32, 32, dtype=torch.long)})


def test_continuous_dtype(model) -> None:
    with pytest.raises(
        TypeError, match="'s1' is continuous and expects a float tensor, got torch.int64"
    ):
        model({"s1": torch.zeros(3, 2, 32, 32, dtype=torch.long)})


def test_categorical_accepts_both_shapes_and_any_integer_dtype(model) -> None:
    ids = torch.randint(0, 9, (3, 32, 32))
    first = model({"dnw": ids}).fusion
    second = model({"dnw": ids[:, None].to(torch.uint8)}).fusion
    torch.testing.assert_close(first, second)


def test_mask_errors(model) -> None:
    inputs = make_inputs(names=("s1",))
    with pytest.raises(ValueError, match="present names unknown modality 'rgb'"):
        model(inputs, present={"rgb": torch.ones(3, dtype=torch.bool)})
    with pytest.raises(
        TypeError, match=r"visible\['s1'\] must be a bool tensor, got torch.float32"
    ):
        model(inputs, visible={"s1": torch.ones(3, 16)})
    with pytest.raises(
        ValueError, match=re.escape("visible['s1'] must be [B, L] = [3, 16], got [3, 8]")
    ):
        model(inputs, visible={"s1": torch.ones(3, 8, dtype=torch.bool)})
    with pytest.raises(ValueError, match=re.escape("present['s1'] must be [B] = [3], got [2]")):
        model(inputs, present={"s1": torch.ones(2, dtype=torch.bool)})
