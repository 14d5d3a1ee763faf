import torch

from fusion.layers.token_layout import GridLayout, PackedLayout


def test_packed_layout_keeps_grid_order_and_round_trips() -> None:
    visible = torch.tensor(
        [
            [[True, False, True], [False, True, False]],
            [[False, False, False], [True, False, False]],
        ]
    )  # [B=2, M=2, L=3]
    layout = PackedLayout(visible)
    assert layout.modality_ids.tolist() == [[0, 0, 1], [1, -1, -1]]
    assert layout.positions[0].tolist() == [0, 2, 1]
    assert layout.token_valid.tolist() == [[True, True, True], [True, False, False]]
    grid = torch.arange(2 * 2 * 3, dtype=torch.float32).view(2, 2, 3, 1)
    packed = layout.arrange(grid)
    assert packed.shape == (2, 1, 3, 1)
    assert packed[0, 0, :, 0].tolist() == [0.0, 2.0, 4.0]
    assert packed[1, 0, :, 0].tolist() == [9.0, 0.0, 0.0]  # padded with zeros
    no_data = torch.where(visible[..., None], grid, float("nan"))
    torch.testing.assert_close(layout.arrange(no_data), packed)
    back = layout.scatter(packed, fill=torch.tensor([-1.0]))
    torch.testing.assert_close(back, torch.where(visible[..., None], grid, -1.0))
    # Each token gets the value of its patch position.
    per_position = torch.arange(2 * 3, dtype=torch.float32).view(2, 3, 1)  # [B, L, 1]
    assert layout.per_token(per_position)[0, 0, :, 0].tolist() == [0.0, 2.0, 1.0]
    assert layout.per_token(per_position)[1, 0, 0, 0] == 3.0
    on_grid = GridLayout(visible, 2, 2, 3, torch.device("cpu")).per_token(per_position)
    torch.testing.assert_close(on_grid, per_position[:, None].expand(2, 2, 3, 1))


def test_packed_masks_and_segments() -> None:
    visible = torch.tensor([[[True, True], [True, False]], [[False, False], [True, False]]])
    layout = PackedLayout(visible)  # segments of 2 and 1 tokens, then 1; T = 3
    assert layout.modality_mask is None
    keys = layout.key_mask[:, 0, 0]  # fusion (2) then packed (3)
    assert keys.tolist() == [[True] * 5, [True, True, True, False, False]]
    # One group, shortest segment first: padding costs less than one more attention call.
    segments = layout.segments
    assert [(g.count, g.length) for g in segments.groups] == [(3, 2)]
    assert segments.rows.tolist() == [2, 2, 3, 3, 0, 1]  # padding repeats the last token
    key_mask = segments.groups[0].key_mask[:, 0, 0]
    assert key_mask.tolist() == [[True, False], [True, False], [True, True]]
    assert segments.inverse.tolist() == [4, 5, 0, 2, 6, 6]  # padding rows -> the extra slot


def test_grid_masks_only_when_needed() -> None:
    everything = GridLayout(None, 2, 3, 4, torch.device("cpu"))
    assert everything.key_mask is None and everything.modality_mask is None
    assert everything.visible.shape == (2, 3, 4) and everything.visible.all()
    absent = torch.ones(2, 3, 4, dtype=torch.bool)
    absent[1, 2] = False  # a modality absent for one sample: isolation needs no mask
    layout = GridLayout(absent, 2, 3, 4, torch.device("cpu"))
    assert layout.modality_mask is None
    assert layout.key_mask[:, 0, 0].sum(-1).tolist() == [4 + 12, 4 + 8]
    partial = absent.clone()
    partial[0, 0, 1] = False
    mask = GridLayout(partial, 2, 3, 4, torch.device("cpu")).modality_mask
    assert mask.shape == (6, 1, 1, 4)
    assert mask[0, 0, 0].tolist() == [True, False, True, True]
    assert mask[5].all()  # the absent sequence may attend all of its own keys


def test_packed_parts_and_sums_per_position() -> None:
    visible = torch.tensor(
        [
            [[True, False, True], [False, True, False]],
            [[False, False, False], [True, False, True]],
        ]
    )  # [B=2, M=2, L=3]
    layout = PackedLayout(visible)
    # Visible patches of each modality, flat b * L + l.
    assert layout.visible_patches(0).tolist() == [0, 2]
    assert layout.visible_patches(1).tolist() == [1, 3, 5]
    grid = torch.arange(1.0, 13.0).view(2, 2, 3, 1)  # [B, M, L, 1], by flat index + 1
    parts = [grid[:, m].reshape(-1, 1)[layout.visible_patches(m)] for m in range(2)]
    torch.testing.assert_close(layout.arrange_parts(parts), layout.arrange(grid))
    # Sums of the visible tokens of both modalities at each position.
    expected = torch.where(visible[..., None], grid, 0.0).sum(dim=1)  # [B, L, 1]
    torch.testing.assert_close(layout.sum_per_position(layout.arrange(grid)), expected)
    on_grid = GridLayout(visible, 2, 2, 3, torch.device("cpu"))
    torch.testing.assert_close(on_grid.sum_per_position(grid), expected)


def test_tokenwise_computes_only_the_real_tokens() -> None:
    visible = torch.tensor(
        [
            [[True, False, True], [False, True, False]],
            [[False, False, False], [True, False, False]],
        ]
    )  # 3 and 1 visible tokens: T = 3, two padding slots in sample 1
    layout = PackedLayout(visible)
    tokens = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 1, 3, 2)
    seen = []

    def double(rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.reshape(-1, rows.shape[-1]).shape[0])
        return torch.cat([rows, 2 * rows], dim=-1)

    out = layout.tokenwise(double, tokens)
    assert seen == [4]  # the real tokens only
    assert out.shape == (2, 1, 3, 4)
    torch.testing.assert_close(out[0], torch.cat([tokens[0], 2 * tokens[0]], dim=-1))
    torch.testing.assert_close(out[1, 0, 0], torch.cat([tokens[1, 0, 0], 2 * tokens[1, 0, 0]]))
    assert out[1, 0, 1:].abs().max() == 0  # padding: zeros
    full = PackedLayout(torch.ones(2, 2, 3, dtype=torch.bool))
    assert full.real_rows is None
    seen.clear()
    full.tokenwise(double, torch.zeros(2, 1, 6, 2))
    assert seen == [12]
    grid = GridLayout(visible, 2, 2, 3, torch.device("cpu"))
    seen.clear()
    grid.tokenwise(double, torch.zeros(2, 2, 3, 2))
    assert seen == [12]
