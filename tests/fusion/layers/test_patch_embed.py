import torch

from fusion.layers.patch_embed import CategoricalPatchEmbed, PatchEmbed, build_patch_embed
from fusion.modality import ModalitySpec


def test_categorical_equals_embedding_then_projection() -> None:
    embed = CategoricalPatchEmbed("dnw", num_classes=5, embed_dim=12, patch_size=4, class_dim=6)
    ids = torch.randint(0, 5, (2, 8, 12))
    rasters = embed.class_embed(ids).permute(0, 3, 1, 2)  # [B, 6, H, W]
    expected = embed.proj(rasters).flatten(2).transpose(1, 2)
    torch.testing.assert_close(embed(ids), expected)
    assert embed(ids).shape == (2, 6, 12)


def test_continuous_tokens_are_row_major() -> None:
    embed = PatchEmbed("s2", in_channels=3, embed_dim=5, patch_size=2)
    image = torch.zeros(1, 3, 4, 6)
    image[:, :, 2:4, 4:6] = 1.0  # patch at row 1, column 2
    tokens = embed(image) - embed.proj.bias
    assert tokens.shape == (1, 6, 5)
    assert (tokens[0].abs().sum(-1) > 1e-5).nonzero().flatten().tolist() == [1 * 3 + 2]


def test_factory_picks_the_kind() -> None:
    categorical = ModalitySpec("m", kind="categorical", num_classes=3)
    assert isinstance(build_patch_embed(categorical, 8, 4), CategoricalPatchEmbed)
    assert isinstance(build_patch_embed(ModalitySpec("s", channels=2), 8, 4), PatchEmbed)
