import pytest
import torch
from torch.testing import assert_close

from fusion import FusionOutput, MaskedFusionViT, ModalitySpec
from fusion.layers.modality_attention import ModalityAttention
from tests.fusion.backbone.fixtures import (
    MODALITIES,
    TINY,
    make_inputs,
    random_visible,
    tiny_model,
)

NAMES = tuple(MODALITIES)


def perturbed(inputs: dict, name: str) -> dict:
    """Same inputs with new random values for one modality."""
    changed = dict(inputs)
    raster = inputs[name]
    if raster.is_floating_point():
        changed[name] = torch.randn_like(raster)
    else:
        changed[name] = (raster + 1) % 9
    return changed


def assert_same_outputs(first: FusionOutput, second: FusionOutput, names) -> None:
    assert_close(first.fusion, second.fusion, atol=1e-5, rtol=1e-5)
    for name in names:
        assert_close(
            first.modality_tokens[name], second.modality_tokens[name], atol=1e-5, rtol=1e-5
        )
        assert_close(
            first.modality_vectors[name], second.modality_vectors[name], atol=1e-5, rtol=1e-5
        )
        assert_close(first.fusion_vectors[name], second.fusion_vectors[name], atol=1e-5, rtol=1e-5)
        assert torch.equal(first.vectors_valid[name], second.vectors_valid[name])


def test_public_interface_shapes() -> None:
    model = MaskedFusionViT.tiny(MODALITIES, img_size=64)
    assert (model.embed_dim, len(model.blocks), model.blocks[0].attn.num_heads) == (192, 12, 3)
    assert model.intermediate_blocks == (3, 6, 9, 12)
    inputs = make_inputs(batch=2, height=64, width=64, names=("s1", "s2"))
    with torch.no_grad():
        out = model(inputs)
    assert out.fusion.shape == (2, 16, 192)
    assert set(out.modality_tokens) == {"s1", "s2"}
    assert out.modality_tokens["s1"].shape == (2, 16, 192)
    assert out.grid_size == (4, 4)
    assert [t.shape for t in out.intermediate_maps()] == [(2, 192, 4, 4)] * 4


@pytest.mark.parametrize("packed", [False, True], ids=["grid", "packed"])
def test_modality_tokens_are_isolated(packed: bool) -> None:
    model = tiny_model()
    inputs = make_inputs()
    visible = random_visible() if packed else None
    reference = model(inputs, visible=visible)
    others_changed = {"s1": inputs["s1"], **{n: perturbed(inputs, n)[n] for n in NAMES[1:]}}
    alone = {"s1": inputs["s1"]}
    alone_visible = {"s1": visible["s1"]} if packed else None
    others_absent = torch.zeros(3, dtype=torch.bool)
    for out in (
        model(others_changed, visible=visible),
        model(alone, visible=alone_visible),
        model(inputs, visible=visible, present={n: others_absent for n in NAMES[1:]}),
    ):
        assert_close(
            out.modality_tokens["s1"], reference.modality_tokens["s1"], atol=1e-5, rtol=1e-5
        )
        assert_close(
            out.modality_vectors["s1"], reference.modality_vectors["s1"], atol=1e-5, rtol=1e-5
        )


# The paper's Tables I-IV: (self-attention, modality attention) of each backbone.
PAPER_VARIANTS = {
    "proposed": ("masked", True),
    "multivit": ("full", False),
    "no_masked_attention": ("full", True),
    "no_modality_attention": ("masked", False),
}


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
def test_variants_set_the_paper_switches(variant: str) -> None:
    attention, modality_attention = PAPER_VARIANTS[variant]
    for model in (
        MaskedFusionViT.from_variant(MODALITIES, variant, **TINY),
        MaskedFusionViT.tiny(MODALITIES, variant=variant, img_size=32, patch_size=8, depth=1),
    ):
        assert model.variant == variant
        assert {block.attn.attention for block in model.blocks} == {attention}
        has_modality_attention = any(isinstance(m, ModalityAttention) for m in model.modules())
        assert has_modality_attention == modality_attention
        assert (model.mask_token is not None) == modality_attention


def test_multivit_is_full_attention_without_modality_attention() -> None:
    model = MaskedFusionViT.tiny(MODALITIES, variant="multivit", img_size=32, patch_size=8)
    assert model.modality_attention is None and model.attention == "full"
    assert not any("modality_attention" in name for name, _ in model.named_parameters())
    assert tiny_model().variant == "proposed"
    assert tiny_model(attention="full").variant == "no_masked_attention"


