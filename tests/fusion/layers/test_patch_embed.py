import pytest
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


def test_nodata_id_embeds_to_zero() -> None:
    embed = CategoricalPatchEmbed("dnw", num_classes=5, embed_dim=12, patch_size=4, class_dim=6)
    ids = torch.randint(0, 5, (2, 8, 8))
    ids[:, :4, :4] = 5  # patch 0: no data only
    ids[:, 4:, 4:6] = 5  # patch 3: half no data
    tokens = embed(ids)
    # A patch of no data alone is the bias: it is not class 0, nor any class.
    torch.testing.assert_close(tokens[:, 0], embed.proj.bias.expand(2, -1))
    zero_class = embed(torch.zeros(2, 4, 4, dtype=torch.long))[:, 0]
    assert not torch.allclose(tokens[:, 0], zero_class)
    # A partly covered patch gets only its known pixels' contributions.
    embedded = embed.class_embed(ids.clamp(max=4)).permute(0, 3, 1, 2)
    embedded = embedded * (ids < 5)[:, None]
    expected = embed.proj(embedded).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens, expected)
    with pytest.raises(ValueError, match=r"5 classes \(ids 0..4, and 5 for no data\)"):
        embed(torch.full((1, 4, 4), 6))


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


@pytest.mark.parametrize("categorical", [False, True], ids=["continuous", "categorical"])
def test_embedding_chosen_patches_reads_nothing_else(categorical: bool) -> None:
    torch.manual_seed(0)
    if categorical:
        embed = CategoricalPatchEmbed("dnw", num_classes=5, embed_dim=12, patch_size=4)
        raster = torch.randint(0, 6, (2, 8, 12))
    else:
        embed = PatchEmbed("s2", in_channels=3, embed_dim=12, patch_size=4)
        raster = torch.randn(2, 3, 8, 12)
    patches = torch.tensor([0, 4, 5, 7, 11])  # b * 6 + row-major position
    expected = embed(raster).reshape(12, 12)[patches]
    torch.testing.assert_close(embed(raster, patches), expected)
    if not categorical:  # pixels of other patches are never read: NaN there stays there
        spoiled = raster.clone().view(2, 3, 2, 4, 3, 4)
        spoiled[0, :, 0, :, 1] = float("nan")  # patch 1 of sample 0, not chosen
        torch.testing.assert_close(embed(spoiled.view(2, 3, 8, 12), patches), expected)
