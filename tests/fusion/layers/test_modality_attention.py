import torch

from fusion.layers.modality_attention import ModalityAttention
from fusion.layers.token_layout import GridLayout, PackedLayout

B, M, L, D = 2, 3, 4, 8


def test_hidden_tokens_are_replaced_by_the_mask_token() -> None:
    attention = ModalityAttention(D, 2, num_modalities=M)
    fusion, modality, mask_token = torch.randn(B, L, D), torch.randn(B, M, L, D), torch.randn(D)
    visible = torch.rand(B, M, L) < 0.5
    grid = GridLayout(visible, B, M, L, torch.device("cpu"))
    out = attention(fusion, modality, grid, mask_token)
    # Where a token is hidden, its value does not matter, but the mask token does.
    noisy = torch.where(visible[..., None], modality, torch.randn_like(modality))
    torch.testing.assert_close(attention(fusion, noisy, grid, mask_token), out)
    assert (attention(fusion, modality, grid, torch.randn(D)) - out).abs().max() > 1e-4
    # Same result with the visible tokens packed.
    packed = PackedLayout(visible)
    torch.testing.assert_close(attention(fusion, packed.arrange(modality), packed, mask_token), out)
    # A modality absent from the batch counts as hidden everywhere.
    visible[:, 2] = False
    grid = GridLayout(visible, B, M, L, torch.device("cpu"))
    two = GridLayout(visible[:, :2], B, 2, L, torch.device("cpu"))
    torch.testing.assert_close(
        attention(fusion, modality[:, :2], two, mask_token),
        attention(fusion, modality, grid, mask_token),
    )


def test_each_position_sees_only_its_own_tokens() -> None:
    attention = ModalityAttention(D, 2, num_modalities=M)
    fusion, modality, mask_token = torch.randn(B, L, D), torch.randn(B, M, L, D), torch.randn(D)
    layout = GridLayout(None, B, M, L, torch.device("cpu"))
    out = attention(fusion, modality, layout, mask_token)
    changed = modality.clone()
    changed[:, :, 1] = torch.randn(B, M, D)
    diff = (attention(fusion, changed, layout, mask_token) - out).abs().amax(dim=(0, 2))
    assert diff[1] > 1e-4
    assert diff[[0, 2, 3]].max() == 0