def test_variant_and_switches_do_not_mix() -> None:
    with pytest.raises(ValueError, match="either the variant or the switches"):
        MaskedFusionViT.from_variant(MODALITIES, "multivit", attention="masked", **TINY)
    with pytest.raises(ValueError, match="unknown backbone variant 'mvit'"):
        MaskedFusionViT.tiny(MODALITIES, variant="mvit")


def test_full_attention_mixes_modalities() -> None:
    model = tiny_model(attention="full")
    inputs = make_inputs()
    reference = model(inputs).modality_tokens["s1"]
    changed = model(perturbed(inputs, "s2")).modality_tokens["s1"]
    assert (changed - reference).abs().max() > 1e-3


@pytest.mark.parametrize("modality_attention", [True, False])
@pytest.mark.parametrize("name", NAMES)
def test_fusion_tokens_see_every_modality(name: str, modality_attention: bool) -> None:
    model = tiny_model(modality_attention=modality_attention)
    inputs = make_inputs()
    reference = model(inputs)
    changed = model(perturbed(inputs, name))
    assert (changed.fusion - reference.fusion).abs().max() > 1e-3
    assert (changed.fusion_vectors[name] - reference.fusion_vectors[name]).abs().max() > 1e-6


@pytest.mark.parametrize("attention", ["masked", "full"])
def test_leaving_a_modality_out_equals_masking_it_out(attention: str) -> None:
    model = tiny_model(attention=attention)
    inputs = make_inputs()
    kept = ("s1", "s2", "dnw")
    left_out = model({n: inputs[n] for n in kept})
    not_present = model(inputs, present={"dem": torch.zeros(3, dtype=torch.bool)})
    hidden = model(inputs, visible={"dem": torch.zeros(3, 16, dtype=torch.bool)})
    assert_same_outputs(left_out, not_present, kept)
    assert_same_outputs(left_out, hidden, kept)
    assert not not_present.vectors_valid["dem"].any()
    assert not_present.modality_tokens["dem"].abs().max() == 0


@pytest.mark.parametrize("attention", ["masked", "full"])
def test_packed_layout_matches_dense_layout(attention: str) -> None:
    model = tiny_model(attention=attention)
    inputs = make_inputs()
    visible = random_visible()
    present = {"s2": torch.tensor([True, False, True])}
    packed = model(inputs, present=present, visible=visible)
    dense = model(inputs, present=present, visible=visible, pack=False)
    assert_same_outputs(packed, dense, NAMES)
    for name in NAMES:
        assert torch.equal(packed.visible[name], dense.visible[name])
    assert not packed.visible["s2"][1].any()
    all_visible = {name: torch.ones(3, 16, dtype=torch.bool) for name in NAMES}
    assert_same_outputs(model(inputs, visible=all_visible), model(inputs), NAMES)


def test_hidden_tokens_are_zero_and_ignored() -> None:
    model = tiny_model()
    inputs = make_inputs()
    visible = random_visible()
    out = model(inputs, visible=visible)
    for name in NAMES:
        assert out.modality_tokens[name][~visible[name]].abs().max() == 0
    # New values under hidden pixels change nothing.
    hidden_pixels = ~visible["s2"].view(3, 1, 4, 1, 4, 1).expand(3, 4, 4, 8, 4, 8)
    changed = dict(inputs)
    changed["s2"] = torch.where(hidden_pixels.reshape(3, 4, 32, 32), 100.0, inputs["s2"])
    assert_same_outputs(out, model(changed, visible=visible), NAMES)


def hidden_pixels(visible: torch.Tensor, channels: int) -> torch.Tensor:
    """[B, 16] token visibility of the 4 x 4 grid -> [B, C, 32, 32] True under hidden tokens."""
    batch = visible.shape[0]
    pixels = (~visible).view(batch, 1, 4, 1, 4, 1).expand(batch, channels, 4, 8, 4, 8)
    return pixels.reshape(batch, channels, 32, 32)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("layout", ["grid, absent only", "grid", "packed"])
def test_non_finite_values_under_absent_and_hidden_tokens_do_not_leak(
    layout: str, bad: float
) -> None:
    model = tiny_model(drop_path_rate=0.0).train()
    inputs = make_inputs()
    present = {"s2": torch.tensor([True, False, True])}
    visible = None if layout == "grid, absent only" else random_visible()
    pack = layout == "packed"

    def filled(value: float) -> dict:
        changed = dict(inputs)
        changed["s2"] = inputs["s2"].clone()
        changed["s2"][1] = value  # no data over the whole absent raster
        if visible is not None:
            for name in ("s1", "dem"):  # and under the hidden tokens of others
                changed[name] = torch.where(
                    hidden_pixels(visible[name], inputs[name].shape[1]), value, inputs[name]
                )
        return changed

    reference = model(filled(0.0), present=present, visible=visible, pack=pack)
    out = model(filled(bad), present=present, visible=visible, pack=pack)
    for result in (out.fusion, *out.modality_tokens.values(), *out.modality_vectors.values()):
        assert torch.isfinite(result).all()
    assert_same_outputs(out, reference, NAMES)
    loss = out.fusion.square().mean() + sum(v.square().sum() for v in out.modality_vectors.values())
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is None or torch.isfinite(parameter.grad).all(), name


