import pytest
import torch

from fusion.layers.masked_attention import MaskedAttention, MaskedBlock, attend
from fusion.layers.token_layout import GridLayout, PackedLayout

B, M, L, D, HEADS = 2, 3, 5, 8, 2


def reference_attention(attn: MaskedAttention, fusion, modality, visible, full: bool):
    """Eq. 3 on the concatenated sequence [fusion, modality 0, ..., modality M-1]."""
    tokens = torch.cat([fusion, modality.flatten(1, 2)], dim=1)  # [B, N, D]
    group = torch.cat([torch.full((L,), -1), torch.arange(M).repeat_interleave(L)])  # [N]
    key_ok = torch.cat([torch.ones(B, L, dtype=torch.bool), visible.flatten(1)], dim=1)  # [B, N]
    allowed = key_ok[:, None, :].expand(B, len(group), len(group)).clone()
    if not full:  # modality rows see only their own modality
        rows = group >= 0
        allowed[:, rows] &= group[rows][:, None] == group[None, :]
    q, k, v = attn.qkv(tokens).view(B, -1, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
    logits = (q @ k.transpose(-1, -2)) * (D // HEADS) ** -0.5
    logits = logits.masked_fill(~allowed[:, None], float("-inf"))
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, -1, D)
    out = attn.proj(out)
    return out[:, :L], out[:, L:].view(B, M, L, D)


@pytest.mark.parametrize("attention", ["masked", "full"])
def test_matches_eq3_on_both_layouts(attention: str) -> None:
    attn = MaskedAttention(D, HEADS, attention=attention)
    fusion, modality = torch.randn(B, L, D), torch.randn(B, M, L, D)
    visible = torch.rand(B, M, L) < 0.6
    visible[:, :, 0] = True  # every modality keeps a key, so no row is empty
    ref_fusion, ref_modality = reference_attention(
        attn, fusion, modality, visible, attention == "full"
    )
    grid = GridLayout(visible, B, M, L, torch.device("cpu"))
    out_fusion, out_modality = attn(fusion, modality, grid)
    torch.testing.assert_close(out_fusion, ref_fusion)
    torch.testing.assert_close(out_modality[visible], ref_modality[visible])
    packed = PackedLayout(visible)
    out_fusion, out_packed = attn(fusion, packed.arrange(modality), packed)
    torch.testing.assert_close(out_fusion, ref_fusion)
    out_modality = packed.scatter(out_packed, fill=torch.zeros(()))
    torch.testing.assert_close(out_modality[visible], ref_modality[visible])


def test_block_keeps_shapes_and_drops_whole_samples() -> None:
    block = MaskedBlock(D, HEADS, drop_path=0.99).train()
    fusion, modality = torch.randn(B, L, D), torch.randn(B, M, L, D)
    layout = GridLayout(None, B, M, L, torch.device("cpu"))
    torch.manual_seed(1)
    out_fusion, out_modality = block(fusion, modality, layout)
    assert out_fusion.shape == fusion.shape and out_modality.shape == modality.shape
    dropped = (out_fusion == fusion).flatten(1).all(1)
    assert torch.equal(dropped, (out_modality == modality).flatten(1).all(1))


def test_explicit_attention_path_matches_sdpa() -> None:
    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    explicit = attend(q, k, v)  # bf16 training on the CPU: the explicit path
    with torch.no_grad():
        fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert explicit.grad_fn is not None and "Sdpa" not in type(explicit.grad_fn).__name__
    torch.testing.assert_close(explicit.float(), fused.float(), atol=2e-2, rtol=2e-2)
