import pytest
import torch

from fusion.layers.masked_attention import MaskedAttention, MaskedBlock, attend
from fusion.layers.token_layout import GridLayout, PackedLayout

B, M, L, D, HEADS = 2, 3, 20, 8, 2


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


@pytest.mark.parametrize("call_cost", [0, 1e6], ids=["groups by length", "one group"])
@pytest.mark.parametrize("attention", ["masked", "full"])
def test_matches_eq3_on_both_layouts(attention: str, call_cost: float) -> None:
    torch.manual_seed(0)
    attn = MaskedAttention(D, HEADS, attention=attention)
    fusion, modality = torch.randn(B, L, D), torch.randn(B, M, L, D)
    visible = torch.rand(B, M, L) < torch.tensor([0.2, 0.5, 0.9])[:, None]  # short to long runs
    visible[:, :, 0] = True  # every modality keeps a key, so no row is empty
    ref_fusion, ref_modality = reference_attention(
        attn, fusion, modality, visible, attention == "full"
    )
    grid = GridLayout(visible, B, M, L, torch.device("cpu"))
    out_fusion, out_modality = attn(fusion, modality, grid)
    torch.testing.assert_close(out_fusion, ref_fusion)
    torch.testing.assert_close(out_modality[visible], ref_modality[visible])
    packed = PackedLayout(visible, call_cost)
    assert (len(packed.segments.groups) > 1) == (call_cost == 0)
    out_fusion, out_packed = attn(fusion, packed.arrange(modality), packed)
    torch.testing.assert_close(out_fusion, ref_fusion)
    out_modality = packed.scatter(out_packed, fill=torch.zeros(()))
    torch.testing.assert_close(out_modality[visible], ref_modality[visible])


def test_block_drops_whole_samples_in_both_streams() -> None:
    """Stochastic depth: one draw per sample scales its fusion and modality branches alike."""
    batch = 32
    block = MaskedBlock(D, HEADS, drop_path=0.5).train()
    torch.nn.init.zeros_(block.mlp.fc2.weight)  # leave the attention branch alone
    torch.nn.init.zeros_(block.mlp.fc2.bias)
    fusion, modality = torch.randn(batch, L, D), torch.randn(batch, M, L, D)
    layout = GridLayout(None, batch, M, L, torch.device("cpu"))
    with torch.no_grad():
        branch_f, branch_m = block.attn(block.norm1(fusion), block.norm1(modality), layout)
        out_fusion, out_modality = block(fusion, modality, layout)
    # Per sample, the scale that the fusion branch got: 0 (dropped) or 1 / (1 - 0.5).
    scale = ((out_fusion - fusion) * branch_f).sum((1, 2)) / branch_f.square().sum((1, 2))
    assert set(scale.round(decimals=4).tolist()) == {0.0, 2.0}
    torch.testing.assert_close(out_fusion, fusion + scale[:, None, None] * branch_f)
    torch.testing.assert_close(out_modality, modality + scale[:, None, None, None] * branch_m)


def test_explicit_attention_path_matches_sdpa() -> None:
    q, k, v = (torch.randn(2, 3, 16, 8, dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
    explicit = attend(q, k, v)  # bf16 training on the CPU: the explicit path
    with torch.no_grad():
        fused = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert explicit.grad_fn is not None and "Sdpa" not in type(explicit.grad_fn).__name__
    torch.testing.assert_close(explicit.float(), fused.float(), atol=2e-2, rtol=2e-2)
