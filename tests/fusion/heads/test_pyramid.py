import pytest
import torch

from fusion.heads import SimpleFeaturePyramid


@pytest.mark.parametrize("grid", [(4, 4), (16, 16), (6, 8)])
def test_levels_have_strides_4_8_16_32_for_patch_16(grid) -> None:
    pyramid = SimpleFeaturePyramid(32)
    height, width = grid
    maps = [torch.randn(2, 32, height, width) for _ in range(4)]
    levels = pyramid(maps)
    sides = [(round(height * s), round(width * s)) for s in pyramid.scales]
    assert [tuple(level.shape) for level in levels] == [(2, 32, *side) for side in sides]
    assert all(torch.isfinite(level).all() for level in levels)


def test_each_level_comes_from_its_own_block() -> None:
    pyramid = SimpleFeaturePyramid(8)
    maps = [torch.randn(1, 8, 4, 4, requires_grad=True) for _ in range(4)]
    levels = pyramid(maps)
    for index, level in enumerate(levels):
        grads = torch.autograd.grad(level.sum(), maps, allow_unused=True)
        assert [g is not None for g in grads] == [i == index for i in range(4)]
    torch.testing.assert_close(levels[2], maps[2])  # stride 16: the map itself


def test_rejects_wrong_inputs() -> None:
    pyramid = SimpleFeaturePyramid(8)
    with pytest.raises(ValueError, match="takes 4 maps"):
        pyramid([torch.randn(1, 8, 4, 4)] * 3)
    with pytest.raises(ValueError, match=r"\[B, 8, h, w\]"):
        pyramid([torch.randn(1, 6, 4, 4)] * 4)
