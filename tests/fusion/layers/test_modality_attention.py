import torch
import torch.nn.functional as F

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


def eq2_at_one_position(
    attention: ModalityAttention, fusion_token: torch.Tensor, modality_tokens: list[torch.Tensor]
) -> torch.Tensor:
    """Eq. 2 for one fusion token z_f [D] and its M tokens z_1..z_M [D], by hand."""
    heads = attention.num_heads
    head_dim = D // heads
    tokens = torch.stack([fusion_token, *modality_tokens])  # [1+M, D]: [z_f, z_1, ..., z_M]
    normed = F.layer_norm(tokens, (D,), attention.norm.weight, attention.norm.bias)
    query = normed[0] @ attention.q.weight.T + attention.q.bias  # [D]
    key_value = normed @ attention.kv.weight.T + attention.kv.bias  # [1+M, 2D]
    keys, values = key_value[:, :D], key_value[:, D:]
    gathered = []
    for head in range(heads):
        part = slice(head * head_dim, (head + 1) * head_dim)
        weights = torch.softmax(keys[:, part] @ query[part] / head_dim**0.5, dim=0)  # [1+M]
        gathered.append(weights @ values[:, part])
    fusion_token = (
        fusion_token + torch.cat(gathered) @ attention.proj.weight.T + attention.proj.bias
    )
    mlp = attention.mlp
    normed = F.layer_norm(fusion_token, (D,), attention.norm_mlp.weight, attention.norm_mlp.bias)
    hidden = F.gelu(normed @ mlp.fc1.weight.T + mlp.fc1.bias)
    return fusion_token + hidden @ mlp.fc2.weight.T + mlp.fc2.bias


def test_matches_eq2_written_out() -> None:
    torch.manual_seed(0)
    # The model knows M + 1 modalities; the last is absent from the batch.
    attention = ModalityAttention(D, 2, num_modalities=M + 1, norm_layer=torch.nn.LayerNorm)
    for norm in (attention.norm, attention.norm_mlp):
        torch.nn.init.normal_(norm.weight)
        torch.nn.init.normal_(norm.bias)
    fusion, modality, mask_token = torch.randn(B, L, D), torch.randn(B, M, L, D), torch.randn(D)
    visible = torch.rand(B, M, L) < 0.5
    visible[0, :, 0], visible[1, :, 1] = True, False  # a position with all, one with none
    for layout in (GridLayout(visible, B, M, L, torch.device("cpu")), PackedLayout(visible)):
        out = attention(fusion, layout.arrange(modality), layout, mask_token)
        for b in range(B):
            for position in range(L):
                tokens = [
                    modality[b, m, position] if visible[b, m, position] else mask_token
                    for m in range(M)
                ]
                expected = eq2_at_one_position(
                    attention, fusion[b, position], [*tokens, mask_token]
                )
                torch.testing.assert_close(out[b, position], expected)
