import numpy as np
import torch

from datamodules.augmentation import JointAugmentation


def test_same_image_as_every_modality_stays_equal() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((40, 40, 1)).astype(np.float32)
    classes = (image[..., 0] * 5).astype(np.uint8)
    augment = JointAugmentation((24, 24), categorical=["dnw"])
    for _ in range(20):
        modalities = {"s1": np.repeat(image, 2, axis=2), "dem": image.copy(), "dnw": classes.copy()}
        out, mask, instances = augment(modalities, classes.copy(), [classes == 1, classes == 3])
        assert out["s1"].shape == (24, 24, 2) and out["dem"].shape == (24, 24, 1)
        # Equal up to float rounding of the interpolation (a shifted crop would differ by ~0.3).
        np.testing.assert_allclose(out["s1"][..., 0], out["dem"][..., 0], atol=1e-5)
        np.testing.assert_allclose(out["s1"][..., 1], out["dem"][..., 0], atol=1e-5)
        # Class maps and masks move with the images and stay integer-valued (nearest).
        np.testing.assert_array_equal(out["dnw"], mask)
        assert out["dnw"].dtype == np.uint8
        np.testing.assert_array_equal(instances[0], mask == 1)
        np.testing.assert_array_equal(instances[1], mask == 3)


def test_transform_is_geometric_only() -> None:
    # A permutation of pixels (flips/rotations without crop) keeps the value histogram.
    rng = np.random.default_rng(1)
    sar = rng.normal(-12, 4, (16, 16, 1)).astype(np.float32)
    augment = JointAugmentation(None)
    torch.manual_seed(0)
    out, _, _ = augment({"sar": sar}, np.zeros((16, 16), np.uint8))
    np.testing.assert_array_equal(np.sort(out["sar"].ravel()), np.sort(sar.ravel()))


def test_transforms_differ_between_calls() -> None:
    image = np.arange(64, dtype=np.float32).reshape(8, 8, 1)
    augment = JointAugmentation(None)
    results = {
        augment({"x": image}, np.zeros((8, 8), np.uint8))[0]["x"].tobytes() for _ in range(40)
    }
    assert len(results) == 8  # all 8 dihedral transforms occur


def test_augmentation_follows_torch_seed() -> None:
    image = np.random.default_rng(2).random((32, 32, 1)).astype(np.float32)
    augment = JointAugmentation((16, 16))
    runs = []
    for seed in (5, 5, 6):
        torch.manual_seed(seed)
        runs.append(augment({"x": image}, np.zeros((32, 32), np.uint8))[0]["x"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])
