"""Model sizes small enough for a training step through the command line in about a second.

``--model.init_args.<key> <value>`` overrides for the configs under ``experiments/``: the
backbone (``TINY_BACKBONE``), pretraining's reconstruction decoders (``TINY_DECODER``) and the
Mask2Former head (``TINY_HEAD``).
"""

TINY_BACKBONE = {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}
TINY_DECODER = {"decoder_dim": 32, "decoder_heads": 2}
TINY_HEAD = {
    "hidden_dim": 32,
    "decoder_heads": 4,
    "encoder_feedforward_dim": 64,
    "decoder_feedforward_dim": 64,
    "train_num_points": 256,
    "num_queries": 4,
}