def test_no_nans_without_any_visible_token() -> None:
    model = tiny_model()
    inputs = make_inputs()
    nothing = torch.zeros(3, dtype=torch.bool)
    out = model(inputs, present={name: nothing for name in NAMES})
    packed = model(inputs, visible={name: torch.zeros(3, 16, dtype=torch.bool) for name in NAMES})
    for result in (out, packed):
        assert torch.isfinite(result.fusion).all()
        for name in NAMES:
            assert not result.vectors_valid[name].any()
            assert result.modality_vectors[name].abs().max() == 0
            assert result.fusion_vectors[name].abs().max() == 0
    one_sample = {"s1": torch.tensor([True, False, True])}
    result = model({"s1": inputs["s1"]}, present=one_sample)
    assert result.vectors_valid["s1"].tolist() == [True, False, True]
    assert torch.isfinite(result.modality_vectors["s1"]).all()


def test_pooled_fusion_vector_uses_positions_of_its_modality() -> None:
    model = tiny_model()
    inputs = make_inputs(names=("s1", "s2"))
    visible = {
        "s1": torch.zeros(3, 16, dtype=torch.bool),
        "s2": torch.zeros(3, 16, dtype=torch.bool),
    }
    visible["s1"][:, :8] = True
    visible["s2"][:, 8:] = True
    out = model(inputs, visible=visible)
    assert (out.fusion_vectors["s1"] - out.fusion_vectors["s2"]).abs().max() > 1e-4
    same_positions = {"s1": visible["s1"], "s2": visible["s1"]}
    out = model(inputs, visible=same_positions)
    assert_close(out.fusion_vectors["s1"], out.fusion_vectors["s2"])


def trained_parameters(model: MaskedFusionViT, inputs, **kwargs) -> dict[str, torch.Tensor]:
    model.train()
    out = model(inputs, **kwargs)
    loss = out.fusion.square().mean()
    loss = loss + sum(t.square().mean() for t in out.modality_tokens.values())
    loss = loss + sum(v.square().mean() for v in out.modality_vectors.values())
    loss = loss + sum(v.square().mean() for v in out.fusion_vectors.values())
    loss.backward()
    return {name: p.grad for name, p in model.named_parameters()}


@pytest.mark.parametrize("variant", PAPER_VARIANTS)
@pytest.mark.parametrize("with_visible", [False, True])
def test_every_parameter_learns(variant: str, with_visible: bool) -> None:
    model = MaskedFusionViT.from_variant(MODALITIES, variant, drop_path_rate=0.1, **TINY)
    visible = random_visible() if with_visible else None
    grads = trained_parameters(model, make_inputs(), visible=visible)
    # The mask token stands in for hidden tokens only: with everything visible it is unused.
    expected_unused = set() if with_visible or model.mask_token is None else {"mask_token"}
    for name, grad in grads.items():
        if name in expected_unused:
            assert grad is None or grad.abs().max() == 0
        else:
            assert grad is not None and torch.isfinite(grad).all(), name
            assert grad.abs().sum() > 0, name


@pytest.mark.parametrize("packed", [False, True], ids=["grid", "packed"])
def test_bf16_autocast_is_finite(packed: bool) -> None:
    model = tiny_model().train()
    visible = random_visible() if packed else None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(make_inputs(), visible=visible)
        loss = out.fusion.float().square().mean()
        loss = loss + sum(v.float().square().mean() for v in out.modality_vectors.values())
    loss.backward()
    assert torch.isfinite(out.fusion).all() and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


CONFIGS = [
    dict(),
    dict(attention="full"),
    dict(modality_attention=False),
    dict(patch_size=16, img_size=(32, 64), embed_dim=24, num_heads=3, mlp_ratio=2.0),
    dict(depth=3, intermediate_blocks=(1, 3), qkv_bias=False),
]


