import torch

from fusion.layers.pooling import ClassTokenPooling, masked_softmax


def test_masked_softmax_is_finite_without_allowed_entries() -> None:
    logits = torch.randn(2, 3)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    weights = masked_softmax(logits, mask)
    assert weights[0, 1] == 0
    torch.testing.assert_close(weights.sum(-1), torch.ones(2))
    torch.testing.assert_close(weights[1], logits[1].softmax(-1))


def test_pooling_uses_only_visible_tokens() -> None:
    pooling = ClassTokenPooling(dim=8, num_heads=2, num_modalities=3)
    fusion = torch.randn(2, 5, 8)
    modality = torch.randn(2, 2, 5, 8)
    visible = torch.rand(2, 2, 5) < 0.6
    visible[0, 0] = True
    visible[1, 1] = False  # modality 1 missing for sample 1
    vectors_m, vectors_f, valid = pooling(fusion, modality, visible, [2, 0])
    assert vectors_m.shape == vectors_f.shape == (2, 2, 8)
    assert valid.tolist() == [[True, bool(visible[0, 1].any())], [bool(visible[1, 0].any()), False]]
    assert vectors_m[1, 1].abs().max() == 0 and vectors_f[1, 1].abs().max() == 0
    noise = torch.where(visible[..., None], modality, torch.randn_like(modality))
    fusion_noise = fusion.clone()
    fusion_noise[0, ~(visible[0, 0] | visible[0, 1])] = 7.0
    again_m, again_f, _ = pooling(fusion_noise, noise, visible, [2, 0])
    torch.testing.assert_close(again_m, vectors_m)
    torch.testing.assert_close(again_f, vectors_f)
