import math

import pytest
import torch
from transformers.models.mask2former.modeling_mask2former import (
    Mask2FormerLoss,
    Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention,
)

from fusion.heads import MaskPredictions, MaskTargets, semantic_targets
from tests.fusion.heads.fixtures import tiny_head


def features(batch: int = 2, channels: int = 32, side: int = 16):
    """A pyramid of strides 4, 8, 16, 32 for a 4 * side image."""
    return [torch.randn(batch, channels, side // 2**i, side // 2**i) for i in range(4)]


def random_targets(batch: int = 2, side: int = 64, num_classes: int = 3):
    mask = torch.randint(0, num_classes, (batch, side // 8, side // 8))
    mask = mask.repeat_interleave(8, 1).repeat_interleave(8, 2)
    return semantic_targets(mask, num_classes)


def test_layer_counts_follow_the_paper() -> None:
    head = tiny_head()
    assert len(head.pixel_decoder.encoder.layers) == 2  # two MSDeformAttn layers
    assert len(head.transformer.decoder.layers) == 4  # four masked-attention layers
    assert head.config.dropout == 0.0
    predictions = head(features())
    assert len(predictions.class_logits) == len(predictions.mask_logits) == 5
    assert predictions.final_class_logits.shape == (2, 5, 4)
    assert predictions.final_mask_logits.shape == (2, 5, 16, 16)


@pytest.mark.parametrize("in_channels", [32, 48])  # identity or conv input projections
def test_every_parameter_is_registered_initialised_and_learns(in_channels: int) -> None:
    head = tiny_head(in_channels)
    parameters = dict(head.named_parameters())
    assert "pixel_decoder.level_embed" in parameters
    assert head.no_weight_decay() <= set(parameters)
    buffers = {name for name, _ in head.named_buffers()}
    assert set(head.state_dict()) == set(parameters) | buffers
    assert all(torch.isfinite(p).all() for p in parameters.values())
    # level_embed is allocated uninitialised; the library draws it from N(0, 1).
    assert 0.5 < head.pixel_decoder.level_embed.std() < 1.5
    inputs, targets = features(channels=in_channels), random_targets()
    loss = head.loss(head(inputs), targets)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert [name for name, p in parameters.items() if p.grad is None] == []
    # The zero-initialised offset and weight projections of the deformable attention block
    # the gradient of the queries' level embedding at the start; it flows after one step.
    torch.optim.SGD(head.parameters(), lr=0.1).step()
    head.zero_grad()
    head.loss(head(inputs), targets)["loss"].backward()
    assert [name for name, p in parameters.items() if not p.grad.abs().sum()] == []


def test_deformable_attention_starts_from_the_grid_pattern() -> None:
    head = tiny_head()
    attentions = [
        m
        for m in head.modules()
        if isinstance(m, Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention)
    ]
    assert len(attentions) == 2
    for attention in attentions:
        assert not attention.sampling_offsets.weight.any()
        assert not attention.attention_weights.weight.any()
        assert not attention.attention_weights.bias.any()
        offsets = attention.sampling_offsets.bias.view(
            attention.n_heads, attention.n_levels, attention.n_points, 2
        )
        for h in range(attention.n_heads):  # head h points along angle 2 pi h / heads
            angle = 2 * math.pi * h / attention.n_heads
            direction = torch.tensor([math.cos(angle), math.sin(angle)])
            direction = direction / direction.abs().max()
            for p in range(attention.n_points):
                expected = (p + 1) * direction.expand(attention.n_levels, 2)
                torch.testing.assert_close(offsets[h, :, p], expected, atol=1e-5, rtol=0)


def test_matcher_gives_a_one_to_one_assignment() -> None:
    head = tiny_head(num_queries=5)
    predictions = head(features(batch=3))
    targets = random_targets(batch=2)
    seven = torch.zeros(7, 64, 64)
    for i in range(7):
        seven[i, i * 8 : (i + 1) * 8] = 1
    targets.append(MaskTargets(seven, torch.tensor([0, 1, 2, 0, 1, 2, 0]), seven[0] > -1))
    indices = head.match(predictions.final_class_logits, predictions.final_mask_logits, targets)
    for (queries, rows), target in zip(indices, targets, strict=True):
        count = min(5, len(target.labels))
        assert len(queries) == len(rows) == count
        assert len(set(queries.tolist())) == count and queries.max() < 5
        assert len(set(rows.tolist())) == count and rows.max() < len(target.labels)
        assert queries.dtype == rows.dtype == torch.int64
    empty = MaskTargets(torch.zeros(0, 64, 64), torch.zeros(0, dtype=torch.long), seven[0] > 0)
    (queries, rows), *_ = head.match(
        predictions.final_class_logits[:1], predictions.final_mask_logits[:1], [empty]
    )
    assert len(queries) == len(rows) == 0


def test_loss_equals_the_library_when_nothing_is_ignored() -> None:
    head = tiny_head()
    predictions = head(features())
    targets = random_targets()
    torch.manual_seed(3)
    ours = head.loss_terms(predictions, targets)
    library = Mask2FormerLoss(head.config, weight_dict={})
    torch.manual_seed(3)
    theirs = library(
        predictions.final_mask_logits,
        predictions.final_class_logits,
        [t.masks for t in targets],
        [t.labels for t in targets],
        auxiliary_predictions=[
            {"masks_queries_logits": m, "class_queries_logits": c}
            for c, m in zip(
                predictions.class_logits[:-1], predictions.mask_logits[:-1], strict=True
            )
        ],
    )
    assert len(ours) == 5
    names = {"class": "loss_cross_entropy", "mask": "loss_mask", "dice": "loss_dice"}
    for stage, terms in enumerate(ours):
        suffix = "" if stage == 0 else f"_{stage - 1}"
        for ours_name, their_name in names.items():
            torch.testing.assert_close(terms[ours_name], theirs[their_name + suffix])
    weighted = head.loss(predictions, targets)
    torch.testing.assert_close(
        weighted["loss"], weighted["class"] + weighted["mask"] + weighted["dice"]
    )


def test_ignored_pixels_take_no_part_in_the_mask_losses() -> None:
    head = tiny_head(importance_sample_ratio=0.0)  # uniform points: independent of the logits
    side = 32
    logits = torch.randn(1, 5, side, side)
    mask = torch.randint(0, 3, (1, side, side))
    mask[:, :, :12] = 255
    targets = semantic_targets(mask, 3)
    indices = [(torch.arange(len(targets[0].labels)), torch.arange(len(targets[0].labels)))]
    count = torch.tensor(float(len(targets[0].labels)))

    def losses(mask_logits, target_list):
        torch.manual_seed(0)
        return head.mask_losses(mask_logits, target_list, indices, count)

    before = losses(logits, targets)
    changed = logits.clone()
    changed[..., :10] = 50.0  # inside the ignored columns (predictions interpolate too)
    relabelled = [MaskTargets(targets[0].masks.clone(), targets[0].labels, targets[0].valid)]
    relabelled[0].masks[..., :12] = 1.0  # labels of ignored pixels
    for after in (losses(changed, targets), losses(logits, relabelled)):
        torch.testing.assert_close(after, before)
    moved = logits.clone()
    moved[..., 20:] += 5.0
    assert not torch.allclose(losses(moved, targets)[0], before[0])


def test_a_batch_without_segments_still_gives_a_loss() -> None:
    head = tiny_head()
    predictions = head(features())
    ignored = torch.full((2, 64, 64), 255)
    losses = head.loss(predictions, semantic_targets(ignored, 3))
    losses["loss"].backward()
    assert torch.isfinite(losses["loss"]) and losses["mask"] == 0 and losses["class"] > 0


def test_losses_run_in_float32_under_autocast() -> None:
    head = tiny_head()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        predictions = head(features())
        losses = head.loss(predictions, random_targets())
    assert all(value.dtype == torch.float32 for value in losses.values())
    assert isinstance(predictions, MaskPredictions)