@pytest.mark.parametrize(
    "config", CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items())
)
@pytest.mark.parametrize("names", [NAMES, ("s2",), ("dnw", "dem")], ids="+".join)
@pytest.mark.parametrize("size", [(32, 64), (64, 32)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_output_shapes(config: dict, names: tuple, size: tuple[int, int]) -> None:
    model = tiny_model(**config)
    patch = model.patch_size
    grid = (size[0] // patch, size[1] // patch)
    length = grid[0] * grid[1]
    dim = model.embed_dim
    inputs = make_inputs(batch=2, height=size[0], width=size[1], names=names)
    with torch.no_grad():
        out = model(inputs)
        maps = model.forward_intermediates(inputs)
    assert out.grid_size == grid
    assert out.fusion.shape == (2, length, dim)
    assert set(out.modality_tokens) == set(names) == set(out.modality_vectors)
    for name in names:
        assert out.modality_tokens[name].shape == (2, length, dim)
        assert out.modality_vectors[name].shape == out.fusion_vectors[name].shape == (2, dim)
        assert out.vectors_valid[name].shape == (2,) and out.vectors_valid[name].all()
        assert out.visible[name].shape == (2, length)
    assert len(out.intermediates) == len(maps) == len(model.intermediate_blocks)
    for tokens, feature_map in zip(out.intermediate_maps(), maps, strict=True):
        assert feature_map.shape == (2, dim, *grid)
        assert_close(tokens, feature_map)
    assert all(torch.isfinite(t).all() for t in (out.fusion, *out.modality_tokens.values()))


def test_intermediate_blocks_are_one_based() -> None:
    model = tiny_model(depth=3, intermediate_blocks=(1, 3))
    inputs = make_inputs()
    out = model(inputs)
    after_first, _ = model.forward_blocks(model.embed(inputs), num_blocks=1)
    assert_close(out.intermediates[0], after_first.fusion)
    assert_close(model.norm(out.intermediates[1]), out.fusion)
    assert tiny_model(depth=2).intermediate_blocks == (1, 1, 2, 2)
    with pytest.raises(ValueError, match="1-based"):
        tiny_model(depth=2, intermediate_blocks=(0, 2))


def test_fusion_tokens_are_resampled_for_other_grids() -> None:
    model = tiny_model()
    assert model.fusion_tokens_for((4, 4)) is model.fusion_tokens
    assert model.fusion_tokens_for((2, 6)).shape == (1, 12, 32)


def test_modality_spec_objects_are_accepted() -> None:
    specs = [
        ModalitySpec("sar", channels=2),
        ModalitySpec("map", kind="categorical", num_classes=3),
    ]
    model = MaskedFusionViT(specs, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2)
    out = model({"sar": torch.randn(1, 2, 32, 32), "map": torch.randint(0, 3, (1, 1, 32, 32))})
    assert out.fusion.shape == (1, 16, 32)


def test_drop_path_is_random_in_training_only() -> None:
    model = tiny_model(drop_path_rate=0.5)
    inputs = make_inputs()
    assert_close(model(inputs).fusion, model(inputs).fusion)
    model.train()
    assert (model(inputs).fusion - model(inputs).fusion).abs().max() > 0


def test_compute_follows_the_tokens_present() -> None:
    model = tiny_model()
    inputs = make_inputs()
    assert model.embed({"s1": inputs["s1"]}).modality.shape == (3, 1, 16, 32)
    assert model.embed(inputs).modality.shape == (3, 4, 16, 32)
    visible = {name: torch.zeros(3, 16, dtype=torch.bool) for name in NAMES}
    visible["s1"][0, :5] = True
    visible["s2"][1, :7] = True
    visible["dem"][1, :2] = True
    packed = model.embed(inputs, visible=visible)
    assert packed.modality.shape == (3, 1, 9, 32)  # the largest visible count of a sample


def test_padding_of_packed_samples_costs_no_mlp_rows() -> None:
    model = tiny_model()
    inputs = make_inputs()
    visible = {name: torch.zeros(3, 16, dtype=torch.bool) for name in NAMES}
    visible["s1"][0, :5] = True
    visible["s2"][1, :7] = True
    visible["dem"][1, :2] = True
    visible["dnw"][2, :1] = True  # visible counts 5, 9, 1: T = 9, 27 slots, 15 real
    rows = []
    hook = model.blocks[0].mlp.fc1.register_forward_hook(
        lambda module, args, output: rows.append(args[0].reshape(-1, args[0].shape[-1]).shape[0])
    )
    packed = model(inputs, visible=visible)
    hook.remove()
    assert sorted(rows) == [15, 3 * 16]  # the real modality tokens (not 27), the fusion tokens
    dense = model(inputs, visible=visible, pack=False)
    assert_same_outputs(packed, dense, NAMES)
