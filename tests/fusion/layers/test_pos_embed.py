import math

import pytest
import torch

from fusion.layers.pos_embed import SinCosPosEmbed2d, sincos_embed_1d, sincos_pos_embed_2d


def test_eq1_layout_on_a_non_square_grid() -> None:
    embed = sincos_pos_embed_2d((2, 3), dim=16)  # 4 dims per (sin, cos) pair group, d = 8
    assert embed.shape == (6, 16)
    token = 1 * 3 + 2  # row y=1, column x=2 (row-major)
    y, x = 1.0, 2.0
    expected = []
    for k in (y, x):  # row half first, then column half
        for i in range(4):
            angle = k / 10000 ** (2 * i / 8)
            expected += [math.sin(angle), math.cos(angle)]
    torch.testing.assert_close(embed[token], torch.tensor(expected))
    # The column half of the first row runs over x = 0, 1, 2; the row half is constant.
    assert torch.equal(embed[:3, :8], embed[:1, :8].expand(3, 8))
    torch.testing.assert_close(embed[:3, 8], torch.sin(torch.arange(3.0)))
    torch.testing.assert_close(embed[:3, 9], torch.cos(torch.arange(3.0)))
    torch.testing.assert_close(embed[::3, 0], torch.sin(torch.arange(2.0)))


def test_transposed_grid_swaps_halves() -> None:
    tall = sincos_pos_embed_2d((3, 2), dim=8).view(3, 2, 8)
    wide = sincos_pos_embed_2d((2, 3), dim=8).view(2, 3, 8)
    torch.testing.assert_close(tall[:, :, :4], wide.transpose(0, 1)[:, :, 4:])


def test_1d_interleaves_sin_and_cos() -> None:
    embed = sincos_embed_1d(torch.tensor([5]), dim=4)
    expected = [math.sin(5), math.cos(5), math.sin(5 / 100), math.cos(5 / 100)]
    torch.testing.assert_close(embed[0], torch.tensor(expected))


def test_module_caches_per_grid_and_has_no_state() -> None:
    module = SinCosPosEmbed2d(8)
    first = module((2, 3), torch.device("cpu"))
    assert module((2, 3), torch.device("cpu")) is first
    assert module((3, 2), torch.device("cpu")).shape == (6, 8)
    assert dict(module.state_dict()) == {}
    with pytest.raises(ValueError, match="divisible by 4"):
        SinCosPosEmbed2d(6)
