import torch

from fusion.pretraining.decoders import PatchDecoder


def test_output_layouts() -> None:
    tokens = torch.randn(2, 6, 32)
    continuous = PatchDecoder(32, patch_size=4, channels=3, decoder_dim=16, num_heads=2)
    categorical = PatchDecoder(32, patch_size=4, num_classes=9, decoder_dim=16, num_heads=2)
    assert continuous(tokens).shape == (2, 6, 4 * 4 * 3)
    assert categorical(tokens).shape == (2, 6, 16, 9)


def test_categorical_decoder_stays_float32_under_autocast() -> None:
    tokens = torch.randn(2, 6, 32)
    continuous = PatchDecoder(32, patch_size=4, channels=3, decoder_dim=16, num_heads=2)
    categorical = PatchDecoder(32, patch_size=4, num_classes=9, decoder_dim=16, num_heads=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert continuous(tokens).dtype == torch.bfloat16
        assert categorical(tokens.bfloat16()).dtype == torch.float32
