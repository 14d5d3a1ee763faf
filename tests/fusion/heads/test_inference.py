import torch
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.detection import MeanAveragePrecision

from fusion.heads import InstancePrediction, instance_inference, semantic_inference, semantic_scores


def perfect_semantic_logits(mask: torch.Tensor, num_classes: int, num_queries: int):
    """Query k (< K) claims class k exactly where the label is k; the rest say no object."""
    batch = mask.shape[0]
    class_logits = torch.full((batch, num_queries, num_classes + 1), -10.0)
    class_logits[:, num_classes:, -1] = 10.0
    mask_logits = torch.full((batch, num_queries, *mask.shape[-2:]), -10.0)
    for k in range(num_classes):
        class_logits[:, k, k] = 10.0
        mask_logits[:, k] = torch.where(mask == k, 10.0, -10.0)
    return class_logits, mask_logits


def test_semantic_inference_shapes_and_types() -> None:
    class_logits, mask_logits = torch.randn(2, 9, 8), torch.randn(2, 9, 8, 8)
    scores = semantic_scores(class_logits, mask_logits, (32, 32))
    assert scores.shape == (2, 7, 32, 32) and scores.dtype == torch.float32
    classes = semantic_inference(class_logits, mask_logits, (32, 32))
    assert classes.shape == (2, 32, 32) and classes.dtype == torch.int64
    assert classes.min() >= 0 and classes.max() < 7
    assert semantic_inference(class_logits, mask_logits).shape == (2, 8, 8)


def test_perfect_semantic_prediction_scores_miou_1() -> None:
    mask = torch.randint(0, 7, (2, 16, 16))
    class_logits, mask_logits = perfect_semantic_logits(mask, 7, 9)
    labels = mask.clone()
    labels[:, :4] = 255  # ignored pixels count for nothing, whatever is predicted there
    predicted = semantic_inference(class_logits, mask_logits)
    assert torch.equal(predicted, mask)
    metric = MulticlassJaccardIndex(7, ignore_index=255)
    metric.update(torch.where(labels == 255, (mask + 1) % 7, predicted), labels)
    assert metric.compute() == 1.0


def test_instance_inference_shapes_and_types() -> None:
    class_logits, mask_logits = torch.randn(2, 6, 3), torch.randn(2, 6, 8, 8)
    predictions = instance_inference(class_logits, mask_logits, (32, 32), top_k=4)
    assert len(predictions) == 2
    for prediction in predictions:
        assert isinstance(prediction, InstancePrediction)
        assert prediction.masks.shape == (4, 32, 32) and prediction.masks.dtype == torch.bool
        assert prediction.labels.dtype == torch.int64 and prediction.labels.max() < 2
        assert prediction.scores.shape == (4,) and prediction.scores.dtype == torch.float32
        assert ((prediction.scores >= 0) & (prediction.scores <= 1)).all()
    # top_k is capped by the number of (query, class) pairs
    assert len(instance_inference(class_logits, mask_logits, top_k=100)[0].labels) == 12


def test_perfect_instance_prediction_scores_ap50_1() -> None:
    truth_masks = torch.zeros(2, 3, 32, 32, dtype=torch.bool)
    truth_masks[:, 0, 2:10, 2:10] = True
    truth_masks[:, 1, 12:20, 4:30] = True
    truth_masks[:, 2, 24:31, 20:28] = True
    class_logits = torch.full((2, 10, 2), -10.0)
    class_logits[:, 3:, -1] = 10.0
    class_logits[:, :3, 0] = 10.0
    mask_logits = torch.full((2, 10, 32, 32), -10.0)
    mask_logits[:, :3] = torch.where(truth_masks, 10.0, -10.0)
    predictions = instance_inference(class_logits, mask_logits, top_k=10)
    metric = MeanAveragePrecision(iou_type="segm")
    metric.update(
        [p.as_metric_input() for p in predictions],
        [{"masks": m, "labels": torch.zeros(3, dtype=torch.long)} for m in truth_masks],
    )
    assert metric.compute()["map_50"] == 1.0
