"""A tiny Mask2Former head shared by the head tests (hidden width 32, a few queries)."""

from fusion.heads import Mask2FormerHead

TINY_HEAD = dict(
    hidden_dim=32,
    num_heads=4,
    encoder_feedforward_dim=64,
    decoder_feedforward_dim=64,
    train_num_points=256,
)


def tiny_head(in_channels: int = 32, num_labels: int = 3, num_queries: int = 5, **kwargs):
    """Two deformable layers and four decoder layers, as in the paper, but 32 wide."""
    return Mask2FormerHead(in_channels, num_labels, num_queries, **{**TINY_HEAD, **kwargs})
