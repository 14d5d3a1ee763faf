import torch

from fusion.layers.drop_path import SampleDropPath


def test_one_draw_per_sample_for_all_branches() -> None:
    drop = SampleDropPath(0.5).train()
    fusion, modality = drop(torch.ones(64, 3, 2), torch.ones(64, 4, 3, 2))
    kept_fusion = fusion[:, 0, 0] > 0
    kept_modality = modality[:, 0, 0, 0] > 0
    assert torch.equal(kept_fusion, kept_modality)
    assert 0 < kept_fusion.sum() < 64
    assert set(fusion.unique().tolist()) == {0.0, 2.0}
    drop.eval()
    ones = torch.ones(4, 2)
    assert drop(ones)[0] is ones
