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


def cross_attention(pooling: ClassTokenPooling, query: torch.Tensor, tokens: torch.Tensor):
    """One class-token query [D] over tokens [N, D], by hand: the CA of III-E."""
    dim = query.shape[0]
    head_dim = dim // pooling.num_heads
    query = query @ pooling.q.weight.T + pooling.q.bias
    key_value = tokens @ pooling.kv.weight.T + pooling.kv.bias  # [N, 2D]
    keys, values = key_value[:, :dim], key_value[:, dim:]
    pooled = []
    for head in range(pooling.num_heads):
        part = slice(head * head_dim, (head + 1) * head_dim)
        weights = torch.softmax(keys[:, part] @ query[part] / head_dim**0.5, dim=0)
        pooled.append(weights @ values[:, part])
    return torch.cat(pooled) @ pooling.proj.weight.T + pooling.proj.bias


def test_matches_cross_attention_written_out() -> None:
    torch.manual_seed(0)
    pooling = ClassTokenPooling(dim=8, num_heads=2, num_modalities=3)
    fusion, modality = torch.randn(2, 5, 8), torch.randn(2, 2, 5, 8)
    visible = torch.rand(2, 2, 5) < 0.5
    visible[:, :, 0] = True
    modality_ids = [2, 0]
    vectors_m, vectors_f, valid = pooling(fusion, modality, visible, modality_ids)
    assert valid.all()
    for b in range(2):
        for i, model_id in enumerate(modality_ids):
            seen = visible[b, i]
            # z_m over modality m's visible tokens with m's class token ...
            expected_m = cross_attention(
                pooling, pooling.modality_queries[model_id], modality[b, i, seen]
            )
            # ... and z_{f_m} over the fusion tokens at those positions with the fusion one.
            expected_f = cross_attention(pooling, pooling.fusion_query, fusion[b, seen])
            torch.testing.assert_close(vectors_m[b, i], expected_m)
            torch.testing.assert_close(vectors_f[b, i], expected_f)
