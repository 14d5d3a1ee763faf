import math

import torch

from fusion.pretraining.losses import (
    info_nce,
    masked_patch_loss,
    normalize_patches,
    patchify,
    unpatchify,
)


def test_info_nce_matches_a_written_out_reference() -> None:
    torch.manual_seed(0)
    queries, keys, tau = torch.randn(5, 8), torch.randn(5, 8), 0.2

    def cosine(a, b):
        return float((a @ b) / (a.norm() * b.norm()))

    def one_direction(q, k):
        total = 0.0
        for i in range(len(q)):
            scores = [math.exp(cosine(q[i], k[j]) / tau) for j in range(len(k))]
            total += -math.log(scores[i] / sum(scores))
        return total / len(q)

    expected = (one_direction(queries, keys) + one_direction(keys, queries)) / 2
    assert math.isclose(float(info_nce(queries, keys, tau)), expected, rel_tol=1e-5)


def test_info_nce_is_low_for_aligned_pairs() -> None:
    torch.manual_seed(1)
    z = torch.randn(16, 32)
    assert float(info_nce(z, z * 3, 0.1)) < 0.01
    assert float(info_nce(z, torch.randn(16, 32), 0.1)) > 1.0


def test_patchify_round_trip_and_order() -> None:
    images = torch.arange(2 * 3 * 8 * 12, dtype=torch.float).view(2, 3, 8, 12)
    patches = patchify(images, 4)
    assert patches.shape == (2, 6, 48)
    # Token 4 is row 1, column 1 of the 2 x 3 patch grid; channels last within a pixel.
    assert torch.equal(patches[0, 4, :3], images[0, :, 4, 4])
    assert torch.equal(unpatchify(patches, 4, (2, 3)), images)


def test_loss_counts_only_weighted_patches() -> None:
    torch.manual_seed(2)
    prediction, target = torch.randn(2, 6, 10), torch.randn(2, 6, 10)
    weight = torch.zeros(2, 6, dtype=torch.bool)
    weight[0, 1] = weight[1, 4] = True
    for kind in ("mse", "l1"):
        loss = masked_patch_loss(prediction, target, weight, kind)
        changed = target.clone()
        changed[~weight] += 100.0
        assert torch.equal(loss, masked_patch_loss(prediction, changed, weight, kind))
        diff = prediction - target
        per_patch = diff.pow(2).mean(-1) if kind == "mse" else diff.abs().mean(-1)
        torch.testing.assert_close(loss, (per_patch[0, 1] + per_patch[1, 4]) / 2)


def test_cross_entropy_on_class_maps() -> None:
    logits = torch.zeros(1, 2, 4, 3)
    logits[..., 1] = 5.0
    target = torch.ones(1, 2, 4, dtype=torch.long)
    weight = torch.tensor([[True, False]])
    good = masked_patch_loss(logits, target, weight, "ce")
    target[0, 1] = 2  # an unweighted patch
    assert torch.equal(good, masked_patch_loss(logits, target, weight, "ce"))
    assert float(good) < 0.02


def test_no_weighted_patch_gives_zero_with_gradient() -> None:
    prediction = torch.randn(1, 3, 4, requires_grad=True)
    loss = masked_patch_loss(prediction, torch.zeros(1, 3, 4), torch.zeros(1, 3), "mse")
    loss.backward()
    assert float(loss.detach()) == 0 and prediction.grad is not None


def test_normalize_patches() -> None:
    patches = torch.randn(2, 3, 50) * 7 + 4
    normalized = normalize_patches(patches)
    torch.testing.assert_close(normalized.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalized.std(-1), torch.ones(2, 3), atol=1e-3, rtol=0)


def test_values_without_data_do_not_count() -> None:
    torch.manual_seed(3)
    prediction, target = torch.randn(1, 2, 4), torch.randn(1, 2, 4)
    weight = torch.tensor([[True, True]])
    valid = torch.tensor([[[True, True, False, False], [False, False, False, False]]])
    loss = masked_patch_loss(prediction, target, weight, "mse", valid)
    torch.testing.assert_close(loss, (prediction - target)[0, 0, :2].pow(2).mean())
    changed = target.clone()
    changed[~valid] = 1e3
    assert torch.equal(loss, masked_patch_loss(prediction, changed, weight, "mse", valid))
